package io.kvslim.chat;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.chat.ChatTemplate.Message;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.util.List;
import org.junit.jupiter.api.Test;

/** What kvslim adds around Jinjava: errors, strftime_now, the jinja2 source rules. */
class JinjaChatTemplateTest {
  private static final List<Message> HI = List.of(new Message("user", "Hi"));

  private static String render(String source) {
    return ChatTemplate.of(source, "<s>", "</s>").render(HI, true);
  }

  @Test
  void aTemplateThatCannotRunIsOneErrorSentenceNotAFallback() {
    for (String broken :
        List.of(
            "{% if %}x{% endif %}",
            "{{ messages[0].content.nosuch() }}", "{% for m in messages %}{{ m.content }}")) {
      assertThatThrownBy(() -> render(broken))
          .as(broken)
          .isInstanceOfSatisfying(
              ChatTemplateException.class, e -> assertThat(e.rejectsMessages()).isFalse())
          .hasMessageStartingWith("the model's chat template failed to render (line 1): ")
          .hasMessageNotContaining("\n");
    }
  }

  @Test
  void anUnknownFilterIsAnErrorAsInJinja2() {
    assertThatThrownBy(() -> render("{{ messages | nosuchfilter }}"))
        .isInstanceOf(ChatTemplateException.class)
        .hasMessage(
            "the model's chat template failed to render: it uses the filter 'nosuchfilter', which"
                + " Jinjava does not have");
  }

  @Test
  void probeReportsABrokenTemplateButNotOneThatRejectsTheMessages() {
    assertThat(ChatTemplate.of("{% if %}", "<s>", "</s>").probe())
        .startsWith("the model's chat template failed to render");
    assertThat(ChatTemplate.of("{{ raise_exception('no users') }}", "<s>", "</s>").probe())
        .isNull();
    assertThat(ChatTemplate.of("{{ bos_token }}", "<s>", "</s>").probe()).isNull();
  }

  @Test
  void raiseExceptionKeepsTheTemplatesFirstSentence() {
    assertThatThrownBy(
            () -> render("{{ raise_exception('first') }}{{ raise_exception('second') }}"))
        .isInstanceOfSatisfying(
            ChatTemplateException.class, e -> assertThat(e.rejectsMessages()).isTrue())
        .hasMessage("the model's chat template rejects these messages: first");
    // the next render on the same thread is not affected
    assertThat(render("{{ messages[0].content }}")).isEqualTo("Hi");
  }

  @Test
  void strftimeUsesPythonDirectivesInTheCLocale() {
    ZonedDateTime t = ZonedDateTime.of(2024, 7, 26, 9, 5, 3, 0, ZoneOffset.UTC);
    // Llama 3.1's template: strftime_now("%d %b %Y"), "26 Jul 2024" when no date is given
    assertThat(JinjaChatTemplate.strftime(t, "%d %b %Y")).isEqualTo("26 Jul 2024");
    assertThat(JinjaChatTemplate.strftime(t, "%A %B %H:%M:%S %y %j %% %q"))
        .isEqualTo("Friday July 09:05:03 24 208 % %q");
    assertThat(render("{{ strftime_now('%Y') }}")).hasSize(4).containsOnlyDigits();
  }

  @Test
  void theSourceIsReadAsJinja2ReadsIt() {
    assertThat(JinjaChatTemplate.jinja2Source("a\r\nb\n")).isEqualTo("a\nb");
    assertThat(JinjaChatTemplate.jinja2Source("a\n\n")).isEqualTo("a\n");
    // a line break the template prints itself at the end stays
    assertThat(render("{{ messages[0].content }}{{ '\\n' }}\n")).isEqualTo("Hi\n");
  }

  @Test
  void oneTemplateRendersOnManyThreadsAtOnce() throws Exception {
    ChatTemplate t =
        ChatTemplate.of(
            "{% for m in messages %}{% if m.content == 'bad' %}{{ raise_exception('bad ' +"
                + " m.role) }}{% endif %}<{{ m.role }}>{{ m.content.strip() }}{% endfor %}",
            "<s>", "</s>");
    try (var pool = java.util.concurrent.Executors.newFixedThreadPool(8)) {
      List<java.util.concurrent.Future<?>> runs = new java.util.ArrayList<>();
      for (int i = 0; i < 8; i++) {
        int n = i;
        runs.add(
            pool.submit(
                () -> {
                  for (int k = 0; k < 200; k++) {
                    String text = " t" + n + "k" + k + " ";
                    assertThat(t.render(List.of(new Message("user", text)), true))
                        .isEqualTo("<user>" + text.strip());
                    if (k % 10 == 0) {
                      assertThatThrownBy(() -> t.render(List.of(new Message("u" + n, "bad")), true))
                          .hasMessageEndingWith(": bad u" + n);
                    }
                  }
                  return null;
                }));
      }
      for (var r : runs) {
        r.get();
      }
    }
  }

  @Test
  void aMissingBosTokenIsUndefined() {
    assertThat(
            ChatTemplate.of("[{{ bos_token }}]{{ bos_token is defined }}", null, "</s>")
                .render(HI, true))
        .isEqualTo("[]False");
  }
}
