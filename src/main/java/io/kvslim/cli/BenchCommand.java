package io.kvslim.cli;

import picocli.CommandLine.Command;

/** {@code kvslim bench}: benchmarks (speed now; quality and throughput to come). */
@Command(
    name = "bench",
    mixinStandardHelpOptions = true,
    description = "Benchmarks of speed, quality and memory.",
    subcommands = {BenchSpeedCommand.class, BenchServeCommand.class})
public final class BenchCommand implements Runnable {
  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    throw new picocli.CommandLine.ParameterException(
        spec.commandLine(), "choose a benchmark: speed, serve");
  }
}
