package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.server.ChatTemplate.Message;
import java.util.List;
import org.junit.jupiter.api.Test;

class ChatTemplateTest {
  private static final List<Message> CHAT =
      List.of(
          new Message("system", "Be brief."),
          new Message("user", "Hi"),
          new Message("assistant", "Hello!"),
          new Message("user", "Bye"));

  @Test
  void recognizesTheCommonFamiliesByTheirMarkers() {
    assertThat(ChatTemplate.recognize(null)).isEqualTo(ChatTemplate.CHATML);
    assertThat(ChatTemplate.recognize("{% for m in messages %}<|im_start|>{{ m.role }}"))
        .isEqualTo(ChatTemplate.CHATML);
    assertThat(ChatTemplate.recognize("<|start_header_id|>{{ m.role }}<|end_header_id|>"))
        .isEqualTo(ChatTemplate.LLAMA3);
    assertThat(ChatTemplate.recognize("[INST] <<SYS>>\\n{{ system }}"))
        .isEqualTo(ChatTemplate.LLAMA2);
    assertThat(ChatTemplate.recognize("{{ '[INST] ' + m.content + ' [/INST]' }}"))
        .isEqualTo(ChatTemplate.MISTRAL);
    assertThat(ChatTemplate.recognize("<start_of_turn>user")).isEqualTo(ChatTemplate.GEMMA);
    assertThat(ChatTemplate.recognize("<|user|>{{ c }}<|end|>")).isEqualTo(ChatTemplate.PHI3);
    assertThat(ChatTemplate.recognize("<|user|>{{ c }}</s>")).isEqualTo(ChatTemplate.ZEPHYR);
    assertThat(ChatTemplate.recognize("{{ unknown }}")).isEqualTo(ChatTemplate.CHATML);
  }

  @Test
  void chatMlRendersEveryTurnAndOpensTheAssistants() {
    assertThat(ChatTemplate.CHATML.render(CHAT))
        .isEqualTo(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                + "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
                + "<|im_start|>assistant\n");
  }

  @Test
  void llama3UsesHeadersAndEndOfTurn() {
    assertThat(ChatTemplate.LLAMA3.render(List.of(new Message("user", "Hi"))))
        .isEqualTo(
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\n");
  }

  @Test
  void llama2PutsTheSystemPromptInTheFirstInstruction() {
    assertThat(ChatTemplate.LLAMA2.render(CHAT))
        .isEqualTo(
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello!</s><s>[INST] Bye [/INST]");
    assertThat(ChatTemplate.MISTRAL.render(CHAT))
        .isEqualTo("[INST] Be brief.\n\nHi [/INST] Hello!</s><s>[INST] Bye [/INST]");
  }

  @Test
  void gemmaCallsTheAssistantModel() {
    assertThat(ChatTemplate.GEMMA.render(List.of(new Message("user", "Hi"))))
        .isEqualTo("<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  }
}
