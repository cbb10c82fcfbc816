package io.kvslim.cli;

import io.kvslim.bench.ProfileRun;
import io.kvslim.calibrate.AutoSensitivity;
import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.calibrate.Calibrator;
import io.kvslim.calibrate.ModelIdentity;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code kvslim calibrate}: one calibration pass that writes the profile the head-structure methods
 * ({@code razor}, {@code duo}) read through {@code @profile=FILE} ({@link Calibrator}, schema in
 * {@link CalibrationProfile}).
 */
@Command(
    name = "calibrate",
    mixinStandardHelpOptions = true,
    description = {
      "Measure, on a text, what the head-structure KV methods need: RazorAttention's echo and"
          + " induction scores per head (on repeated random token sequences), DuoAttention's"
          + " training-free retrieval score per KV head (kvpress's on-the-fly score), and the"
          + " attention mass per head; writes a JSON profile that specs use as @profile=FILE"
          + " (e.g. 'duo:ratio=0.5@profile=profile.json'). The same model, text and --seed give"
          + " the same file."
    })
public final class CalibrateCommand implements Callable<Integer> {
  @Mixin ModelOptions modelOptions;

  @Option(
      names = {"-f", "--file"},
      required = true,
      paramLabel = "TEXT",
      description = "UTF-8 calibration text (BOS is added).")
  Path file;

  @Option(
      names = "--tokens",
      paramLabel = "N",
      description =
          "Tokens of the text read, in windows of the model's context (default ${DEFAULT-VALUE}).")
  int tokens = 8192;

  @Option(
      names = "--seed",
      paramLabel = "S",
      description = "Seed of the random sequences (default ${DEFAULT-VALUE}).")
  long seed = 0;

  @Option(
      names = "--sequences",
      paramLabel = "K",
      description =
          "Random sequences [X, X] for the echo and induction scores (default ${DEFAULT-VALUE}).")
  int sequences = 4;

  @Option(
      names = "--sequence-length",
      paramLabel = "M",
      description = "Length of X (default: the smaller of 256 and half the model's context).")
  int sequenceLength = 0;

  @Option(
      names = "--kvsharer-layers",
      paramLabel = "N",
      description =
          "Most layers KVSharer's search may share (default: half the layers; 0 skips the search).")
  int kvSharerLayers = -1;

  @Option(names = "--out", required = true, paramLabel = "FILE", description = "Profile to write.")
  Path out;

  @Override
  public Integer call() throws IOException {
    ModelOptions.requireFile(file, "text file");
    if (sequences < 1) {
      throw new IllegalArgumentException("--sequences must be at least 1, got " + sequences);
    }
    if (sequenceLength < 0) {
      throw new IllegalArgumentException(
          "--sequence-length must be at least 1, got " + sequenceLength);
    }
    Calibrator.Options options =
        new Calibrator.Options(tokens, seed, sequenceLength, sequences, kvSharerLayers);
    byte[] bytes = Files.readAllBytes(file);
    String text = utf8(bytes, file);
    long t0 = System.nanoTime();
    try (Model model = modelOptions.load();
        Engine engine = modelOptions.engine(model, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      ProfileRun.Result r =
          ProfileRun.write(
              engine,
              modelOptions.modelPath(),
              Tokenizer.fromGguf(model.file()),
              text,
              file.getFileName().toString(),
              ModelIdentity.sha256Of(bytes),
              options,
              true,
              out);
      CalibrationProfile p = r.profile();
      AutoSensitivity auto = r.auto();
      System.out.printf(
          Locale.ROOT,
          "auto: each KV head measured at %d settings on %d + %d tokens in %.1f s%n",
          auto.evict()[0][0].length + auto.merged()[0][0].length + auto.quant()[0][0].length - 3,
          auto.prefill(),
          auto.decode(),
          r.autoSeconds());
      double seconds = (System.nanoTime() - t0) / 1e9;
      System.out.print(summary(p));
      System.out.printf(
          Locale.ROOT,
          "calibrated %s on %d tokens of %s (%d windows) and %d random sequences of %d in %.1f s;"
              + " wrote %s%n",
          p.model().file(),
          p.calibration().tokens(),
          p.calibration().text(),
          p.calibration().windows(),
          p.calibration().razorSequences(),
          p.calibration().razorSequenceLength(),
          seconds,
          out);
    }
    return 0;
  }

  /** Per layer and KV head: the DuoAttention score and the RazorAttention echo and induction. */
  static String summary(CalibrationProfile p) {
    StringBuilder b = new StringBuilder();
    b.append(
        String.format(
            Locale.ROOT,
            "%-6s %-8s %10s %10s %10s%n",
            "layer",
            "kv head",
            "duo",
            "echo",
            "induction"));
    for (int l = 0; l < p.duo().length; l++) {
      for (int g = 0; g < p.duo()[l].length; g++) {
        b.append(
            String.format(
                Locale.ROOT,
                "%-6d %-8d %10.4f %10.4f %10.4f%n",
                l,
                g,
                p.duo()[l][g],
                p.kvEcho()[l][g],
                p.kvInduction()[l][g]));
      }
    }
    return b.toString();
  }

  static String utf8(byte[] bytes, Path file) {
    return ProfileRun.utf8(bytes, file);
  }
}
