package io.kvslim.api;

/**
 * A conversation rendered by a chat template, ready for {@link KvslimSession#generate(ChatPrompt,
 * GenerateOptions, TokenCallback)}.
 *
 * @param text the rendered prompt, ending where the assistant's reply begins
 * @param tokens the prompt's tokens (special tokens parsed, one BOS)
 * @param endOfTurn the text that ends an assistant turn in this format; generation stops there
 */
public record ChatPrompt(String text, int[] tokens, String endOfTurn) {}
