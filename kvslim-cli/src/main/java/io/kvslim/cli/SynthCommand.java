package io.kvslim.cli;

import io.kvslim.gguf.GgmlType;
import io.kvslim.model.synth.SyntheticModel;
import io.kvslim.model.synth.SyntheticShape;
import io.kvslim.model.synth.SyntheticVocabulary;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code kvslim synth}: writes a random-weight llama GGUF of a named shape. */
@Command(
    name = "synth",
    mixinStandardHelpOptions = true,
    description = "Write a random-weight llama-architecture GGUF model (deterministic per seed).")
public final class SynthCommand implements Callable<Integer> {
  /** Where the default SentencePiece vocabulary lives, relative to the working directory. */
  static final Path DEFAULT_VOCAB = Path.of("../shared/tokenizers/ggml-vocab-llama-spm.gguf");

  @Spec CommandSpec spec;

  @Option(
      names = "--shape",
      required = true,
      paramLabel = "NAME",
      description = "tiny (~7M params), 110m, llama-1b")
  String shape;

  @Option(names = "--out", required = true, paramLabel = "FILE", description = "output GGUF file")
  Path out;

  @Option(
      names = "--type",
      defaultValue = "q8_0",
      paramLabel = "TYPE",
      description = "weight type: f32, f16, q8_0, q4_0 (default ${DEFAULT-VALUE})")
  String type;

  @Option(names = "--seed", defaultValue = "42", description = "random seed (default 42)")
  long seed;

  @Option(
      names = "--vocab",
      paramLabel = "FILE",
      description =
          "SentencePiece vocabulary GGUF (default ../shared/tokenizers/ggml-vocab-llama-spm.gguf"
              + " when present, else a generated vocabulary)")
  Path vocab;

  @Option(
      names = "--ctx",
      paramLabel = "N",
      description =
          "context length written to the file (llama.context_length), 16..32768 (default: the"
              + " shape's, 2048 for tiny and 110m, 8192 for llama-1b)")
  Integer ctx;

  @Option(
      names = "--kv-heads",
      paramLabel = "K",
      description =
          "KV heads (grouped-query attention when fewer than the query heads; must divide them;"
              + " default: the shape's)")
  Integer kvHeads;

  @Option(
      names = "--rope-base",
      paramLabel = "B",
      description =
          "RoPE frequency base (llama.rope.freq_base; default: the shape's, raised to 500000 when"
              + " --ctx is above 8192, as Llama 3 does for long contexts)")
  Double ropeBase;

  /** Longest context {@code --ctx} accepts. */
  static final int MAX_CTX = 32768;

  /** {@code s} with the {@code --ctx}, {@code --kv-heads} and {@code --rope-base} overrides. */
  SyntheticShape shaped(SyntheticShape s) {
    int c = s.contextLength();
    if (ctx != null) {
      if (ctx < 16 || ctx > MAX_CTX) {
        throw new IllegalArgumentException(
            "--ctx must be between 16 and " + MAX_CTX + " tokens, got " + ctx);
      }
      c = ctx;
    }
    int k = s.kvHeads();
    if (kvHeads != null) {
      if (kvHeads < 1 || s.heads() % kvHeads != 0) {
        throw new IllegalArgumentException(
            "--kv-heads must divide the "
                + s.heads()
                + " query heads of shape "
                + s.name()
                + ", got "
                + kvHeads);
      }
      k = kvHeads;
    }
    double base = s.ropeBase();
    if (ropeBase != null) {
      if (!(ropeBase > 1) || Double.isInfinite(ropeBase)) {
        throw new IllegalArgumentException("--rope-base must be a finite number above 1");
      }
      base = ropeBase;
    } else if (c > 8192) {
      base = Math.max(base, 500000);
    }
    return new SyntheticShape(
        s.name(), s.dim(), s.layers(), s.heads(), k, s.ffn(), s.vocab(), c, base, s.rmsEps());
  }

  @Override
  public Integer call() {
    PrintWriter w = spec.commandLine().getOut();
    SyntheticShape s = shaped(SyntheticShape.byName(shape));
    GgmlType t = parseType(type);
    SyntheticVocabulary v;
    if (vocab != null) {
      v = SyntheticVocabulary.fromFile(vocab, s.vocab());
    } else if (Files.isRegularFile(DEFAULT_VOCAB)) {
      v = SyntheticVocabulary.fromFile(DEFAULT_VOCAB, s.vocab());
    } else {
      v = SyntheticVocabulary.generated(s.vocab());
      w.printf("no vocabulary file at %s, generating one%n", DEFAULT_VOCAB);
    }
    w.printf("vocab: %s%n", v.description());
    w.flush();
    long start = System.nanoTime();
    SyntheticModel.Summary sum = SyntheticModel.write(s, t, seed, v, out);
    double seconds = (System.nanoTime() - start) / 1e9;
    w.printf(
        Locale.ROOT,
        "wrote %s: llama %s (dim %d, %d layers, %d heads, %d KV heads, FFN %d, vocab %d,"
            + " context %d, RoPE base %.0f), %.1fM params, %s, %d tensors, %.1f MiB in %.1f s"
            + " (seed %d)%n",
        sum.file(),
        s.name(),
        s.dim(),
        s.layers(),
        s.heads(),
        s.kvHeads(),
        s.ffn(),
        s.vocab(),
        s.contextLength(),
        s.ropeBase(),
        sum.parameters() / 1e6,
        t,
        sum.tensors(),
        sum.bytes() / (1024.0 * 1024.0),
        seconds,
        seed);
    w.flush();
    return 0;
  }

  static GgmlType parseType(String name) {
    return switch (name.toLowerCase(Locale.ROOT)) {
      case "f32" -> GgmlType.F32;
      case "f16" -> GgmlType.F16;
      case "q8_0" -> GgmlType.Q8_0;
      case "q4_0" -> GgmlType.Q4_0;
      default ->
          throw new IllegalArgumentException(
              "unknown weight type '" + name + "' (expected f32, f16, q8_0 or q4_0)");
    };
  }
}
