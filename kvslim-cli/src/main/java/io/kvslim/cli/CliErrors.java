package io.kvslim.cli;

import io.kvslim.gguf.GgufFormatException;
import io.kvslim.gguf.SafeText;
import java.io.UncheckedIOException;
import java.nio.file.InvalidPathException;
import picocli.CommandLine;
import picocli.CommandLine.IExecutionExceptionHandler;

/**
 * How every {@code kvslim} command reports errors the user caused (bad path, bad GGUF file, bad
 * option value): one line {@code kvslim: <message>} on stderr and exit code 1, no stack trace.
 * Commands simply throw {@link GgufFormatException}, {@link IllegalArgumentException}, {@link
 * UncheckedIOException} or {@link UserError}; {@link Main#run} installs {@link #handler()}. Any
 * other exception is a bug and keeps picocli's default report with its stack trace.
 */
public final class CliErrors {
  private CliErrors() {}

  public static final int EXIT_USER_ERROR = 1;

  /** An error in what the user asked for, with a message meant for them. */
  public static final class UserError extends RuntimeException {
    public UserError(String message) {
      super(message);
    }

    public UserError(String message, Throwable cause) {
      super(message, cause);
    }
  }

  /** Whether {@code t} is an error of the user's input rather than a bug. */
  public static boolean isUserError(Throwable t) {
    return t instanceof UserError
        || t instanceof GgufFormatException
        || t instanceof IllegalArgumentException
        || t instanceof InvalidPathException
        || t instanceof UncheckedIOException
        || t instanceof io.kvslim.kv.KvUnavailableException;
  }

  /** The one-line message for a user error, starting with {@code kvslim: }. */
  public static String message(Throwable t) {
    String m = t.getMessage();
    if (m == null || m.isBlank()) {
      m = t.getClass().getSimpleName();
    }
    // messages quote file content and user input: no control character reaches the terminal
    return "kvslim: " + SafeText.escape(m.strip().replace('\n', ' '));
  }

  /** Prints the error to the command's stderr and returns the exit code for it. */
  public static int report(CommandLine cmd, Throwable t) {
    cmd.getErr().println(message(t));
    cmd.getErr().flush();
    return EXIT_USER_ERROR;
  }

  /** The execution-exception handler that maps user errors to {@link #report}. */
  public static IExecutionExceptionHandler handler() {
    return (ex, cmd, parseResult) -> {
      if (isUserError(ex)) {
        return report(cmd, ex);
      }
      throw ex;
    };
  }
}
