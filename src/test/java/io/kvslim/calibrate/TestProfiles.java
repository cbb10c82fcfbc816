package io.kvslim.calibrate;

import io.kvslim.engine.Engine;
import io.kvslim.model.ModelConfig;
import io.kvslim.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

/** Calibration profiles for tests: a quick pass over random tokens, written to a temporary file. */
public final class TestProfiles {
  private TestProfiles() {}

  /**
   * Calibrates the model of {@code engine} (full caches), loaded from {@code modelFile}, on 96
   * random tokens and one repeated sequence of 16, and writes the profile to a temporary file.
   */
  public static Path quick(Engine engine, Path modelFile) {
    ModelConfig c = engine.config();
    Tokenizer tok = Tokenizer.fromGguf(engine.forward().model().file());
    SplittableRandom r = new SplittableRandom(5);
    int[] text = new int[96];
    text[0] = tok.bos();
    for (int i = 1; i < text.length; i++) {
      text[i] = 3 + r.nextInt(c.vocabSize() - 3);
    }
    CalibrationProfile p =
        Calibrator.run(
            engine,
            new ModelIdentity(modelFile, c.layers(), c.heads(), c.kvHeads(), c.headDim()),
            tok,
            text,
            "random",
            "0",
            new Calibrator.Options(text.length, 3, 16, 1),
            null);
    try {
      Path file = Files.createTempFile("kvslim-test-profile", ".json");
      file.toFile().deleteOnExit();
      p.write(file);
      return file;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
