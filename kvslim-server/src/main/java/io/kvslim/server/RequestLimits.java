package io.kvslim.server;

/**
 * The checks a request's tokens must pass before the {@link Scheduler} queues it: a prompt of at
 * least one token, every id inside the vocabulary, and the prompt plus {@code max_tokens} within
 * the model's context.
 */
final class RequestLimits {
  private RequestLimits() {}

  /**
   * @throws ApiException 400 naming the field ({@code prompt} or {@code max_tokens}) that breaks a
   *     limit
   */
  static void check(int[] prompt, int maxTokens, int vocab, int context) {
    if (prompt.length == 0) {
      throw ApiException.badRequest("the prompt has no tokens", "prompt");
    }
    for (int t : prompt) {
      if (t < 0 || t >= vocab) {
        throw ApiException.badRequest(
            "token id " + t + " in 'prompt' is outside the vocabulary (0.." + (vocab - 1) + ")",
            "prompt");
      }
    }
    if (prompt.length >= context) {
      throw new ApiException(
          400,
          "the prompt has "
              + prompt.length
              + " tokens; the model's context is "
              + context
              + " tokens",
          ApiException.INVALID_REQUEST,
          "prompt",
          "context_length_exceeded");
    }
    if ((long) prompt.length + maxTokens > context) {
      throw new ApiException(
          400,
          "'max_tokens' is "
              + maxTokens
              + " but the prompt has "
              + prompt.length
              + " tokens and the model's context is "
              + context
              + " (at most "
              + (context - prompt.length)
              + " more)",
          ApiException.INVALID_REQUEST,
          "max_tokens",
          "context_length_exceeded");
    }
  }
}
