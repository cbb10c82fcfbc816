package io.kvslim.chat;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.chat.ChatTemplate.Message;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The marker-based families: fallback prompts and end-of-turn recognition. */
class ChatFamilyTest {
  private static final List<Message> CHAT =
      List.of(
          new Message("system", "Be brief."),
          new Message("user", "Hi"),
          new Message("assistant", "Hello!"),
          new Message("user", "Bye"));

  @Test
  void recognizesTheCommonFamiliesByTheirMarkers() {
    assertThat(ChatFamily.recognize(null)).isEqualTo(ChatFamily.CHATML);
    assertThat(ChatFamily.recognize("{% for m in messages %}<|im_start|>{{ m.role }}"))
        .isEqualTo(ChatFamily.CHATML);
    assertThat(ChatFamily.recognize("<|start_header_id|>{{ m.role }}<|end_header_id|>"))
        .isEqualTo(ChatFamily.LLAMA3);
    assertThat(ChatFamily.recognize("[INST] <<SYS>>\\n{{ system }}")).isEqualTo(ChatFamily.LLAMA2);
    assertThat(ChatFamily.recognize("{{ '[INST] ' + m.content + ' [/INST]' }}"))
        .isEqualTo(ChatFamily.MISTRAL);
    assertThat(ChatFamily.recognize("<start_of_turn>user")).isEqualTo(ChatFamily.GEMMA);
    assertThat(ChatFamily.recognize("<|user|>{{ c }}<|end|>")).isEqualTo(ChatFamily.PHI3);
    assertThat(ChatFamily.recognize("<|user|>{{ c }}</s>")).isEqualTo(ChatFamily.ZEPHYR);
    assertThat(ChatFamily.recognize("{{ unknown }}")).isEqualTo(ChatFamily.CHATML);
  }

  @Test
  void chatMlRendersEveryTurnAndOpensTheAssistants() {
    assertThat(ChatFamily.CHATML.render(CHAT, true))
        .isEqualTo(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                + "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
                + "<|im_start|>assistant\n");
  }

  @Test
  void llama3UsesHeadersAndEndOfTurn() {
    assertThat(ChatFamily.LLAMA3.render(List.of(new Message("user", "Hi")), true))
        .isEqualTo(
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\n");
  }

  @Test
  void llama2PutsTheSystemPromptInTheFirstInstruction() {
    assertThat(ChatFamily.LLAMA2.render(CHAT, true))
        .isEqualTo(
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello!</s><s>[INST] Bye [/INST]");
    assertThat(ChatFamily.MISTRAL.render(CHAT, true))
        .isEqualTo("[INST] Be brief.\n\nHi [/INST] Hello!</s><s>[INST] Bye [/INST]");
  }

  @Test
  void gemmaCallsTheAssistantModel() {
    assertThat(ChatFamily.GEMMA.render(List.of(new Message("user", "Hi")), true))
        .isEqualTo("<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  }

  @Test
  void withoutGenerationPromptNoAssistantHeaderIsOpened() {
    assertThat(ChatFamily.CHATML.render(List.of(new Message("user", "Hi")), false))
        .isEqualTo("<|im_start|>user\nHi<|im_end|>\n");
  }

  @Test
  void aModelWithoutTemplateGetsChatMlAndOneWithATemplateRunsIt() {
    assertThat(ChatTemplate.of(null, "<s>", "</s>").describe()).isEqualTo("chatml");
    assertThat(ChatTemplate.of("  ", "<s>", "</s>").fromModel()).isFalse();
    ChatTemplate jinja = ChatTemplate.of("{{ messages[0].content }}!", "<s>", "</s>");
    assertThat(jinja.fromModel()).isTrue();
    assertThat(jinja.render(List.of(new Message("user", "Hi")), true)).isEqualTo("Hi!");
  }
}
