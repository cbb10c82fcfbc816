package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.gguf.GgufFormatException;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.util.concurrent.Callable;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.Command;

class CliErrorsTest {
  @Command(name = "fail")
  static final class Failing implements Callable<Integer> {
    final RuntimeException error;

    Failing(RuntimeException error) {
      this.error = error;
    }

    @Override
    public Integer call() {
      throw error;
    }
  }

  private static String[] runFailing(RuntimeException e) {
    StringWriter err = new StringWriter();
    CommandLine cmd =
        new CommandLine(new Failing(e)).setExecutionExceptionHandler(CliErrors.handler());
    cmd.setErr(new PrintWriter(err));
    int code = cmd.execute();
    return new String[] {String.valueOf(code), err.toString()};
  }

  @Test
  void userErrorsBecomeOneLineAndExitCode1() {
    for (RuntimeException e :
        new RuntimeException[] {
          new GgufFormatException("m.gguf: truncated"),
          new IllegalArgumentException("bad --type"),
          new UncheckedIOException("cannot write x", new IOException("disk full")),
          new CliErrors.UserError("no such model")
        }) {
      String[] r = runFailing(e);
      assertThat(r[0]).isEqualTo("1");
      assertThat(r[1]).isEqualTo("kvslim: " + e.getMessage() + System.lineSeparator());
    }
  }

  @Test
  void bugsKeepTheirStackTrace() {
    String[] r = runFailing(new IllegalStateException("bug"));
    assertThat(r[0]).isNotEqualTo("0");
    assertThat(r[1]).contains("java.lang.IllegalStateException: bug").contains("\tat ");
  }

  @Test
  void multiLineMessagesAreFlattened() {
    assertThat(CliErrors.message(new IllegalArgumentException("a\nb"))).isEqualTo("kvslim: a b");
  }
}
