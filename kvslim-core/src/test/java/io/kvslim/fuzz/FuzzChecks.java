package io.kvslim.fuzz;

import static org.assertj.core.api.Assertions.assertThat;

/** What the fuzz tests require of an error they accept. */
final class FuzzChecks {
  private FuzzChecks() {}

  /**
   * An error about user input: a message that names the problem. User text it quotes is echoed as
   * given (the CLI escapes control characters when it prints, the server's JSON encodes them).
   */
  static void assertHasMessage(Throwable e) {
    assertThat(e.getMessage()).as("message of %s", e.getClass().getName()).isNotBlank();
  }

  /**
   * An error about file content: a message without control characters, so that a crafted name in a
   * file can neither break the line nor drive the terminal (content is quoted escaped).
   */
  static void assertPrintable(Throwable e) {
    assertHasMessage(e);
    String m = e.getMessage();
    assertThat(m.chars().filter(c -> c < 0x20 || (c >= 0x7f && c < 0xa0)))
        .as("control characters in the message of %s: %s", e.getClass().getName(), m)
        .isEmpty();
  }
}
