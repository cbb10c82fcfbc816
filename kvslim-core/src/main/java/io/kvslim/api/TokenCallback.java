package io.kvslim.api;

/**
 * Receives a generation as it happens: once per generated token, with the text that token lets the
 * caller show. That text may be empty (the token ends inside a UTF-8 character, or could start a
 * stop string and is held back until the next tokens show whether it does). Text held back when the
 * generation ends comes in one last call with the token {@link #END}. The texts of all calls
 * concatenate to {@link Generation#text()}.
 */
@FunctionalInterface
public interface TokenCallback {
  /** The token of the last call, which only delivers text held back until the end. */
  int END = -1;

  /**
   * One generated token.
   *
   * @param token the token id, or {@link #END}
   * @param text the text that may be shown now (possibly empty)
   * @return false to stop generating after this token
   */
  boolean onToken(int token, String text);

  /** A callback that ignores every token. */
  static TokenCallback none() {
    return (token, text) -> true;
  }
}
