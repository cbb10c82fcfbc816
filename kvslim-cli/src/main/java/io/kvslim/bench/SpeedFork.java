package io.kvslim.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Runs a spec's speed measurement in a JVM of its own, as JMH forks: in one process the JIT
 * compiles the attention kernels that several KV formats share with the type profiles of all of
 * them, so a spec measured after others can run slower code than it would alone (measured with
 * {@code KvReadCpuBench}: KIVI-2's key scores took 2.8 ms in a JVM that had run F32 and KIVI-4
 * first against 1.5 ms alone). The child is this program with the same JVM options, given one spec,
 * and writes its {@link SpeedSuite.Run}s to a file that the parent reads.
 */
public final class SpeedFork {
  private SpeedFork() {}

  /** How long a child may run before it is stopped. */
  private static final long LIMIT_MINUTES = 180;

  /**
   * Runs {@code io.kvslim.cli.Main} with {@code args} (which end with the child's result file) in a
   * new JVM with this one's options and class path; its standard output is discarded (the parent
   * prints the results), its error output is copied to this process's when it ends.
   *
   * @throws IOException if the child cannot start, fails or runs past its limit
   */
  public static void run(List<String> args, String what) throws IOException {
    List<String> command = new ArrayList<>();
    command.add(ProcessHandle.current().info().command().orElse("java"));
    for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
      if (!a.startsWith("-agentlib") && !a.startsWith("-javaagent")) {
        command.add(a); // a debugger's or coverage agent's port or file is the parent's own
      }
    }
    command.add("-cp");
    command.add(System.getProperty("java.class.path"));
    command.add("io.kvslim.cli.Main");
    command.addAll(args);
    Path errors = Files.createTempFile("kvslim-fork-", ".err");
    try {
      Process p =
          new ProcessBuilder(command)
              .redirectOutput(ProcessBuilder.Redirect.DISCARD)
              .redirectError(errors.toFile())
              .start();
      wait(p, what);
      // the child's messages, but for the JVM's line about incubator modules (the launcher
      // drops the parent's)
      for (String line : Files.readAllLines(errors)) {
        if (!line.startsWith("WARNING: Using incubator modules")) {
          System.err.println(line);
        }
      }
      if (p.exitValue() != 0) {
        throw new IOException(
            "the measurement of " + what + " in its own JVM failed (exit " + p.exitValue() + ")");
      }
    } finally {
      Files.deleteIfExists(errors);
    }
  }

  private static void wait(Process p, String what) throws IOException {
    try {
      if (!p.waitFor(LIMIT_MINUTES, TimeUnit.MINUTES)) {
        p.destroyForcibly();
        throw new IOException(
            "the measurement of " + what + " in its own JVM ran past " + LIMIT_MINUTES + " min");
      }
    } catch (InterruptedException e) {
      p.destroyForcibly();
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while measuring " + what + " in its own JVM", e);
    }
  }

  /** Writes {@code runs} to {@code file} for the parent. */
  public static void write(Path file, List<SpeedSuite.Run> runs) throws IOException {
    List<Map<String, Object>> out = new ArrayList<>();
    for (SpeedSuite.Run run : runs) {
      SpeedBenchmark.Result r = run.result();
      SpeedBenchmark.Settings s = r.settings();
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("spec", run.spec());
      m.put("prompt", s.prompt());
      m.put("gen", s.gen());
      m.put("depth", s.depth());
      m.put("batch", s.batch());
      m.put("repeat", s.repeat());
      m.put("warmup", s.warmup());
      m.put("seed", s.seed());
      m.put("prefill_runs", r.prefillTokensPerSecond().runs());
      m.put("decode_runs", r.decodeTokensPerSecond().runs());
      m.put("kv_bytes_after_decode", r.kvBytesAfterDecode());
      m.put("weight_gb_per_second", r.weightGbPerSecond());
      m.put("kv_gb_per_second", r.kvGbPerSecond());
      m.put("policy_nanos", run.policyNanos());
      m.put("steps", run.steps());
      m.put("f16_bytes", run.f16Bytes());
      out.add(m);
    }
    new ObjectMapper().writeValue(file.toFile(), out);
  }

  /** The runs a child wrote to {@code file}. */
  public static List<SpeedSuite.Run> read(Path file) throws IOException {
    List<SpeedSuite.Run> runs = new ArrayList<>();
    for (JsonNode m : new ObjectMapper().readTree(file.toFile())) {
      SpeedBenchmark.Settings s =
          new SpeedBenchmark.Settings(
              m.get("prompt").asInt(),
              m.get("gen").asInt(),
              m.get("depth").asInt(),
              m.get("batch").asInt(),
              m.get("repeat").asInt(),
              m.get("warmup").asInt(),
              m.get("seed").asLong());
      SpeedBenchmark.Result r =
          new SpeedBenchmark.Result(
              s,
              SpeedBenchmark.Stat.of(doubles(m.get("prefill_runs"))),
              SpeedBenchmark.Stat.of(doubles(m.get("decode_runs"))),
              m.get("kv_bytes_after_decode").asLong(),
              m.get("weight_gb_per_second").asDouble(),
              m.get("kv_gb_per_second").asDouble());
      runs.add(
          new SpeedSuite.Run(
              m.get("spec").asText(),
              r,
              m.get("policy_nanos").asLong(),
              m.get("steps").asLong(),
              m.get("f16_bytes").asLong()));
    }
    return runs;
  }

  /**
   * One run made of several forks' runs of the same spec and settings: every measured run of each
   * fork pooled (the median and spread over all of them, so the spread covers the differences
   * between JVM launches), the policy time and steps summed, bytes and bandwidths of the first.
   */
  public static SpeedSuite.Run pool(List<SpeedSuite.Run> forks) {
    SpeedSuite.Run first = forks.get(0);
    if (forks.size() == 1) {
      return first;
    }
    int n = 0;
    for (SpeedSuite.Run r : forks) {
      n += r.result().decodeTokensPerSecond().runs().length;
    }
    double[] prefill = new double[n];
    double[] decode = new double[n];
    long nanos = 0;
    long steps = 0;
    int at = 0;
    for (SpeedSuite.Run r : forks) {
      double[] p = r.result().prefillTokensPerSecond().runs();
      double[] d = r.result().decodeTokensPerSecond().runs();
      System.arraycopy(p, 0, prefill, at, p.length);
      System.arraycopy(d, 0, decode, at, d.length);
      at += d.length;
      nanos += r.policyNanos();
      steps += r.steps();
    }
    SpeedBenchmark.Result f = first.result();
    SpeedBenchmark.Result pooled =
        new SpeedBenchmark.Result(
            f.settings(),
            SpeedBenchmark.Stat.of(prefill),
            SpeedBenchmark.Stat.of(decode),
            f.kvBytesAfterDecode(),
            f.weightGbPerSecond(),
            f.kvGbPerSecond());
    return new SpeedSuite.Run(first.spec(), pooled, nanos, steps, first.f16Bytes());
  }

  private static double[] doubles(JsonNode a) {
    double[] d = new double[a.size()];
    for (int i = 0; i < d.length; i++) {
      d[i] = a.get(i).asDouble();
    }
    return d;
  }
}
