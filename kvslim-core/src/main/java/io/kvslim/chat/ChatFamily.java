package io.kvslim.chat;

import io.kvslim.chat.ChatTemplate.Message;
import java.util.List;

/**
 * The chat prompt families kvslim knows by their markers (ChatML {@code <|im_start|>}, Llama 3
 * {@code <|start_header_id|>}, Llama 2 / Mistral {@code [INST]}, Gemma {@code <start_of_turn>},
 * Phi-3 {@code <|end|>}, Zephyr {@code <|user|>}). A GGUF's Jinja template is run by {@link
 * ChatTemplate}; a family is used for two things only: the end-of-turn text of a template (a stop
 * string), recognised from its markers, and the prompt of a model without a template, which gets
 * {@link #CHATML}: role headers between {@code <|im_start|>} and {@code <|im_end|>}, which many
 * instruction-tuned models know and which is harmless text to the others.
 *
 * <p>The beginning-of-sequence token is not rendered: the tokenizer adds it when the model asks for
 * it. Rendered text is tokenized with special-token parsing on, so markers become their ids.
 */
public enum ChatFamily {
  CHATML("<|im_end|>"),
  LLAMA3("<|eot_id|>"),
  LLAMA2("</s>"),
  MISTRAL("</s>"),
  GEMMA("<end_of_turn>"),
  PHI3("<|end|>"),
  ZEPHYR("</s>");

  private final String endOfTurn;

  ChatFamily(String endOfTurn) {
    this.endOfTurn = endOfTurn;
  }

  /** The text that ends an assistant turn; generation stops there if the model writes it. */
  public String endOfTurn() {
    return endOfTurn;
  }

  /**
   * The family of {@code template} (a GGUF Jinja chat template, or null), {@link #CHATML} if none.
   */
  public static ChatFamily recognize(String template) {
    if (template == null || template.isBlank()) {
      return CHATML;
    }
    if (template.contains("<|im_start|>")) {
      return CHATML;
    }
    if (template.contains("<|start_header_id|>")) {
      return LLAMA3;
    }
    if (template.contains("<start_of_turn>")) {
      return GEMMA;
    }
    if (template.contains("[INST]")) {
      return template.contains("<<SYS>>") ? LLAMA2 : MISTRAL;
    }
    if (template.contains("<|user|>")) {
      return template.contains("<|end|>") ? PHI3 : ZEPHYR;
    }
    return CHATML;
  }

  /**
   * The prompt for {@code messages}; with {@code addGenerationPrompt} it ends where the assistant's
   * reply begins.
   */
  public String render(List<Message> messages, boolean addGenerationPrompt) {
    StringBuilder sb = new StringBuilder();
    switch (this) {
      case CHATML -> {
        for (Message m : messages) {
          sb.append("<|im_start|>").append(m.role()).append('\n');
          sb.append(m.content()).append("<|im_end|>\n");
        }
        if (addGenerationPrompt) {
          sb.append("<|im_start|>assistant\n");
        }
      }
      case LLAMA3 -> {
        for (Message m : messages) {
          sb.append("<|start_header_id|>").append(m.role()).append("<|end_header_id|>\n\n");
          sb.append(m.content().strip()).append("<|eot_id|>");
        }
        if (addGenerationPrompt) {
          sb.append("<|start_header_id|>assistant<|end_header_id|>\n\n");
        }
      }
      case LLAMA2, MISTRAL -> renderInst(messages, sb, this == LLAMA2);
      case GEMMA -> {
        String system = leadingSystem(messages);
        boolean first = true;
        for (Message m : skipSystem(messages)) {
          String role = m.role().equals("assistant") ? "model" : m.role();
          sb.append("<start_of_turn>").append(role).append('\n');
          if (first && system != null) {
            sb.append(system).append("\n\n");
          }
          first = false;
          sb.append(m.content().strip()).append("<end_of_turn>\n");
        }
        if (addGenerationPrompt) {
          sb.append("<start_of_turn>model\n");
        }
      }
      case PHI3 -> {
        for (Message m : messages) {
          sb.append("<|").append(m.role()).append("|>\n").append(m.content()).append("<|end|>\n");
        }
        if (addGenerationPrompt) {
          sb.append("<|assistant|>\n");
        }
      }
      case ZEPHYR -> {
        for (Message m : messages) {
          sb.append("<|").append(m.role()).append("|>\n").append(m.content()).append("</s>\n");
        }
        if (addGenerationPrompt) {
          sb.append("<|assistant|>\n");
        }
      }
      default -> throw new IllegalStateException("unhandled template " + this);
    }
    return sb.toString();
  }

  /**
   * Llama 2 ({@code <<SYS>>} block in the first user turn) and Mistral (system text prepended to
   * the first user turn): {@code [INST] user [/INST] answer</s><s>[INST] ...}.
   */
  private static void renderInst(List<Message> messages, StringBuilder sb, boolean sysBlock) {
    String system = leadingSystem(messages);
    boolean first = true;
    for (Message m : skipSystem(messages)) {
      if (m.role().equals("assistant")) {
        sb.append(' ').append(m.content().strip()).append("</s>");
        continue;
      }
      if (!first) {
        sb.append("<s>");
      }
      sb.append("[INST] ");
      if (first && system != null) {
        sb.append(sysBlock ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" : system + "\n\n");
      }
      first = false;
      sb.append(m.content().strip()).append(" [/INST]");
    }
  }

  private static String leadingSystem(List<Message> messages) {
    return !messages.isEmpty() && messages.getFirst().role().equals("system")
        ? messages.getFirst().content().strip()
        : null;
  }

  private static List<Message> skipSystem(List<Message> messages) {
    return leadingSystem(messages) != null ? messages.subList(1, messages.size()) : messages;
  }
}
