package io.kvslim.bench;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Source files for the code tasks: by default a few of kvslim's own Java sources shipped in the jar
 * under {@code bench/code/}, joined into one text. Lines worth predicting are those with some code
 * on them (not blank, not a comment, not an import).
 */
public final class CodeCorpus {
  /** A line of the corpus and the character offset where it starts. */
  public record Line(String text, int start) {}

  /** Characters of context kept per requested token: enough for any tokenizer on code. */
  static final int CHARS_PER_TOKEN = 8;

  private final String text;
  private final List<Line> lines = new ArrayList<>();

  public CodeCorpus(String text) {
    this.text = text;
    int start = 0;
    while (start < text.length()) {
      int nl = text.indexOf('\n', start);
      int end = nl < 0 ? text.length() : nl;
      String line = text.substring(start, end);
      if (isCode(line)) {
        lines.add(new Line(line, start));
      }
      start = end + 1;
    }
  }

  /** The built-in corpus from the jar's resources. */
  public static CodeCorpus builtIn() {
    return new CodeCorpus(readResourceTexts("bench/code/"));
  }

  /** Joins the resources listed in {@code dir + "index.txt"}, separated by blank lines. */
  static String readResourceTexts(String dir) {
    StringBuilder sb = new StringBuilder();
    for (String name : readResource(dir + "index.txt").split("\n")) {
      if (!name.isBlank()) {
        sb.append(readResource(dir + name.strip())).append("\n\n");
      }
    }
    return sb.toString();
  }

  static String readResource(String path) {
    try (InputStream in = CodeCorpus.class.getClassLoader().getResourceAsStream(path)) {
      if (in == null) {
        throw new IllegalStateException("missing resource " + path);
      }
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public String text() {
    return text;
  }

  private static boolean isCode(String line) {
    String s = line.strip();
    return s.length() >= 12
        && s.length() <= 100
        && !s.startsWith("//")
        && !s.startsWith("*")
        && !s.startsWith("/*")
        && !s.startsWith("import ")
        && !s.startsWith("package ");
  }

  /** A line with at least {@code CHARS_PER_TOKEN × length} characters of text before it. */
  public Line pickLine(SplittableRandom r, int length) {
    long minStart = (long) CHARS_PER_TOKEN * length;
    List<Line> ok = new ArrayList<>();
    for (Line l : lines) {
      if (l.start() >= minStart) {
        ok.add(l);
      }
    }
    if (ok.isEmpty()) {
      throw new TaskTooShortException(
          "the code corpus ("
              + text.length()
              + " characters) is too short for code prompts of "
              + length
              + " tokens");
    }
    return ok.get(r.nextInt(ok.size()));
  }

  /** The text before a line (its newline included), enough for {@code length} tokens. */
  public String contextBefore(Line line, int length) {
    return text.substring(Math.max(0, line.start() - CHARS_PER_TOKEN * length), line.start());
  }
}
