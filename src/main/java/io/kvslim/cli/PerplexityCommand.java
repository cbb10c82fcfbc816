package io.kvslim.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.kvslim.engine.Engine;
import io.kvslim.eval.PerplexityEvaluator;
import io.kvslim.model.Model;
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

  @Option(names = "--nll-out", paramLabel = "FILE", description = "Write 'i nll' per scored token.")
  Path nllOut;

  @Option(names = "--json", paramLabel = "FILE", description = "Write a JSON summary.")
  Path json;

  @Override
  public Integer call() throws IOException {
    try (Model model = modelOptions.load();
        Engine engine = modelOptions.engine(model, kvOptions.factory())) {
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      int[] tokens =
          input.file != null ? tokenizeFile(tok, input.file) : readIds(input.tokensIn, model);
      int bos = tok.bos();
      PerplexityEvaluator.Result r = new PerplexityEvaluator(engine).run(tokens, ctx, bos, null);
      if (nllOut != null) {
        try (BufferedWriter w = Files.newBufferedWriter(nllOut, StandardCharsets.UTF_8)) {
          for (int i = 0; i < r.nll().length; i++) {
            w.write(i + " " + String.format(Locale.ROOT, "%.6f", r.nll()[i]));
            w.newLine();
          }
        }
      }
      System.out.printf(
          Locale.ROOT,
          "perplexity: %.4f  mean NLL: %.6f  tokens scored: %d  (%.1f tokens/s, ctx %d, %d threads,"
              + " KV %s peak %s)%n",
          r.perplexity(),
          r.meanNll(),
          r.scoredTokens(),
          r.tokensPerSecond(),
          ctx,
          engine.threads(),
          kvOptions.spec(),
          Format.bytes(r.kvBytesPeak()));
      if (json != null) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("model", modelOptions.model.toString());
        m.put("kv", kvOptions.spec());
        m.put("ctx", ctx);
        m.put("ppl", r.perplexity());
        m.put("mean_nll", r.meanNll());
        m.put("n_tokens", r.scoredTokens());
        m.put("tokens_per_second", r.tokensPerSecond());
        m.put("kv_bytes_peak", r.kvBytesPeak());
        m.put("threads", engine.threads());
        new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValue(json.toFile(), m);
      }
      return 0;
    }
  }

  private static int[] tokenizeFile(Tokenizer tok, Path file) throws IOException {
    ModelOptions.requireFile(file, "text file");
    String text = Files.readString(file, StandardCharsets.UTF_8);
    return tok.encode(text, true, false);
  }

  private static int[] readIds(Path file, Model model) throws IOException {
    ModelOptions.requireFile(file, "token file");
    String[] parts = Files.readString(file).trim().split("\\s+");
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
