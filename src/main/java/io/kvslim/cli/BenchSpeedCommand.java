package io.kvslim.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.kvslim.engine.Engine;
import io.kvslim.eval.SpeedBenchmark;
import io.kvslim.model.Model;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code kvslim bench speed}: prefill and decode tokens/s, like llama-bench. */
@Command(
    name = "speed",
    mixinStandardHelpOptions = true,
    description = {
      "Prefill tokens/s for a prompt of P random tokens and decode tokens/s for N steps after a"
          + " prefill of D tokens, for B sequences decoding together; median and spread of R runs"
          + " after one warm-up."
    })
public final class BenchSpeedCommand implements Callable<Integer> {
  @Mixin ModelOptions modelOptions;
  @Mixin KvOptions kvOptions;

  @Option(names = "--prompt", description = "Prompt tokens for prefill (default ${DEFAULT-VALUE}).")
  int prompt = 512;

  @Option(names = "--gen", description = "Decode steps (default ${DEFAULT-VALUE}).")
  int gen = 128;

  @Option(
      names = "--depth",
      description = "Context depth before decoding (default ${DEFAULT-VALUE}).")
  int depth = 0;

  @Option(
      names = "--batch",
      description = "Sequences decoding together (default ${DEFAULT-VALUE}).")
  int batch = 1;

  @Option(names = "--repeat", description = "Measured runs (default ${DEFAULT-VALUE}).")
  int repeat = 5;

  @Option(names = "--seed", description = "Seed of the random tokens (default ${DEFAULT-VALUE}).")
  long seed = 1;

  @Option(names = "--json", paramLabel = "FILE", description = "Write the results as JSON.")
  Path json;

  @Override
  public Integer call() throws IOException {
    SpeedBenchmark.Settings s =
        new SpeedBenchmark.Settings(prompt, gen, depth, batch, repeat, seed);
    try (Model model = modelOptions.load();
        Engine engine = modelOptions.engine(model, kvOptions.factory())) {
      SpeedBenchmark.Result r = new SpeedBenchmark(engine).run(s);
      var p = r.prefillTokensPerSecond();
      var d = r.decodeTokensPerSecond();
      System.out.printf(
          Locale.ROOT,
          "model %s | %d threads | KV %s%n"
              + "prefill  pp%-5d %9.1f tokens/s  (min %.1f, max %.1f, ±%.1f%%)%n"
              + "decode   tg%-5d %9.1f tokens/s  (min %.1f, max %.1f, ±%.1f%%) depth %d, batch %d%n"
              + "bandwidth: weights %.2f GB/s + KV %.2f GB/s; KV bytes after decode %s%n",
          modelOptions.model.getFileName(),
          engine.threads(),
          kvOptions.spec(),
          prompt,
          p.median(),
          p.min(),
          p.max(),
          p.spreadPercent(),
          gen,
          d.median(),
          d.min(),
          d.max(),
          d.spreadPercent(),
          depth,
          batch,
          r.weightGbPerSecond(),
          r.kvGbPerSecond(),
          Format.bytes(r.kvBytesAfterDecode()));
      if (json != null) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("model", modelOptions.model.toString());
        m.put("kv", kvOptions.spec());
        m.put("threads", engine.threads());
        m.put("batch", batch);
        m.put("depth", depth);
        m.put("prompt", prompt);
        m.put("gen", gen);
        m.put("repeat", repeat);
        m.put("prefill_tokens_per_second", p.median());
        m.put("prefill_tokens_per_second_min", p.min());
        m.put("prefill_tokens_per_second_max", p.max());
        m.put("prefill_tokens_per_second_runs", p.runs());
        m.put("decode_tokens_per_second", d.median());
        m.put("decode_tokens_per_second_min", d.min());
        m.put("decode_tokens_per_second_max", d.max());
        m.put("decode_tokens_per_second_runs", d.runs());
        m.put("weight_gb_per_second", r.weightGbPerSecond());
        m.put("kv_gb_per_second", r.kvGbPerSecond());
        m.put("kv_bytes", r.kvBytesAfterDecode());
        new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValue(json.toFile(), m);
      }
      return 0;
    }
  }
}
