package io.kvslim.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PythonHaystackTest {
  /** Valid Python (ast.parse takes it) with the traps the scan must see. */
  static final String TRAPS =
      """
      \"""Module docstring.
      X = 1
      \"""
      from __future__ import annotations
      import os
      s = '''a
      B = 2
      '''
      t = ("x",
      C)
      u = 1 + \\
      D
      if u:
          pass
      else:
          pass
      @decorator
      def f():
          return "#" + 'it\\'s' + r"\\"" # don't \""" (
      # a comment at column 0
      g = f"{u}" ; h = b'\\\\'
      "plain string statement"
      try:
          pass
      except ValueError:
          pass
      finally:
          pass
      v = [
      1,
      ]
      w = 'one \\
      two'
      elsewhere = 1
      class K:
          x = \"""
      y = 3
      \"""
      z = {'a': "}"}
      """;

  @TempDir Path tmp;

  static int[] safe(String text) {
    PythonHaystack.Source s = PythonHaystack.scan("t.py", text);
    assertThat(s).as("scanned").isNotNull();
    return s.safeLines();
  }

  @Test
  void needlesGoOnlyBeforeTopLevelStatements() {
    // ast.parse starts top-level statements on lines (0-based) 0, 3, 4, 5, 8, 10, 12, 16, 20,
    // 21, 22, 28, 31, 33, 34, 38; 0 and 21 start with a string (the docstring must stay one), 3
    // is a __future__ import; 39 is the end
    assertThat(safe(TRAPS)).containsExactly(4, 5, 8, 10, 12, 16, 20, 22, 28, 31, 33, 34, 38, 39);
    PythonHaystack.Source s = PythonHaystack.scan("t.py", TRAPS);
    // inside the docstring, a triple-quoted string, the bracket, the continuation, the one-line
    // string continued with a backslash, the class's triple-quoted string
    for (int inside : new int[] {1, 2, 6, 7, 9, 11, 32, 36, 37}) {
      assertThat(s.clean()[inside]).as("line " + inside).isFalse();
    }
    assertThat(s.lines()).hasSize(39);
  }

  @Test
  void clausesDecoratorsAndIndentedLinesAreNotStatementStarts() {
    assertThat(safe("if a:\n    b = 1\nelif c:\n    pass\nelse:\n    pass\nx = 1\n"))
        .containsExactly(0, 6, 7);
    assertThat(safe("@dec(\n    1)\n@other\ndef f():\n    pass\n")).containsExactly(0, 5);
    assertThat(safe("try:\n    a()\nexcept* E:\n    pass\nelsewhere = 2\n"))
        .containsExactly(0, 4, 5);
    assertThat(safe("def f():\n    x = 1\n\n    return x\n\n\ny = 2")).containsExactly(0, 6, 7);
    // a form feed or a tab before code is indentation
    assertThat(safe("a = 1\n\fb = 2\n\tc = 3\n")).containsExactly(0, 3);
  }

  @Test
  void stringsHideQuotesBracketsAndHashes() {
    assertThat(safe("a = '#('\nb = \"'\"\nc = r'\\\\'\nd = 1\n")).containsExactly(0, 1, 2, 3, 4);
    assertThat(safe("a = '\"\"\"'\nb = 1\n")).containsExactly(0, 1, 2);
    // Python 3.12 f-strings may reuse their quote inside a field; the pairs still balance
    assertThat(safe("a = f\"{d[\"k\"]}\"\nb = 1\n")).containsExactly(0, 1, 2);
    assertThat(safe("x = 1\r\ny = 2\r\n")).containsExactly(0, 1, 2);
  }

  @Test
  void filesTheScanCannotCloseAreRejected() {
    for (String bad :
        List.of(
            "a = '''open\n",
            "a = (1,\n",
            "a = 1)\n",
            "a = 'no end\nb = 1\n",
            "a = 1 \\ + 2\n",
            "a = 1 + \\\n")) {
      assertThat(PythonHaystack.scan("bad.py", bad)).as(bad).isNull();
    }
  }

  @Test
  void locateNamesTheNewestStandardLibraryOrSaysWhatIsMissing() throws IOException {
    assertThatThrownBy(() -> PythonHaystack.locate(tmp))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage(
            "the pycode tasks read the Python standard library's sources from "
                + tmp.resolve("python3.*")
                + "/ and none was found there (install python3, or leave the pycode tasks out)");
    assertThatThrownBy(() -> PythonHaystack.locate(tmp.resolve("absent")))
        .isInstanceOf(IllegalArgumentException.class);
    for (String d : List.of("python3.9", "python3.12", "python3.13", "python3")) {
      Files.createDirectories(tmp.resolve(d));
      if (!d.equals("python3.13")) {
        Files.writeString(tmp.resolve(d).resolve("os.py"), "x = 1\n");
      }
    }
    assertThat(PythonHaystack.locate(tmp)).isEqualTo(tmp.resolve("python3.12"));
    PythonHaystack h = new PythonHaystack(tmp.resolve("python3.12"));
    assertThat(h.size()).isEqualTo(1);
    assertThat(h.source(0).safeLines()).containsExactly(0, 1);
  }

  /**
   * The scan against Python's own parser on every top-level module of the installed standard
   * library: the lines where a needle may go are exactly the lines where ast.parse starts a
   * top-level statement, less those that start with a string or are a __future__ import.
   */
  @Test
  void scanAgreesWithPythonsParserOnTheStandardLibrary() throws Exception {
    PythonHaystack h = StdlibSupport.haystack();
    JsonNode oracle = StdlibSupport.python(ORACLE, List.of(h.dir().toString()), "");
    int compared = 0;
    List<String> mismatches = new ArrayList<>();
    for (int i = 0; i < h.size(); i++) {
      PythonHaystack.Source s = h.source(i);
      JsonNode expected = s == null ? null : oracle.get(s.name());
      if (expected == null) {
        continue;
      }
      int[] want = new int[expected.size() + 1];
      for (int k = 0; k < expected.size(); k++) {
        want[k] = expected.get(k).asInt();
      }
      want[expected.size()] = s.lines().size();
      if (!Arrays.equals(want, s.safeLines())) {
        mismatches.add(s.name());
      }
      compared++;
    }
    assertThat(mismatches).isEmpty();
    assertThat(compared).as("modules Python parses that the scan took").isEqualTo(oracle.size());
    assertThat(compared).isGreaterThan(100);
  }

  static final String ORACLE =
      """
      import ast, json, os, re, sys
      d = sys.argv[1]
      out = {}
      for name in sorted(os.listdir(d)):
          p = os.path.join(d, name)
          if not name.endswith(".py") or not os.path.isfile(p):
              continue
          try:
              with open(p, "rb") as f:
                  src = f.read().decode("utf-8")
              tree = ast.parse(src)
          except (SyntaxError, UnicodeDecodeError, ValueError):
              continue
          lines = src.replace("\\r\\n", "\\n").replace("\\r", "\\n").split("\\n")
          starts = set()
          for node in tree.body:
              decorators = [x.lineno for x in getattr(node, "decorator_list", [])]
              starts.add(min([node.lineno] + decorators) - 1)
          out[name] = sorted(
              i for i in starts
              if not re.match(r"[rRbBuUfF]{0,2}['\\"]", lines[i])
              and not re.match(r"from\\s+__future__\\b", lines[i]))
      print(json.dumps(out))
      """;
}
