package io.kvslim.bench;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Real Python code for the code-retrieval tasks: the top-level modules ({@code *.py}) of the Python
 * standard library installed on the machine, read at run time from {@code /usr/lib/python3.N/} (the
 * newest N). The bundled pycoder model was trained on other packages' code, so this code is unseen
 * by it.
 *
 * <p>Each file is split into lines and scanned the way Python's tokenizer tracks them: string
 * literals (single and triple quoted, any prefix, backslash escapes), comments, open brackets and
 * backslash continuations. A statement may be inserted before line i only when line i starts a
 * top-level statement: the scan is outside any string, bracket and continuation there, line i has
 * code at column 0, it is not a clause of the statement before ({@code else}, {@code elif}, {@code
 * except}, {@code finally}), not a string literal (a module docstring stays one), not a {@code from
 * __future__} import (those must come first) and does not follow a decorator. So a needle never
 * lands inside a docstring, an open bracket or a continued line, and never changes what the code
 * around it means. Files the scan cannot close (a string or bracket open at the end, a stray
 * backslash) and files that are not UTF-8 are not used.
 */
final class PythonHaystack {
  /** Where the system's Python installations live. */
  static final Path SYSTEM_ROOT = Path.of("/usr/lib");

  private static final Pattern CLAUSE = Pattern.compile("^(else|elif|except|finally)\\b");
  private static final Pattern STRING_START = Pattern.compile("^[rRbBuUfF]{0,2}['\"]");
  private static final Pattern FUTURE = Pattern.compile("^from\\s+__future__\\b");

  /**
   * One file split into lines (without their newlines).
   *
   * @param clean for line i (and {@code lines.size()}, the end): the scan is outside any string,
   *     bracket and continuation where the line starts
   * @param safe for line i (and the end): a top-level statement may be inserted before it
   */
  record Source(String name, List<String> lines, boolean[] clean, boolean[] safe) {
    /** The line indices (the end included) before which a statement may be inserted. */
    int[] safeLines() {
      int n = 0;
      for (boolean s : safe) {
        n += s ? 1 : 0;
      }
      int[] out = new int[n];
      int k = 0;
      for (int i = 0; i < safe.length; i++) {
        if (safe[i]) {
          out[k++] = i;
        }
      }
      return out;
    }
  }

  private final Path dir;
  private final List<Path> files;
  private final long[] sizes;
  private final Source[] sources;
  private final boolean[] read;

  /** The standard library's top-level modules in {@code dir}, sorted by name. */
  PythonHaystack(Path dir) {
    this.dir = dir;
    try (Stream<Path> s = Files.list(dir)) {
      this.files =
          s.filter(p -> p.getFileName().toString().endsWith(".py") && Files.isRegularFile(p))
              .sorted()
              .toList();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot list " + dir + ": " + e.getMessage(), e);
    }
    if (files.isEmpty()) {
      throw new IllegalArgumentException("no Python files (*.py) in " + dir);
    }
    this.sizes = new long[files.size()];
    for (int i = 0; i < sizes.length; i++) {
      try {
        sizes[i] = Files.size(files.get(i));
      } catch (IOException e) {
        sizes[i] = 0;
      }
    }
    this.sources = new Source[files.size()];
    this.read = new boolean[files.size()];
  }

  /** The standard library of the newest {@code /usr/lib/python3.N/}. */
  static PythonHaystack system() {
    return new PythonHaystack(locate(SYSTEM_ROOT));
  }

  /**
   * The newest {@code root/python3.N} holding {@code os.py}; one clear error sentence when there is
   * none.
   */
  static Path locate(Path root) {
    Path best = null;
    int bestMinor = -1;
    if (Files.isDirectory(root)) {
      try (DirectoryStream<Path> ds = Files.newDirectoryStream(root, "python3.*")) {
        for (Path p : ds) {
          String n = p.getFileName().toString();
          if (n.matches("python3\\.\\d{1,3}") && Files.isRegularFile(p.resolve("os.py"))) {
            int minor = Integer.parseInt(n.substring("python3.".length()));
            if (minor > bestMinor) {
              bestMinor = minor;
              best = p;
            }
          }
        }
      } catch (IOException e) {
        best = null;
      }
    }
    if (best == null) {
      throw new IllegalArgumentException(
          "the pycode tasks read the Python standard library's sources from "
              + root.resolve("python3.*")
              + "/ and none was found there (install python3, or leave the pycode tasks out)");
    }
    return best;
  }

