package io.kvslim.cli;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvCacheFactory;
import io.kvslim.model.Model;
import io.kvslim.model.Numerics;
import io.kvslim.tensor.Parallel;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** Options shared by the commands that load a model. */
public final class ModelOptions {
  @Option(
      names = {"-m", "--model"},
      paramLabel = "MODEL",
      description =
          "GGUF model file (default: the bundled code model " + BundledModel.RELATIVE_PATH + ").")
  Path model;

  @Option(
      names = {"-t", "--threads"},
      paramLabel = "T",
      description =
          "Worker threads (default: the number of CPUs, ${DEFAULT-VALUE}; at most "
              + MAX_THREADS_PER_CPU
              + " per CPU).")
  int threads = Parallel.defaultThreads();

  /**
   * Threads allowed per CPU. Workers spin between the many short parallel loops of a token, so
   * threads beyond the CPU count only take turns (and thousands of them stall the machine); a few
   * times the count is still allowed for experiments, more is refused.
   */
  static final int MAX_THREADS_PER_CPU = 4;

  Model load() {
    checkThreads(threads);
    return Model.load(modelPath());
  }

  /** Refuses a thread count below 1 or above {@link #MAX_THREADS_PER_CPU} per CPU. */
  static void checkThreads(int threads) {
    if (threads < 1) {
      throw new IllegalArgumentException("--threads must be at least 1, got " + threads);
    }
    int cpus = Runtime.getRuntime().availableProcessors();
    long max = (long) MAX_THREADS_PER_CPU * cpus;
    if (threads > max) {
      throw new IllegalArgumentException(
          "--threads "
              + threads
              + " is more than "
              + MAX_THREADS_PER_CPU
              + " per CPU ("
              + cpus
              + " CPUs here, so at most "
              + max
              + "); extra threads only wait for a CPU");
    }
  }

  /** The model file: {@code -m}, or the bundled model. */
  Path modelPath() {
    if (model == null) {
      model = BundledModel.require();
    }
    return model;
  }

  Engine engine(Model m, KvCacheFactory kv) {
    return new Engine(m, threads, kv);
  }

  Engine engine(Model m, KvCacheFactory kv, Numerics numerics) {
    return new Engine(m, threads, kv, numerics);
  }

  static Path requireFile(Path p, String what) {
    if (!java.nio.file.Files.isRegularFile(p)) {
      throw new IllegalArgumentException(what + " " + p + " does not exist or is not a file");
    }
    return p;
  }
}
