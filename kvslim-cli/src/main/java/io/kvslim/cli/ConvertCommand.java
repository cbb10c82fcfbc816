package io.kvslim.cli;

import io.kvslim.bench.Progress;
import io.kvslim.calibrate.Calibrator;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import io.kvslim.model.convert.KvHeadMerge;
import io.kvslim.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code kvslim convert --merge-kv-heads N}: MHA→GQA (or GQA→fewer KV heads) by aligning heads
 * before merging them ({@link KvHeadMerge}), written as a new GGUF file.
 */
@Command(
    name = "convert",
    mixinStandardHelpOptions = true,
    description = {
      "Write a copy of a GGUF model with fewer KV heads: every N consecutive KV heads of a layer"
          + " are aligned to the first of their group (RoPE-pair rotations for keys, an orthogonal"
          + " Procrustes rotation for values, fitted on a calibration text and folded exactly into"
          + " wq/wk/wv/wo) and then averaged into one. No fine-tuning is done (the paper's L0"
          + " masks and distillation are not): measure the quality cost with 'kvslim perplexity'."
    })
public final class ConvertCommand implements Callable<Integer> {
  @Mixin ModelOptions modelOptions;

  @Option(
      names = "--merge-kv-heads",
      required = true,
      paramLabel = "N",
      description = "KV heads merged into one (must divide the model's KV head count).")
  int factor;

  @Option(
      names = "--calib",
      required = true,
      paramLabel = "TEXT",
      description = "UTF-8 calibration text (BOS is added).")
  Path calib;

  @Option(
      names = "--tokens",
      paramLabel = "N",
      description =
          "Tokens of the text read, in windows of the context (default ${DEFAULT-VALUE}).")
  int tokens = 4096;

  @Option(
      names = "--no-align",
      description = "Average the heads without aligning them first (the ablation baseline).")
  boolean noAlign;

  @Option(names = "--out", required = true, paramLabel = "FILE", description = "GGUF to write.")
  Path out;

  @Override
  public Integer call() throws IOException {
    ModelOptions.requireFile(calib, "calibration text");
    if (tokens < 2) {
      throw new IllegalArgumentException("--tokens must be at least 2, got " + tokens);
    }
    String text = CalibrateCommand.utf8(Files.readAllBytes(calib), calib);
    long t0 = System.nanoTime();
    try (Model model = modelOptions.load();
        Engine engine = modelOptions.engine(model, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      ModelConfig c = model.config();
      checkFactor(c, factor);
      if (out.toAbsolutePath().equals(modelOptions.modelPath().toAbsolutePath())) {
        throw new IllegalArgumentException("--out must not be the input model file");
      }
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      int[] ids = tok.encode(text, true, false);
      int used = Math.min(ids.length, tokens);
      if (used < 2) {
        throw new IllegalArgumentException("the calibration text has fewer than 2 tokens");
      }
      List<int[]> windows =
          Calibrator.split(
              java.util.Arrays.copyOf(ids, used),
              c.contextLength(),
              tok.addsBos() ? tok.bos() : -1);
      Progress progress = Progress.onStderr(used);
      KvHeadMerge.Alignment a =
          noAlign
              ? KvHeadMerge.none(c, factor)
              : KvHeadMerge.fit(engine, windows, factor, u -> progress.advance(u, "tokens"));
      progress.finish();
      KvHeadMerge.write(model, a, true, out);
      System.out.printf(
          Locale.ROOT,
          "wrote %s: %d -> %d KV heads per layer (%d query heads), %s on %d tokens of %s in"
              + " %.1f s; training-free (no L0 masks or distillation), so expect a quality loss:"
              + " compare with 'kvslim perplexity' on held-out text%n",
          out,
          c.kvHeads(),
          c.kvHeads() / factor,
          c.heads(),
          noAlign ? "averaged without alignment (no calibration)" : "aligned",
          a.tokens(),
          calib.getFileName(),
          (System.nanoTime() - t0) / 1e9);
    }
    return 0;
  }

  /** Refuses a factor that does not divide the KV heads, and a model that is already MQA. */
  static void checkFactor(ModelConfig c, int factor) {
    if (c.kvHeads() == 1) {
      throw new IllegalArgumentException(
          "the model is already multi-query (1 KV head): there is nothing to merge");
    }
    if (factor < 1 || c.kvHeads() % factor != 0) {
      throw new IllegalArgumentException(
          "--merge-kv-heads "
              + factor
              + " must divide the model's "
              + c.kvHeads()
              + " KV heads (e.g. "
              + c.kvHeads()
              + " for one KV head per layer)");
    }
  }
}
