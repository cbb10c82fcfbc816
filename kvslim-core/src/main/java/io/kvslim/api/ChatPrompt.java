package io.kvslim.api;

/**
 * A conversation rendered by a chat template, ready for {@link KvslimSession#generate(ChatPrompt,
 * GenerateOptions, TokenCallback)}.
 *
 * @param text the rendered prompt, ending where the assistant's reply begins
 * @param tokens the prompt's tokens (special tokens parsed, one BOS)
 * @param endOfTurn the text that ends an assistant turn in this format; generation stops there
 * @param priority per token of {@code tokens}, whether it belongs to the instruction or the
 *     question (a system message, the last user message, the template's generation prompt) rather
 *     than to earlier turns or documents; a KV method with a segment prior ({@code lookm}) evicts
 *     the others first. Null: every token is priority.
 */
public record ChatPrompt(String text, int[] tokens, String endOfTurn, boolean[] priority) {
  public ChatPrompt {
    if (priority != null && priority.length != tokens.length) {
      throw new KvslimException(
          "the prompt has "
              + tokens.length
              + " tokens but "
              + priority.length
              + " priority labels");
    }
  }

  /** A prompt without segment labels: every token is priority. */
  public ChatPrompt(String text, int[] tokens, String endOfTurn) {
    this(text, tokens, endOfTurn, null);
  }
}
