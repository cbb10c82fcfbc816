package io.kvslim.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** Entry point of the {@code kvslim} command line. */
@Command(
    name = "kvslim",
    mixinStandardHelpOptions = true,
    version = "kvslim 0.1.0",
    description = "Java LLM inference with a compressible KV cache.",
    subcommands = {CommandLine.HelpCommand.class, TokenizeCommand.class})
public final class Main {
  public static void main(String[] args) {
    System.exit(run(args));
  }

  /** Runs the CLI and returns its exit code; tests call this directly. */
  public static int run(String... args) {
    return new CommandLine(new Main()).execute(args);
  }
}
