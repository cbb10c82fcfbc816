package io.kvslim.cli;

import java.io.PrintWriter;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** Entry point of the {@code kvslim} command line. */
@Command(
    name = "kvslim",
    mixinStandardHelpOptions = true,
    version = "kvslim 0.1.0",
    description = "Java LLM inference with a compressible KV cache.",
    subcommands = {
      CommandLine.HelpCommand.class,
      InspectCommand.class,
      SynthCommand.class,
      TokenizeCommand.class,
      GenerateCommand.class,
      PerplexityCommand.class,
      CalibrateCommand.class,
      ConvertCommand.class,
      BenchCommand.class,
      KvMethodsCommand.class,
      ServeCommand.class
    })
public final class Main {
  public static void main(String[] args) {
    System.exit(run(args));
  }

  /** Runs the CLI and returns its exit code; tests call this directly. */
  public static int run(String... args) {
    return commandLine().execute(args);
  }

  /** Runs the CLI with its output and errors going to the given writers (for tests). */
  public static int run(PrintWriter out, PrintWriter err, String... args) {
    CommandLine cmd = commandLine();
    cmd.setOut(out);
    cmd.setErr(err);
    try {
      return cmd.execute(args);
    } finally {
      out.flush();
      err.flush();
    }
  }

  /** The configured command line: user errors print one line and exit 1 (see {@link CliErrors}). */
  public static CommandLine commandLine() {
    return new CommandLine(new Main()).setExecutionExceptionHandler(CliErrors.handler());
  }
}
