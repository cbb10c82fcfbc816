package io.kvslim.api;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.PromptSegments;
import io.kvslim.kv.cache.ManagedKvCache;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A chat rendering labels its tokens by role (system and the last user message: priority; earlier
 * turns: not), and the labels reach the KV policy: a {@code lookm} session keeps priority tokens
 * before the others.
 */
class ChatSegmentsTest {
  static final Path MODEL = Path.of("models/pycoder-6m-f16.gguf");
  private static KvslimModel model;

  @BeforeAll
  static void load() {
    model = KvslimModel.load(MODEL);
  }

  @AfterAll
  static void close() {
    model.close();
  }

  static final String DOCUMENT =
      "def parse(line):\n    key, _, value = line.partition('=')\n    return key.strip(),"
          + " value.strip()\n\n\ndef load(path):\n    with open(path) as f:\n        return"
          + " dict(parse(l) for l in f if '=' in l)\n";

  static List<ChatMessage> conversation() {
    return List.of(
        new ChatMessage("system", "Answer with Python code only."),
        new ChatMessage("user", "Here is a module:\n" + DOCUMENT),
        new ChatMessage("assistant", "Noted. It reads key=value files."),
        new ChatMessage("user", "Write a function that saves such a dict back to a file."));
  }

  @Test
  void theRenderingLabelsEachMessagesTokensByRole() {
    ChatPrompt p = model.chatPrompt(conversation());
    boolean[] priority = p.priority();
    assertThat(priority).hasSize(p.tokens().length);
    // the prefix rendering up to each message bounds its tokens
    int system = model.chatPrompt(conversation().subList(0, 1)).tokens().length;
    int firstTurns = model.chatPrompt(conversation().subList(0, 3)).tokens().length;
    assertThat(priority[0]).as("the system message").isTrue();
    assertThat(priority[system / 2]).isTrue();
    assertThat(priority[p.tokens().length - 1]).as("the generation prompt").isTrue();
    int document = 0;
    for (boolean b : priority) {
      document += b ? 0 : 1;
    }
    assertThat(document).as("the document and the reply are not priority").isPositive();
    assertThat(priority[(system + firstTurns) / 2]).isFalse();
    // one user message: everything is priority
    ChatPrompt single = model.chatPrompt(List.of(new ChatMessage("user", DOCUMENT)));
    for (boolean b : single.priority()) {
      assertThat(b).isTrue();
    }
  }

  @Test
  void theLabelsReachTheLookmPolicyThroughTheSession() {
    ChatPrompt p = model.chatPrompt(conversation());
    int budget = 16;
    try (KvslimSession s =
        model.newSession(KvConfig.parse("lookm:budget=" + budget + ",merge=none"), 2)) {
      s.generate(p, GenerateOptions.builder().greedy().maxTokens(1).build(), (token, text) -> true);
      ManagedKvCache cache = (ManagedKvCache) s.cache();
      PromptSegments seen = cache.promptSegments();
      assertThat(seen).isNotNull();
      for (int i = 0; i < p.tokens().length; i++) {
        assertThat(seen.isPriority(i)).isEqualTo(p.priority()[i]);
      }
      int recent = budget / 2;
      int n = p.tokens().length;
      int priorityBefore = 0;
      for (int i = 0; i < n - recent; i++) {
        priorityBefore += p.priority()[i] ? 1 : 0;
      }
      assertThat(priorityBefore).isGreaterThanOrEqualTo(budget - recent);
      for (int l = 0; l < cache.layerCount(); l++) {
        for (int g = 0; g < cache.paged(l).kvHeads(); g++) {
          int[] kept = cache.paged(l).positions(g);
          for (int i = 0; i < budget - recent; i++) {
            assertThat(p.priority()[kept[i]])
                .as("layer %d head %d keeps token %d", l, g, kept[i])
                .isTrue();
          }
        }
      }
    }
  }
}
