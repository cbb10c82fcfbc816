package io.kvslim.cli;

import io.kvslim.bench.BlendBenchmark;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.engine.blend.BlendOptions;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code kvslim bench blend}: CacheBlend's time to first token and agreement vs full prefill. */
@Command(
    name = "blend",
    mixinStandardHelpOptions = true,
    description = {
      "Build a prompt of BOS + one chunk of --chunk-tokens tokens from each --file + a query of"
          + " --suffix-tokens from --query-file, and compare a full prefill with naive reuse of the"
          + " chunks' stored KV (recompute=0%) and each --blend spec: time to the first token (chunks"
          + " already stored) and mean KL divergence and top-1 agreement of the next-token"
          + " distributions over the --continuation tokens that follow the query."
    })
public final class BenchBlendCommand implements Callable<Integer> {
  static final String PY = "/usr/lib/python3.11/";
  static final List<Path> DEFAULT_FILES =
      List.of(
          Path.of(PY + "argparse.py"),
          Path.of(PY + "ast.py"),
          Path.of(PY + "base64.py"),
          Path.of(PY + "bisect.py"),
          Path.of(PY + "calendar.py"),
          Path.of(PY + "codecs.py"));

  @Mixin ModelOptions modelOptions;

  @Option(
      names = "--file",
      paramLabel = "FILE",
      description = "A chunk's source text, once per chunk (default: 6 modules of " + PY + ").")
  List<Path> files;

  @Option(
      names = "--query-file",
      paramLabel = "FILE",
      description = "Source of the query and its continuation (default: " + PY + "textwrap.py).")
  Path queryFile = Path.of(PY + "textwrap.py");

  @Option(
      names = "--kv",
      paramLabel = "SPEC",
      description = "KV cache spec of every mode (default: ${DEFAULT-VALUE}).")
  String kv = "full";

  @Option(
      names = "--blend",
      paramLabel = "SPEC",
      description = "CacheBlend spec to compare, repeatable (default: cacheblend:recompute=15%).")
  List<String> blends;

  @Option(
      names = "--chunk-tokens",
      paramLabel = "N",
      description = "Tokens per chunk (default ${DEFAULT-VALUE}).")
  int chunkTokens = 128;

  @Option(
      names = "--skip",
      paramLabel = "N",
      description = "Tokens skipped at each file's start (default ${DEFAULT-VALUE}).")
  int skip = 64;

  @Option(
      names = "--suffix-tokens",
      paramLabel = "N",
      description = "Query tokens (default ${DEFAULT-VALUE}).")
  int suffixTokens = 32;

  @Option(
      names = "--continuation",
      paramLabel = "N",
      description = "Continuation tokens compared (default ${DEFAULT-VALUE}).")
  int continuation = 64;

  @Option(
      names = "--reps",
      paramLabel = "N",
      description = "Timed repetitions (default ${DEFAULT-VALUE}).")
  int reps = 7;

  @Option(
      names = "--warmup",
      paramLabel = "N",
      description = "Untimed repetitions first (default ${DEFAULT-VALUE}).")
  int warmup = 3;

  @Option(names = "--out", paramLabel = "DIR", description = "Write blend.md into this folder.")
  Path out;

  @Override
  public Integer call() throws IOException {
    List<Path> chunkFiles = files == null ? DEFAULT_FILES : files;
    if (chunkTokens < 1 || suffixTokens < 1 || continuation < 1 || skip < 0) {
      throw new IllegalArgumentException(
          "--chunk-tokens, --suffix-tokens and --continuation must be at least 1 and --skip at least 0");
    }
    if (reps < 1 || warmup < 0) {
      throw new IllegalArgumentException("--reps must be at least 1 and --warmup at least 0");
    }
    List<BlendOptions> modes = new ArrayList<>();
    modes.add(new BlendOptions(0, BlendOptions.DEFAULT.checkLayer()));
    for (String b : blends == null ? List.of("cacheblend:recompute=15%") : blends) {
      modes.add(BlendOptions.parse(b));
    }
    KvSpec spec = KvSpec.parse(kv);
    try (Model model = modelOptions.load();
        Engine engine = modelOptions.engine(model, KvSpecs.factory(spec, new BlockPool()))) {
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      List<int[]> chunks = new ArrayList<>();
      for (Path f : chunkFiles) {
        chunks.add(window(tok, f, skip, chunkTokens));
      }
      int[] query = window(tok, queryFile, skip, suffixTokens + continuation);
      int[] suffix = Arrays.copyOf(query, suffixTokens);
      int[] cont = Arrays.copyOfRange(query, suffixTokens, query.length);
      int[] prefix = tok.addsBos() ? new int[] {tok.bos()} : new int[0];
      int total = prefix.length + chunks.size() * chunkTokens + suffixTokens + continuation;
      if (total > model.config().contextLength()) {
        throw new IllegalArgumentException(
            "the prompt and continuation take "
                + total
                + " tokens, more than the model's context of "
                + model.config().contextLength());
      }
      List<BlendBenchmark.Row> rows =
          BlendBenchmark.run(
              engine, spec.toString(), prefix, chunks, suffix, cont, modes, warmup, reps);
      String md =
          "# CacheBlend vs full prefill\n\n"
              + String.format(
                  "Model %s, KV %s, %d threads; prompt: BOS + %d chunks of %d tokens (%s) + %d query"
                      + " tokens from %s; %d continuation tokens compared; TTFT median of %d after %d"
                      + " warm-up runs. CPU ms: the CPU time of the thread that ran the prefill;"
                      + " with -t 1 it does all the work, so this is the work whatever else runs on"
                      + " the machine.%n%n",
                  modelOptions.modelPath().getFileName(),
                  spec,
                  engine.threads(),
                  chunks.size(),
                  chunkTokens,
                  String.join(
                      ", ", chunkFiles.stream().map(p -> p.getFileName().toString()).toList()),
                  suffixTokens,
                  queryFile.getFileName(),
                  continuation,
                  reps,
                  warmup)
              + BlendBenchmark.table(rows);
      System.out.print(md);
      if (out != null) {
        Files.createDirectories(out);
        Files.writeString(out.resolve("blend.md"), md);
        System.out.println("\nwrote " + out.resolve("blend.md"));
      }
    }
    return 0;
  }

  /** Tokens {@code [skip, skip + n)} of a UTF-8 file's text, without BOS. */
  private static int[] window(Tokenizer tok, Path file, int skip, int n) throws IOException {
    ModelOptions.requireFile(file, "text file");
    int[] ids = tok.encode(Files.readString(file, StandardCharsets.UTF_8), false, false);
    if (ids.length < skip + n) {
      throw new IllegalArgumentException(
          file + " has " + ids.length + " tokens, fewer than the " + (skip + n) + " needed");
    }
    return Arrays.copyOfRange(ids, skip, skip + n);
  }
}
