package io.kvslim.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.kvslim.bench.PerplexityEvaluator;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvCacheFactory;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import io.kvslim.model.Numerics;
import io.kvslim.tokenizer.Tokenizer;
import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code kvslim perplexity}: scores every next token of a text. */
@Command(
    name = "perplexity",
    mixinStandardHelpOptions = true,
    description = {
      "Score every next token of a text in windows of --ctx tokens (each window BOS-prefixed) and"
          + " print the perplexity.",
    })
public final class PerplexityCommand implements Callable<Integer> {
  @Mixin ModelOptions modelOptions;
  @Mixin KvOptions kvOptions;
  @Mixin NumericsOptions numericsOptions;

  static final class Input {
    @Option(
        names = {"-f", "--file"},
        paramLabel = "TEXT",
        description = "UTF-8 text file to score.")
    Path file;

    @Option(
        names = "--tokens-in",
        paramLabel = "IDS",
        description =
            "File of whitespace-separated token ids, used as given (include BOS yourself).")
    Path tokensIn;
  }

  @ArgGroup(exclusive = true, multiplicity = "1")
  Input input;

  @Option(
      names = {"-c", "--ctx"},
      description = "Window size in tokens (default ${DEFAULT-VALUE}).")
  int ctx = 512;

  @Option(
      names = "--decode-from",
      paramLabel = "N",
      description =
          "Feed tokens from position N of each window one at a time (decode steps), so that"
              + " eviction after prefill or per step affects their scores. Default: ctx/2 when --kv"
              + " evicts tokens, else the whole window is one prefill.")
  Integer decodeFrom;

  @Option(names = "--nll-out", paramLabel = "FILE", description = "Write 'i nll' per scored token.")
  Path nllOut;

  @Option(names = "--json", paramLabel = "FILE", description = "Write a JSON summary.")
  Path json;

  @Override
  public Integer call() throws IOException {
    Numerics numerics = numericsOptions.numerics(); // a bad name fails before the model loads
    // outputs are checked now, not found unwritable after the whole run
    CliFiles.requireWritable(nllOut, "--nll-out");
    CliFiles.requireWritable(json, "--json");
    kvOptions.calibrate(modelOptions); // --calib: the profile a spec needs and names none
    try (Model model = modelOptions.load();
        Engine engine = modelOptions.engine(model, kvOptions.factory(), numerics)) {
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      int[] tokens =
          input.file != null ? tokenizeFile(tok, input.file) : readIds(input.tokensIn, model);
      int bos = tok.bos();
      boolean full = kvOptions.spec().equals("full");
      int from = decodeFrom != null ? decodeFrom : (evicts(kvOptions) ? Math.max(1, ctx / 2) : ctx);
      KvCacheFactory candidate = kvOptions.factory();
      KvCacheFactory baseline = full ? null : KvSpecs.factory(KvSpec.FULL, new BlockPool());
      PerplexityEvaluator.Comparison cmp =
          new PerplexityEvaluator(engine)
              .compare(tokens, ctx, bos, from, candidate, baseline, null);
      PerplexityEvaluator.Result r = cmp.candidate();
      ModelConfig mc = model.config();
      long f16Bytes = (long) r.kvTokens() * mc.layers() * mc.kvHeads() * mc.headDim() * 2 * 2;
      double ratio = r.kvBytesFinal() == 0 ? Double.NaN : (double) f16Bytes / r.kvBytesFinal();
      if (nllOut != null) {
        try (BufferedWriter w = Files.newBufferedWriter(nllOut, StandardCharsets.UTF_8)) {
          for (int i = 0; i < r.nll().length; i++) {
            w.write(i + " " + String.format(Locale.ROOT, "%.6f", r.nll()[i]));
            w.newLine();
          }
        } catch (IOException e) {
          throw CliFiles.writeFailed(nllOut, "--nll-out", e);
        }
      }
      System.out.printf(
          Locale.ROOT,
          "perplexity: %.4f  mean NLL: %.6f  tokens scored: %d  (%.1f tokens/s, ctx %d, %d threads,"
              + " numerics %s, KV %s peak %s)%n",
          r.perplexity(),
          r.meanNll(),
          r.scoredTokens(),
          r.tokensPerSecond(),
          ctx,
          engine.threads(),
          numerics,
          kvOptions.spec(),
          Format.bytes(r.kvBytesPeak()));
      if (!full) {
        System.out.printf(
            Locale.ROOT,
            "vs full cache: KLD mean %.6f max %.6f p99 %.6f | top-1 agreement %.4f | full ppl %.4f"
                + "%nKV bytes: peak %d, final %d (%d tokens) | compression vs F16 full cache"
                + " %.2fx | decode from %d%n",
            cmp.kldMean(),
            cmp.kldMax(),
            cmp.kldP99(),
            cmp.top1Agreement(),
            cmp.baseline().perplexity(),
            r.kvBytesPeak(),
            r.kvBytesFinal(),
            r.kvTokens(),
            ratio,
            from);
      }
      if (json != null) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("model", modelOptions.modelPath().toString());
        m.put("kv", kvOptions.spec());
        m.put("ctx", ctx);
        m.put("ppl", r.perplexity());
        m.put("mean_nll", r.meanNll());
        m.put("n_tokens", r.scoredTokens());
        m.put("tokens_per_second", r.tokensPerSecond());
        m.put("kv_bytes_peak", r.kvBytesPeak());
        m.put("threads", engine.threads());
        m.put("numerics", numerics.name());
        m.put("decode_from", from);
        m.put("kv_bytes_final", r.kvBytesFinal());
        m.put("kv_tokens", r.kvTokens());
        m.put("compression_ratio", ratio);
        if (!full) {
          m.put("kld_mean", cmp.kldMean());
          m.put("kld_max", cmp.kldMax());
          m.put("kld_p99", cmp.kldP99());
          m.put("top1_agreement", cmp.top1Agreement());
          m.put("baseline_ppl", cmp.baseline().perplexity());
        }
        try {
          new ObjectMapper()
              .enable(SerializationFeature.INDENT_OUTPUT)
              .writeValue(json.toFile(), m);
        } catch (IOException e) {
          throw CliFiles.writeFailed(json, "--json", e);
        }
      }
      return 0;
    }
  }

  /** Whether the spec has an eviction policy (so decode-mode scoring shows its effect). */
  private static boolean evicts(KvOptions kv) {
    for (var rule : kv.parsed().rules()) {
      for (var call : rule.calls()) {
        if (call.method().family() == io.kvslim.kv.method.KvMethod.Family.EVICTION) {
          return true;
        }
      }
    }
    return false;
  }

  /** The text of {@code file}, read as {@code tokenize} reads it (strict UTF-8). */
  private static int[] tokenizeFile(Tokenizer tok, Path file) {
    return tok.encode(CliFiles.readUtf8(file), true, false);
  }

  private static int[] readIds(Path file, Model model) {
    String[] parts = CliFiles.readUtf8(file).trim().split("\\s+");
    int[] ids = new int[parts.length];
    int vocab = model.config().vocabSize();
    for (int i = 0; i < parts.length; i++) {
      try {
        ids[i] = Integer.parseInt(parts[i]);
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException(
            file + ": item " + (i + 1) + " '" + parts[i] + "' is not a token id");
      }
      if (ids[i] < 0 || ids[i] >= vocab) {
        throw new IllegalArgumentException(
            file + ": token id " + ids[i] + " is outside the vocabulary (0.." + (vocab - 1) + ")");
      }
    }
    return ids;
  }
}
