package io.kvslim.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.gguf.GgufFile;
import io.kvslim.tokenizer.Tokenizer;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class RetrievalTasksTest {
  static Tokenizer tokenizer;

  @BeforeAll
  static void load() {
    try (GgufFile f = GgufFile.open(SharedData.model("llama-spm-f32.gguf"))) {
      tokenizer = Tokenizer.fromGguf(f);
    }
  }

  private static RetrievalTasks tasks(long seed) {
    return new RetrievalTasks(tokenizer, new BenchConfig.Niah(), CodeCorpus.builtIn(), seed);
  }

  @Test
  void casesAreDeterministicForASeed() {
    for (String task :
        List.of("passkey", "niah", "ruler:mk", "ruler:mv", "ruler:vt", "ruler:cwe", "code")) {
      TaskCase a = tasks(7).cases(task, 300, 0.3, 2).get(1);
      TaskCase b = tasks(7).cases(task, 300, 0.3, 2).get(1);
      TaskCase c = tasks(8).cases(task, 300, 0.3, 2).get(1);
      assertThat(a.prompt()).as(task).isEqualTo(b.prompt());
      assertThat(a.answer()).as(task).isEqualTo(b.answer());
      assertThat(Arrays.equals(a.prompt(), c.prompt()) && a.answer().equals(c.answer()))
          .as(task + " with another seed")
          .isFalse();
    }
  }

  @Test
  void needleSitsAtTheRequestedDepthToTheToken() {
    PromptAssembler pa = new PromptAssembler(tokenizer);
    for (double depth : new double[] {0, 0.25, 0.5, 1}) {
      for (String task : List.of("passkey", "niah")) {
        TaskCase c = tasks(3).cases(task, 400, depth, 1).get(0);
        assertThat(c.prompt()).hasSize(400);
        assertThat(c.prompt()[0]).isEqualTo(tokenizer.bos());
        int head =
            pa.head(
                    task.equals("passkey")
                        ? RetrievalTasks.PASSKEY_INTRO
                        : new BenchConfig.Niah().intro)
                .length;
        String question =
            task.equals("passkey")
                ? "What is the pass key? The pass key is"
                : new BenchConfig.Niah().question.replace("{key}", keyOf(c));
        int tail = pa.piece(question).length;
        int haystack = 400 - head - tail - c.needleLengths()[0];
        assertThat(c.needleStarts()[0])
            .as(task + " at depth " + depth)
            .isEqualTo(head + (int) Math.round(depth * haystack));
        String needle =
            tokenizer.decode(
                Arrays.copyOfRange(
                    c.prompt(), c.needleStarts()[0], c.needleStarts()[0] + c.needleLengths()[0]));
        assertThat(needle).contains(c.answer());
      }
    }
  }

  private static String keyOf(TaskCase c) {
    // the niah needle reads "The secret number of the KEY is VALUE."
    String needle =
        tokenizer.decode(
            Arrays.copyOfRange(
                c.prompt(), c.needleStarts()[0], c.needleStarts()[0] + c.needleLengths()[0]));
    int of = needle.indexOf("of the ") + 7;
    return needle.substring(of, needle.indexOf(' ', of));
  }

  @Test
  void theAnswerAppearsOnlyInsideTheNeedles() {
    for (String task : List.of("passkey", "niah", "ruler:mk", "ruler:mv", "ruler:vt")) {
      for (int s = 0; s < 3; s++) {
        TaskCase c = tasks(11).cases(task, 350, 0.6, 3).get(s);
        int[] p = c.prompt().clone();
        for (int i = 0; i < c.needleStarts().length; i++) {
          Arrays.fill(
              p, c.needleStarts()[i], c.needleStarts()[i] + c.needleLengths()[i], tokenizer.bos());
        }
        String outside = tokenizer.decode(p);
        for (String item : c.answer().split(", ")) {
          assertThat(outside).as(task + " leaks " + item).doesNotContain(item);
        }
      }
    }
    TaskCase passkey = tasks(5).cases("passkey", 256, 0.5, 1).get(0);
    String text = tokenizer.decode(passkey.prompt());
    assertThat(text.split(passkey.answer(), -1)).hasSize(3); // "The pass key is K. ... K is ..."
  }

  @Test
  void tooShortALengthIsReportedNotTruncated() {
    assertThatThrownBy(() -> tasks(1).cases("ruler:vt", 40, 0.5, 1))
        .isInstanceOf(TaskTooShortException.class)
        .hasMessageContaining("too short");
  }

  @Test
  void codeCasesEndAtALineStartAndExpectThatLine() {
    TaskCase c = tasks(2).cases("code", 256, 0, 1).get(0);
    assertThat(c.prompt()).hasSize(256);
    assertThat(tokenizer.decode(c.prompt())).endsWith("\n");
    assertThat(CodeCorpus.builtIn().text()).contains(c.answer());
  }
}
