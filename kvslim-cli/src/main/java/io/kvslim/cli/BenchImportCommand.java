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
          + " llama-bench -o jsonl. Then rewrite the reports."
    })
public final class BenchImportCommand implements Callable<Integer> {
  @Parameters(arity = "1..*", paramLabel = "FILE", description = "llama.cpp output files.")
  List<Path> files;

  @Option(names = "--out", required = true, paramLabel = "DIR", description = "Results folder.")
  Path out;

  @Override
  public Integer call() throws IOException {
    List<Map<String, Object>> records = new ArrayList<>();
    for (Path f : files) {
      ModelOptions.requireFile(f, "llama.cpp output");
      records.addAll(
          LlamaCppImport.parse(
              f.getFileName().toString(), Files.readString(f, StandardCharsets.UTF_8)));
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
