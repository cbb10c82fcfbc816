package io.kvslim.api;

/**
 * One message of a conversation, as a chat template sees it.
 *
 * @param role {@code system}, {@code user} or {@code assistant} (a template may accept others)
 * @param content the message's text
 */
public record ChatMessage(String role, String content) {
  /** Checks that both parts are present. */
  public ChatMessage {
    if (role == null || role.isBlank()) {
      throw new KvslimException("a chat message needs a role");
    }
    if (content == null) {
      throw new KvslimException("the " + role + " message has no content");
    }
  }

  /** A system message. */
  public static ChatMessage system(String content) {
    return new ChatMessage("system", content);
  }

  /** A user message. */
  public static ChatMessage user(String content) {
    return new ChatMessage("user", content);
  }

  /** An assistant message. */
  public static ChatMessage assistant(String content) {
    return new ChatMessage("assistant", content);
  }
}
