package io.kvslim.chat;

import io.kvslim.kv.PromptSegments;
import io.kvslim.tokenizer.Tokenizer;
import java.util.List;

/**
 * Turns chat messages into a model's prompt. A model whose GGUF carries {@code
 * tokenizer.chat_template} gets that Jinja template run (by {@link JinjaChatTemplate}, with the
 * tokenizer's BOS and EOS token texts as {@code bos_token} and {@code eos_token}), exactly as
 * Hugging Face's {@code apply_chat_template} renders it. A model without one gets the marker-based
 * {@link ChatFamily#CHATML}. A template that fails is an error ({@link ChatTemplateException}),
 * never a silent fallback: a prompt in the wrong format makes a model answer badly without saying
 * why.
 */
public final class ChatTemplate {
  /** One message of a conversation. */
  public record Message(String role, String content) {}

  private final JinjaChatTemplate jinja;
  private final ChatFamily family;

  private ChatTemplate(JinjaChatTemplate jinja, ChatFamily family) {
    this.jinja = jinja;
    this.family = family;
  }

  /**
   * The template of a model: {@code source} (a GGUF {@code tokenizer.chat_template}) run by Jinja,
   * or the ChatML fallback when it is null or blank.
   *
   * @param bosToken the text of the model's BOS token, or null if it has none
   * @param eosToken the text of the model's EOS token, or null if it has none
   */
  public static ChatTemplate of(String source, String bosToken, String eosToken) {
    if (source == null || source.isBlank()) {
      return new ChatTemplate(null, ChatFamily.CHATML);
    }
    return new ChatTemplate(
        new JinjaChatTemplate(source, bosToken, eosToken), ChatFamily.recognize(source));
  }

  /**
   * The template of a model whose tokenizer is {@code tokenizer}: its token texts are the globals.
   */
  public static ChatTemplate of(String source, Tokenizer tokenizer) {
    return of(source, tokenText(tokenizer, tokenizer.bos()), tokenText(tokenizer, tokenizer.eos()));
  }

  /** The fixed ChatML prompt kvslim uses for a model without a template. */
  public static ChatTemplate fallback() {
    return of(null, null, null);
  }

  private static String tokenText(Tokenizer tokenizer, int id) {
    return id < 0 ? null : tokenizer.piece(id);
  }

  /** Whether the prompt comes from the model's own Jinja template. */
  public boolean fromModel() {
    return jinja != null;
  }

  /** {@code jinja} for a model's template, else the fallback family's name ({@code chatml}). */
  public String describe() {
    return jinja != null ? "jinja" : family.name().toLowerCase(java.util.Locale.ROOT);
  }

  /**
   * The text that ends an assistant turn in this format (recognised from the template's markers), a
   * stop string for chat completions.
   */
  public String endOfTurn() {
    return family.endOfTurn();
  }

  /**
   * The prompt for {@code messages}; with {@code addGenerationPrompt} it ends where the assistant's
   * reply begins.
   *
   * @throws ChatTemplateException if the template rejects the messages or fails
   */
  public String render(List<Message> messages, boolean addGenerationPrompt) {
    return jinja != null
        ? jinja.render(messages, addGenerationPrompt)
        : family.render(messages, addGenerationPrompt);
  }

  /**
   * Renders a one-message conversation ({@code user: Hello}) and returns the error sentence if the
   * template cannot render it for another reason than rejecting the messages, else null: servers
   * call this at startup so a template Jinjava cannot run is reported before the first request.
   */
  public String probe() {
    try {
      render(List.of(new Message("user", "Hello")), true);
      return null;
    } catch (ChatTemplateException e) {
      return e.rejectsMessages() ? null : e.getMessage();
    }
  }

  /**
   * The prompt's tokens: the rendered text with its special tokens parsed. When the tokenizer adds
   * BOS itself and the template wrote the BOS text first, that text is dropped so the prompt starts
   * with one BOS, not two (as llama.cpp does in {@code common/chat.cpp}).
   *
   * @throws ChatTemplateException if the template rejects the messages or fails
   */
  public int[] encode(Tokenizer tokenizer, List<Message> messages) {
    return encodeText(tokenizer, render(messages, true));
  }

  /** A prompt's tokens with their segment labels ({@link #encodeSegmented}). */
  public record Segmented(int[] tokens, PromptSegments segments) {}

  /**
   * {@link #encode}'s tokens, each labelled by the message that rendered it (LOOK-M's text prior,
   * METHODS.md H4): the tokens of a {@code system} or {@code developer} message and of the last
   * {@code user} message are priority, as are the generation prompt's; those of every other message
   * (earlier turns, assistant replies, tool output or documents under their own roles) are not. A
   * message's tokens run from the end of the rendering of the messages before it to the end of the
   * rendering that includes it (both without the generation prompt), so its role header is its own;
   * where a template renders a shorter conversation differently, or tokens merge across that
   * boundary, the labels near it may be off by those tokens. A template that rejects a shorter
   * conversation gives every token priority.
   *
   * @throws ChatTemplateException if the template rejects the messages or fails
   */
  public Segmented encodeSegmented(Tokenizer tokenizer, List<Message> messages) {
    int[] tokens = encode(tokenizer, messages);
    boolean[] priority = new boolean[tokens.length];
    java.util.Arrays.fill(priority, true);
    int lastUser = -1;
    for (int i = 0; i < messages.size(); i++) {
      if ("user".equals(messages.get(i).role())) {
        lastUser = i;
      }
    }
    int start = 0;
    for (int i = 0; i < messages.size(); i++) {
      int end;
      try {
        end = encodeText(tokenizer, render(messages.subList(0, i + 1), false)).length;
      } catch (ChatTemplateException e) {
        java.util.Arrays.fill(priority, true);
        break;
      }
      end = Math.max(start, Math.min(end, tokens.length));
      String role = messages.get(i).role();
      boolean text = i == lastUser || "system".equals(role) || "developer".equals(role);
      if (!text) {
        java.util.Arrays.fill(priority, start, end, false);
      }
      start = end;
    }
    return new Segmented(tokens, new PromptSegments(priority));
  }

  private static int[] encodeText(Tokenizer tokenizer, String text) {
    if (tokenizer.addsBos()) {
      String bos = tokenizer.piece(tokenizer.bos());
      if (!bos.isEmpty() && text.startsWith(bos)) {
        text = text.substring(bos.length());
      }
    }
    return tokenizer.encode(text, true, true);
  }
}
