package io.kvslim.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.SharedData;
import io.kvslim.gguf.GgufFile;
import io.kvslim.tokenizer.Tokenizer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The pycode tasks on the installed Python standard library (skipped with a message without it):
 * prompts of whole lines with each needle between two top-level statements at the requested depth,
 * checked token by token here and with Python's own parser (the code around the needles parses to
 * the same statements, and the needles plus the completed assert run).
 */
class CodeRetrievalTasksTest {
  static final Path BUNDLED = Path.of("models/pycoder-6m-f16.gguf");

  static Tokenizer pycoder;

  @BeforeAll
  static void load() {
    try (GgufFile f = GgufFile.open(BUNDLED)) {
      pycoder = Tokenizer.fromGguf(f);
    }
  }

  private static CodeRetrievalTasks tasks(Tokenizer t) {
    return new CodeRetrievalTasks(t, StdlibSupport.haystack());
  }

  /** The token-level checks of one case; adds it to {@code forPython}. */
  private static void check(
      Tokenizer tok, CodeRetrievalTasks.Built b, int length, double depth, List<String> forPython)
      throws Exception {
    TaskCase c = b.task();
    String what = c.task() + " L=" + length + " d=" + depth + " " + c.setting().get("source");
    int[] p = c.prompt();
    assertThat(p.length).as(what).isLessThanOrEqualTo(length);
    int head = tok.addsBos() && tok.bos() >= 0 ? 1 : 0;
    if (head == 1) {
      assertThat(p[0]).as(what).isEqualTo(tok.bos());
    }
    String text = b.text();
    assertThat(tok.decode(Arrays.copyOfRange(p, head, p.length))).as(what).isEqualTo(text);
    int n = c.needleStarts().length;
    int needleTokens = 0;
    PythonHaystack.Source src = b.window().source();
    for (int i = 0; i < n; i++) {
      int s = c.needleStarts()[i];
      int e = s + c.needleLengths()[i];
      String needle = tok.decode(Arrays.copyOfRange(p, s, e));
      String before = s == head ? "" : tok.decode(Arrays.copyOfRange(p, head, s));
      // whole lines: the needle starts a line and ends one, and the next line is at column 0
      assertThat(needle).as(what).endsWith("\n").doesNotStartWith(" ");
      assertThat(before.isEmpty() || before.endsWith("\n")).as(what + " needle " + i).isTrue();
      assertThat(text.substring(before.length())).startsWith(needle);
      String next = text.substring(before.length() + needle.length());
      assertThat(next).as(what).isNotEmpty();
      assertThat(Character.isWhitespace(next.charAt(0))).as(what).isFalse();
      // before a top-level statement of the module, never inside a string, bracket or continuation
      int line = b.needleLines()[i];
      assertThat(src.safe()[line]).as(what).isTrue();
      assertThat(src.clean()[line]).as(what).isTrue();
      needleTokens += c.needleLengths()[i];
    }
    // the question ends the prompt
    String question = text.substring(text.lastIndexOf('\n') + 1);
    assertThat(question).startsWith("assert ");
    assertThat(tok.decode(Arrays.copyOfRange(p, b.tailStart(), p.length))).isEqualTo(question);
    // the asked needle at the requested depth of the code tokens, counted in the prompt
    int code = b.tailStart() - head - needleTokens;
    int codeBefore = c.needleStarts()[0] - head;
    for (int i = 1; i < n; i++) {
      if (c.needleStarts()[i] < c.needleStarts()[0]) {
        codeBefore -= c.needleLengths()[i];
      }
    }
    int tol = Math.max(4, code / 50) + 2;
    assertThat(Math.abs(codeBefore - depth * code)).as(what).isLessThanOrEqualTo(tol);
    assertThat(p.length).as(what + " fills its length").isGreaterThanOrEqualTo(length - tol - 4);
    // without the needles and the question, the text is the module's lines first..end
    StringBuilder rest = new StringBuilder(text.substring(0, text.length() - question.length()));
    Integer[] byStart = new Integer[n];
    for (int i = 0; i < n; i++) {
      byStart[i] = i;
    }
    Arrays.sort(byStart, (x, y) -> c.needleStarts()[y] - c.needleStarts()[x]); // last first
    for (int i : byStart) {
      int s = tok.decode(Arrays.copyOfRange(p, head, c.needleStarts()[i])).length();
      int e =
          tok.decode(Arrays.copyOfRange(p, head, c.needleStarts()[i] + c.needleLengths()[i]))
              .length();
      rest.delete(s, e);
    }
    StringBuilder window = new StringBuilder();
    StringBuilder prefix = new StringBuilder();
    StringBuilder original = new StringBuilder();
    for (int l = 0; l < b.window().end(); l++) {
      String s = src.lines().get(l) + "\n";
      (l < b.window().first() ? prefix : window).append(s);
      original.append(s);
    }
    assertThat(rest.toString()).as(what).isEqualTo(window.toString());
    // the answer occurs in the prompt only inside the needles
    int[] masked = p.clone();
    for (int i = 0; i < n; i++) {
      Arrays.fill(masked, c.needleStarts()[i], c.needleStarts()[i] + c.needleLengths()[i], 0);
    }
    assertThat(tok.decode(masked)).as(what).doesNotContain(c.answer());
    List<String> needles = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      needles.add(
          tok.decode(
              Arrays.copyOfRange(
                  p, c.needleStarts()[i], c.needleStarts()[i] + c.needleLengths()[i])));
    }
    Map<String, Object> j = new LinkedHashMap<>();
    j.put("id", what);
    j.put("prefix", prefix.toString());
    j.put("text", text);
    j.put("suffix", c.answer() + (c.task().equals("pycode:arg") ? ",)" : ""));
    j.put("original", original.toString());
    j.put("needles", needles);
    forPython.add(new ObjectMapper().writeValueAsString(j));
  }

  @Test
  void needlesSitAtTheirDepthInWholeLinesBetweenTopLevelStatements() throws Exception {
    List<String> forPython = new ArrayList<>();
    CodeRetrievalTasks t = tasks(pycoder);
    for (String task : CodeRetrievalTasks.TASKS) {
      for (int length : new int[] {256, 900}) {
        for (double depth : new double[] {0, 0.25, 0.5, 0.75, 1}) {
          SplittableRandom r = new SplittableRandom(31L * length + (long) (depth * 100));
          check(pycoder, t.build(task, length, depth, 0, r), length, depth, forPython);
        }
      }
    }
    if (SharedData.present()) {
      // a byte-level BPE tokenizer, whose pieces join a newline with the next line's spaces
      try (GgufFile f = GgufFile.open(SharedData.model("qwen2-bpe-f32.gguf"))) {
        Tokenizer bpe = Tokenizer.fromGguf(f);
        CodeRetrievalTasks tb = tasks(bpe);
        for (String task : CodeRetrievalTasks.TASKS) {
          for (double depth : new double[] {0, 0.5, 1}) {
            check(
                bpe, tb.build(task, 300, depth, 0, new SplittableRandom(5)), 300, depth, forPython);
          }
        }
      }
    }
    JsonNode errors = StdlibSupport.python(AST_CHECK, List.of(), String.join("\n", forPython));
    assertThat(errors.size()).as(errors.toString()).isZero();
  }

  /**
   * For each case: the module's lines before the window, the prompt's text and the answer parse;
   * without the needles and the assert, they are the same statements as the module cut at the
   * window's end (docstring included); each needle is a top-level statement; and the needles with
   * the completed assert run without an AssertionError.
   */
  static final String AST_CHECK =
      """
      import ast, json, sys
      errors = []
      for line in sys.stdin:
          c = json.loads(line)
          cid = c["id"]
          try:
              tree = ast.parse(c["prefix"] + c["text"] + c["suffix"] + "\\n")
              orig = ast.parse(c["original"])
          except SyntaxError as e:
              errors.append(cid + ": " + str(e))
              continue
          last = tree.body[-1]
          if not isinstance(last, ast.Assert):
              errors.append(cid + ": the prompt does not end with an assert")
              continue
          rest = [ast.dump(s) for s in tree.body[:-1]]
          mine = []
          for n in c["needles"]:
              for s in ast.parse(n).body:
                  d = ast.dump(s)
                  if d not in rest:
                      errors.append(cid + ": needle is not a top-level statement: " + n)
                  else:
                      rest.remove(d)
          if rest != [ast.dump(s) for s in orig.body]:
              errors.append(cid + ": the code around the needles parses differently")
          if ast.get_docstring(tree) != ast.get_docstring(orig):
              errors.append(cid + ": the module docstring changed")
          dumps = [ast.dump(s) for n in c["needles"] for s in ast.parse(n).body]
          run = ast.Module(body=[s for s in tree.body[:-1] if ast.dump(s) in dumps] + [last],
                           type_ignores=[])
          try:
              exec(compile(run, "<needles>", "exec"), {})
          except AssertionError:
              errors.append(cid + ": the answer is not what Python computes")
      print(json.dumps(errors))
      """;

  @Test
  void casesAreDeterministicPerSeedAndGoThroughRetrievalTasks() {
    StdlibSupport.haystack();
    for (String task : CodeRetrievalTasks.TASKS) {
      TaskCase a = tasks(7).cases(task, 300, 0.3, 2).get(1);
      TaskCase b = tasks(7).cases(task, 300, 0.3, 2).get(1);
      TaskCase c = tasks(8).cases(task, 300, 0.3, 2).get(1);
      assertThat(a.prompt()).as(task).isEqualTo(b.prompt());
      assertThat(a.answer()).as(task).isEqualTo(b.answer()).matches("[1-9][0-9]{4}");
      assertThat(a.scoring()).isEqualTo(Metrics.Scoring.INTEGER);
      assertThat(Arrays.equals(a.prompt(), c.prompt())).as(task + " with another seed").isFalse();
      assertThat(a.setting())
          .containsEntry("haystack", StdlibSupport.haystack().dir().toString())
          .containsKey("source");
      assertThat(RetrievalTasks.hasDepth(task)).isTrue();
    }
    assertThatThrownBy(() -> tasks(1).cases("pycode:vt", 64, 0.5, 1))
        .isInstanceOf(TaskTooShortException.class)
        .hasMessageContaining("too short for task 'pycode:vt'");
  }

  private static RetrievalTasks tasks(long seed) {
    return new RetrievalTasks(pycoder, new BenchConfig.Niah(), CodeCorpus.builtIn(), seed);
  }
}
