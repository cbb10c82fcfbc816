package io.kvslim.cli;

import io.kvslim.bench.BenchOutput;
import io.kvslim.bench.LlamaCppImport;
import io.kvslim.bench.ResultStore;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code kvslim bench import-llamacpp}: llama.cpp's reports as peer rows of a results file. */
@Command(
    name = "import-llamacpp",
    mixinStandardHelpOptions = true,
    description = {
      "Add llama.cpp results to DIR/results.json as rows marked \"peer\": \"llama.cpp\": the"
          + " stdout of llama-perplexity (with or without --kl-divergence) and the output of"
          + " llama-bench -o jsonl, and llama-batched-bench's table or --output-format jsonl"
          + " (decode tokens/s at depth PP, drawn beside kvslim's bench speed). Then rewrite the"
          + " reports."
    })
public final class BenchImportCommand implements Callable<Integer> {
  @Parameters(arity = "1..*", paramLabel = "FILE", description = "llama.cpp output files.")
  List<Path> files;

  @Option(names = "--out", required = true, paramLabel = "DIR", description = "Results folder.")
  Path out;

  @Option(
      names = "--model",
      paramLabel = "NAME",
      description =
          "Model file name for records whose output does not name it (llama-batched-bench's"
              + " jsonl without its log), e.g. synth-110m-q8_0.gguf.")
  String model;

  @Override
  public Integer call() throws IOException {
    List<Map<String, Object>> records = new ArrayList<>();
    for (Path f : files) {
      ModelOptions.requireFile(f, "llama.cpp output");
      records.addAll(
          LlamaCppImport.parse(
              f.getFileName().toString(), Files.readString(f, StandardCharsets.UTF_8)));
    }
    for (Map<String, Object> r : records) {
      if (model != null && "unknown".equals(r.get("model"))) {
        r.put("model", Path.of(model).getFileName().toString());
      }
    }
    Files.createDirectories(out);
    ResultStore store = ResultStore.open(out, true);
    store.add(records);
    System.out.println(
        "imported " + records.size() + " llama.cpp records into " + out.resolve("results.json"));
    BenchOutput.writeReports(out, store);
    return 0;
  }
}
