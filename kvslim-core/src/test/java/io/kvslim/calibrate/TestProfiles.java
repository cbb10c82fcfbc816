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
   * A profile of the model in {@code modelFile} (its real name, hash and shape) with the given KV
   * head scores ({@code [layer][kvHead]}; echo and induction per query head copied from their KV
   * head), written to a temporary file: tests choose which heads a method keeps.
   */
  public static Path synthetic(
      Path modelFile, ModelConfig c, double[][] duo, double[][] kvInduction, double[][] kvEcho) {
    int group = c.heads() / c.kvHeads();
    double[][] echo = new double[c.layers()][c.heads()];
    double[][] induction = new double[c.layers()][c.heads()];
    var mass = new io.kvslim.calibrate.AttentionProfile.Head[c.layers()][c.heads()];
    for (int l = 0; l < c.layers(); l++) {
      for (int h = 0; h < c.heads(); h++) {
        echo[l][h] = kvEcho[l][h / group];
        induction[l][h] = kvInduction[l][h / group];
        mass[l][h] = new io.kvslim.calibrate.AttentionProfile.Head(0.1, 0.2, 0.3, 0.4, 0.5, 6);
      }
    }
    CalibrationProfile p =
        new CalibrationProfile(
            new CalibrationProfile.ModelInfo(
                modelFile.getFileName().toString(),
                ModelIdentity.sha256Of(modelFile),
                c.layers(),
                c.heads(),
                c.kvHeads(),
                c.headDim()),
            new CalibrationProfile.Settings("synthetic", "0", 100, 1, 0, 16, 1, 500),
            echo,
            induction,
            kvEcho,
            kvInduction,
            duo,
            new CalibrationProfile.AttentionMass(100, 50, 50, 4, 16, 64, mass),
            syntheticSharer(c.layers()),
            syntheticPod(c.layers()),
            null,
            null,
            null,
            null);
    return write(p);
  }

  /** KVSharer's section: the last layer reads the first's keys and values, when there are two. */
  static CalibrationProfile.KvSharer syntheticSharer(int layers) {
    int[][] accepted = layers > 1 ? new int[][] {{layers - 1, 0}} : new int[0][];
    double[] similarity = layers > 1 ? new double[] {0.9} : new double[0];
    return new CalibrationProfile.KvSharer(
        1, 64, 0.5, new double[layers][layers], accepted, similarity);
  }

  /** POD's section: similarities falling with depth, so greedy groups start at layer 0. */
  static CalibrationProfile.Pod syntheticPod(int layers) {
    double[] similarity = new double[Math.max(0, layers - 1)];
    for (int l = 0; l < similarity.length; l++) {
      similarity[l] = 0.9 - 0.1 * l / layers;
    }
    return new CalibrationProfile.Pod(4, 16, 1, 8, similarity);
  }

  static Path write(CalibrationProfile p) {
    try {
      Path file = Files.createTempFile("kvslim-test-profile", ".json");
      file.toFile().deleteOnExit();
      p.write(file);
      AutoSensitivity.synthetic(p.model().layers(), p.model().kvHeads()).addTo(file);
      return file;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

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
    return write(p);
  }
}