  Path dir() {
    return dir;
  }

  int size() {
    return files.size();
  }

  /** Bytes of file i on disk (0 when unreadable). */
  long bytes(int i) {
    return sizes[i];
  }

  /** File i scanned, or null when it is not UTF-8 or the scan cannot close it. */
  synchronized Source source(int i) {
    if (!read[i]) {
      read[i] = true;
      Path p = files.get(i);
      try {
        String text =
            StandardCharsets.UTF_8
                .newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT)
                .decode(ByteBuffer.wrap(Files.readAllBytes(p)))
                .toString();
        sources[i] = scan(p.getFileName().toString(), text);
      } catch (CharacterCodingException e) {
        sources[i] = null;
      } catch (IOException e) {
        throw new UncheckedIOException("cannot read " + p + ": " + e.getMessage(), e);
      }
    }
    return sources[i];
  }

  /** Splits Python source into lines and marks where a top-level statement may go; see above. */
  static Source scan(String name, String text) {
    String t = text.replace("\r\n", "\n").replace('\r', '\n');
    List<String> lines = new ArrayList<>(Arrays.asList(t.split("\n", -1)));
    if (lines.get(lines.size() - 1).isEmpty()) {
      lines.remove(lines.size() - 1); // the text ended with a newline
    }
    int n = lines.size();
    boolean[] clean = new boolean[n + 1];
    boolean[] safe = new boolean[n + 1];
    int depth = 0;
    boolean continued = false;
    char quote = 0; // the open string's quote character, 0 outside strings
    boolean triple = false;
    String lastStatement = null;
    for (int i = 0; i < n; i++) {
      String line = lines.get(i);
      clean[i] = quote == 0 && depth == 0 && !continued;
      String stripped = line.strip();
      if (clean[i] && !stripped.isEmpty() && !stripped.startsWith("#")) {
        safe[i] = insertableBefore(line, lastStatement);
        lastStatement = stripped;
      }
      continued = false;
      boolean escapedNewline = false;
      int len = line.length();
      int j = 0;
      while (j < len) {
        char c = line.charAt(j);
        if (quote != 0) {
          if (c == '\\') {
            escapedNewline = j == len - 1;
            j += 2; // an escaped character never closes the string, raw strings included
          } else if (c == quote && (!triple || tripleAt(line, j, c))) {
            j += triple ? 3 : 1;
            quote = 0;
            triple = false;
          } else {
            j++;
          }
          continue;
        }
        if (c == '#') {
          break;
        }
        if (c == '\'' || c == '"') {
          triple = tripleAt(line, j, c);
          quote = c;
          j += triple ? 3 : 1;
          continue;
        }
        if (c == '(' || c == '[' || c == '{') {
          depth++;
        } else if (c == ')' || c == ']' || c == '}') {
          if (--depth < 0) {
            return null;
          }
        } else if (c == '\\') {
          if (j != len - 1) {
            return null; // outside strings a backslash only continues the line
          }
          continued = true;
        }
        j++;
      }
      if (quote != 0 && !triple && !escapedNewline) {
        return null; // a one-line string left open
      }
    }
    clean[n] = quote == 0 && depth == 0 && !continued;
    if (!clean[n]) {
      return null;
    }
    safe[n] = true;
    return new Source(name, List.copyOf(lines), clean, safe);
  }

  private static boolean tripleAt(String line, int j, char q) {
    return j + 2 < line.length() && line.charAt(j + 1) == q && line.charAt(j + 2) == q;
  }

  /** Whether a statement may go before {@code line}, which starts a logical line. */
  private static boolean insertableBefore(String line, String lastStatement) {
    return !Character.isWhitespace(line.charAt(0))
        && !CLAUSE.matcher(line).find()
        && !STRING_START.matcher(line).find()
        && !FUTURE.matcher(line).find()
        && (lastStatement == null || !lastStatement.startsWith("@"));
  }
}
