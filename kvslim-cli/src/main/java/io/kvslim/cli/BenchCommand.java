package io.kvslim.cli;

import picocli.CommandLine.Command;

/** {@code kvslim bench}: speed, quality, throughput, and llama.cpp imports. */
@Command(
    name = "bench",
    mixinStandardHelpOptions = true,
    description = "Benchmarks of speed, quality and memory.",
    subcommands = {
      BenchSpeedCommand.class,
      BenchQualityCommand.class,
      BenchThroughputCommand.class,
      BenchImportCommand.class,
      BenchServeCommand.class,
      BenchAttentionCommand.class,
      BenchBlendCommand.class,
      BenchTiersCommand.class
    })
public final class BenchCommand implements Runnable {
  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    throw new picocli.CommandLine.ParameterException(
        spec.commandLine(),
        "choose a benchmark: speed, quality, throughput, serve or import-llamacpp");
  }
}
