package io.kvslim.bench;

import io.kvslim.calibrate.AutoSensitivity;
import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.calibrate.Calibrator;
import io.kvslim.calibrate.ModelIdentity;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import io.kvslim.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The one way a calibration profile is made and written: {@code kvslim calibrate}, the commands'
 * {@code --calib TEXT} (calibrating on the fly when a spec needs a profile and names none) and the
 * quality bench's own calibration all go through {@link #write}, so the same model, text and
 * settings give the same profile bytes whichever made them.
 */
public final class ProfileRun {
  /** {@code kvslim calibrate}'s defaults, which {@code --calib TEXT} uses. */
  public static final Calibrator.Options DEFAULTS = new Calibrator.Options(8192, 0, 0, 4, -1);

  /**
   * What a pass made.
   *
   * @param autoSeconds the time the adaptive controller's measurement took
   */
  public record Result(CalibrationProfile profile, AutoSensitivity auto, double autoSeconds) {}

  private ProfileRun() {}

  /**
   * Calibrates the model of {@code engine} (whose cache factory must give full caches) on {@code
   * text} ({@link Calibrator}, BOS added), writes the profile to {@code out} and adds the adaptive
   * controller's section ({@link AutoSensitivity}).
   *
   * @param modelFile the model's file, recorded in the profile
   * @param textName the text's name, recorded in the profile
   * @param textSha256 the text's SHA-256, recorded in the profile
   * @param showProgress report the pass's progress on stderr
   */
  public static Result write(
      Engine engine,
      Path modelFile,
      Tokenizer tokenizer,
      String text,
      String textName,
      String textSha256,
      Calibrator.Options options,
      boolean showProgress,
      Path out) {
    ModelConfig c = engine.config();
    int[] ids = tokenizer.encode(text, true, false);
    ModelIdentity identity =
        new ModelIdentity(modelFile, c.layers(), c.heads(), c.kvHeads(), c.headDim());
    Progress progress =
        showProgress ? Progress.onStderr(Calibrator.work(c, ids.length, options)) : null;
    CalibrationProfile p =
        Calibrator.run(
            engine,
            identity,
            tokenizer,
            ids,
            textName,
            textSha256,
            options,
            progress == null ? null : u -> progress.advance(u, "tokens"));
    if (progress != null) {
      progress.finish();
    }
    p.write(out);
    long t0 = System.nanoTime();
    AutoSensitivity auto = AutoSensitivity.measure(engine, ids);
    auto.addTo(out);
    return new Result(p, auto, (System.nanoTime() - t0) / 1e9);
  }

  /**
   * {@code --calib TEXT}: calibrates {@code model} on the UTF-8 text file with {@code kvslim
   * calibrate}'s defaults (the profile {@code kvslim calibrate -f TEXT} writes) into a temporary
   * file, removed when the process exits, and returns that file.
   */
  public static Path onTheFly(Model model, Path modelFile, int threads, Path textFile) {
    if (!Files.isRegularFile(textFile)) {
      throw new IllegalArgumentException(
          "--calib text " + textFile + " does not exist or is not a file");
    }
    try {
      byte[] bytes = Files.readAllBytes(textFile);
      String text = utf8(bytes, textFile);
      Path out = Files.createTempFile("kvslim-calib", ".json");
      out.toFile().deleteOnExit();
      System.err.println("kvslim: calibrating on " + textFile + " (--calib)");
      try (Engine engine =
          new Engine(model, threads, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
        write(
            engine,
            modelFile,
            Tokenizer.fromGguf(model.file()),
            text,
            textFile.getFileName().toString(),
            ModelIdentity.sha256Of(bytes),
            DEFAULTS,
            true,
            out);
      }
      return out;
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read " + textFile + " or write its profile", e);
    }
  }

  /** {@code specs} with {@code profile} added where a spec needs one and names none. */
  public static List<String> withProfile(List<String> specs, Path profile) {
    List<String> out = new ArrayList<>();
    for (String s : specs) {
      out.add(KvSpec.withProfile(s, profile));
    }
    return out;
  }

  /** The text of a UTF-8 file, or one error sentence. */
  public static String utf8(byte[] bytes, Path file) {
    try {
      return StandardCharsets.UTF_8
          .newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(bytes))
          .toString();
    } catch (CharacterCodingException e) {
      throw new IllegalArgumentException("text file " + file + " is not UTF-8 text");
    }
  }
}
