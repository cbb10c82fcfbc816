package io.kvslim.bench;

import io.kvslim.tokenizer.Tokenizer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * Retrieval tasks a code model can do, hidden in real Python code it did not train on (the standard
 * library, {@link PythonHaystack}):
 *
 * <ul>
 *   <li>{@code pycode:assign}: four constants {@code NAME = 48213} at top level, one at the
 *       requested depth; the prompt ends {@code assert NAME == } and the model should write its
 *       value.
 *   <li>{@code pycode:vt}: variable tracking through reassignments: {@code a = 48213}, then {@code
 *       b = a}, {@code c = b}, {@code d = c} further on, and a distractor chain with another value;
 *       the prompt ends {@code assert d == }.
 *   <li>{@code pycode:arg}: function-argument recall: three functions {@code def name(data,
 *       param=48213):}; the prompt ends {@code assert name.__defaults__ == (}.
 * </ul>
 *
 * Names are pseudo-words of three or four syllables, not identifiers a code model has met, and
 * values five-digit numbers; neither occurs in the code around them. A prompt is BOS, a stretch of
 * whole lines of one module with the needles inserted as whole lines before top-level statements,
 * then the question: at most {@code length} tokens, tokenized as one text. The asked needle sits at
 * the requested depth of the code's tokens (within a few tokens: it must land on a statement
 * boundary). The answer is scored as an integer ({@link Metrics.Scoring#INTEGER}).
 */
final class CodeRetrievalTasks {
  static final List<String> TASKS = List.of("pycode:assign", "pycode:vt", "pycode:arg");

  /** Modules tried per case for a window that fits the depth and length. */
  private static final int FILE_ATTEMPTS = 64;

  /** Fewest code tokens a prompt must hold. */
  private static final int MIN_CODE = 32;

  private static final int VT_HOPS = 4;

  /** A statement to hide: whole lines, its depth, and the needle it must follow (or -1). */
  private record Needle(String text, double depth, int after) {}

  /** The needles, the question and the answer of one case. */
  private record Plan(List<Needle> needles, String question, String answer, Set<String> secrets) {}

  /** Lines {@code [first, end)} of a source; the asked needle goes before line {@code needle}. */
  record Window(PythonHaystack.Source source, int[] cum, int first, int needle, int end) {
    int tokens(int from, int to) {
      return cum[to] - cum[from];
    }
  }

  /**
   * A case and what it was built from.
   *
   * @param needleLines the line each needle was inserted before
   * @param needleCode code tokens (needles not counted) before each needle
   * @param codeTokens code tokens in the window
   * @param tailStart index in the prompt of the question's first token
   * @param text the prompt's text after BOS
   */
  record Built(
      TaskCase task,
      Window window,
      int[] needleLines,
      int[] needleCode,
      int codeTokens,
      int tailStart,
      String text) {}

  private final Tokenizer tokenizer;
  private final PythonHaystack haystack;
  private final boolean spaceBeforeNumber;
  private final Map<Integer, int[]> lineTokens = new HashMap<>();

  CodeRetrievalTasks(Tokenizer tokenizer, PythonHaystack haystack) {
    this.tokenizer = tokenizer;
    this.haystack = haystack;
    // end the question with the space that starts a number where the tokenizer splits it off
    int[] bare = tokenizer.encode("assert x == ", false, false);
    int[] full = tokenizer.encode("assert x == 48213", false, false);
    this.spaceBeforeNumber =
        full.length > bare.length && Arrays.equals(bare, Arrays.copyOf(full, bare.length));
  }

  TaskCase task(String task, int length, double depth, int sample, SplittableRandom r) {
    return build(task, length, depth, sample, r).task();
  }

  Built build(String task, int length, double depth, int sample, SplittableRandom r) {
    if (!TASKS.contains(task)) {
      throw new IllegalArgumentException("unknown retrieval task '" + task + "'");
    }
    int budget = length;
    for (int attempt = 0; attempt < 16; attempt++) {
      Plan plan = plan(task, depth, r);
      int fixed = 1 + tokenizer.encode(plan.question(), false, false).length;
      for (Needle n : plan.needles()) {
        fixed += tokenizer.encode(n.text(), false, false).length;
      }
      int code = budget - fixed;
      if (code < MIN_CODE) {
        throw new TaskTooShortException(
            "length "
                + length
                + " is too short for task '"
                + task
                + "': its needles and question take "
                + fixed
                + " tokens");
      }
      Window w = window(code, depth, r);
      if (leaks(w, plan.secrets())) {
        continue; // a name or value occurs in this code: draw others
      }
      Built b = assemble(task, length, depth, sample, plan, w);
      if (b.task().prompt().length <= length) {
        return b;
      }
      budget -= b.task().prompt().length - length; // joined text tokenizes a little longer
    }
    throw new IllegalStateException("could not assemble a '" + task + "' prompt of " + length);
  }

  // ---- the tasks ----------------------------------------------------------------------------

  /** A pseudo-word of three or four syllables ("bakorime"): no Python name, no English word. */
  private static String name(SplittableRandom r) {
    String w;
    do {
      w = SyntheticText.pseudoWord(r);
    } while (w.length() < 6);
    return w;
  }

  private static List<String> distinct(int n, SplittableRandom r, boolean upper) {
    Set<String> s = new LinkedHashSet<>();
    while (s.size() < n) {
      String x = name(r);
      s.add(upper ? x.toUpperCase(Locale.ROOT) : x);
    }
    return new ArrayList<>(s);
  }

  private static List<String> values(int n, SplittableRandom r) {
    Set<String> s = new LinkedHashSet<>();
    while (s.size() < n) {
      s.add(SyntheticText.number(r, 5));
    }
    return new ArrayList<>(s);
  }

  private String equalsQuestion(String lhs) {
    return "assert " + lhs + (spaceBeforeNumber ? " == " : " ==");
  }

  private Plan plan(String task, double depth, SplittableRandom r) {
    List<Needle> needles = new ArrayList<>();
    Set<String> secrets = new LinkedHashSet<>();
    return switch (task) {
      case "pycode:assign" -> {
        List<String> names = distinct(4, r, true);
        List<String> vals = values(4, r);
        for (int i = 0; i < 4; i++) {
          // the first is asked about, at the requested depth; the others anywhere
          needles.add(
              new Needle(
                  names.get(i) + " = " + vals.get(i) + "\n", i == 0 ? depth : r.nextDouble(), -1));
        }
        secrets.addAll(names);
        secrets.addAll(vals);
        yield new Plan(needles, equalsQuestion(names.get(0)), vals.get(0), secrets);
      }
      case "pycode:vt" -> {
        List<String> names = distinct(VT_HOPS + 2, r, false);
        List<String> vals = values(2, r);
        // the chain keeps its order: hop k between the requested depth and the end
        for (int k = 0; k < VT_HOPS; k++) {
          String rhs = k == 0 ? vals.get(0) : names.get(k - 1);
          double d = depth + (1 - depth) * k / VT_HOPS;
          needles.add(new Needle(names.get(k) + " = " + rhs + "\n", d, k - 1));
        }
        double d1 = r.nextDouble();
        double d2 = d1 + (1 - d1) * r.nextDouble();
        needles.add(new Needle(names.get(VT_HOPS) + " = " + vals.get(1) + "\n", d1, -1));
        needles.add(
            new Needle(names.get(VT_HOPS + 1) + " = " + names.get(VT_HOPS) + "\n", d2, VT_HOPS));
        secrets.addAll(names);
        secrets.addAll(vals);
        yield new Plan(needles, equalsQuestion(names.get(VT_HOPS - 1)), vals.get(0), secrets);
      }
      case "pycode:arg" -> {
        List<String> names = distinct(6, r, false);
        List<String> vals = values(3, r);
        for (int i = 0; i < 3; i++) {
          String f = names.get(2 * i);
          String p = names.get(2 * i + 1);
          String text =
              "def " + f + "(data, " + p + "=" + vals.get(i) + "):\n    return data, " + p + "\n";
          needles.add(new Needle(text, i == 0 ? depth : r.nextDouble(), -1));
        }
        secrets.addAll(names);
        secrets.addAll(vals);
        yield new Plan(
            needles, "assert " + names.get(0) + ".__defaults__ == (", vals.get(0), secrets);
      }
      default -> throw new IllegalArgumentException("unknown retrieval task '" + task + "'");
    };
  }

  private static boolean leaks(Window w, Set<String> secrets) {
    for (int i = w.first(); i < w.end(); i++) {
      String line = w.source().lines().get(i);
      for (String s : secrets) {
        if (line.contains(s)) {
          return true;
        }
      }
    }
    return false;
  }

  // ---- the window of code -------------------------------------------------------------------

  /**
   * Tokens of each line of source i when the whole file is tokenized (a token counts where it
   * starts).
   */
  private int[] lineTokens(int i, PythonHaystack.Source src) {
    return lineTokens.computeIfAbsent(
        i,
        k -> {
          String text = String.join("\n", src.lines()) + "\n";
          int[] ids = tokenizer.encode(text, false, false);
          long[] starts = tokenByteStarts(ids, text);
          int[] lineStart = new int[src.lines().size() + 1];
          int b = 0;
          for (int l = 0; l < src.lines().size(); l++) {
            lineStart[l] = b;
            b += src.lines().get(l).getBytes(StandardCharsets.UTF_8).length + 1;
          }
          lineStart[src.lines().size()] = b;
          int[] cum = new int[lineStart.length];
          int line = 0;
          for (int t = 0; t < ids.length; t++) {
            while (line + 1 < lineStart.length && starts[t] >= lineStart[line + 1]) {
              line++;
            }
            cum[line + 1]++;
          }
          for (int l = 1; l < cum.length; l++) {
            cum[l] += cum[l - 1];
          }
          return cum;
        });
  }

  /**
   * Byte offset in {@code text} where each token of {@code ids} (its encoding) starts; the space a
   * SentencePiece tokenizer puts in front of the text is not counted.
   */
  long[] tokenByteStarts(int[] ids, String text) {
    long total = 0;
    for (int id : ids) {
      total += tokenizer.tokenBytes(id).length;
    }
    long at = text.getBytes(StandardCharsets.UTF_8).length - total; // minus the added prefix
    long[] out = new long[ids.length + 1];
    for (int t = 0; t < ids.length; t++) {
      out[t] = at;
      at += tokenizer.tokenBytes(ids[t]).length;
    }
    out[ids.length] = at;
    return out;
  }

  /**
   * Lines of one module holding about {@code code} tokens, the asked needle's line splitting them
   * at {@code depth}: the window ends before a top-level statement (the question follows there) and
   * starts at a line outside any string, bracket or continuation. Modules are tried in random
   * order; in the first one where some statement boundaries give a window within max(4, code/50)
   * tokens of both targets, one of those is drawn; otherwise the closest window seen.
   */
  Window window(int code, double depth, SplittableRandom r) {
    int before = (int) Math.round(depth * code);
    int after = code - before;
    int tol = Math.max(4, code / 50);
    Window best = null;
    int bestErr = Integer.MAX_VALUE;
    for (int a = 0; a < FILE_ATTEMPTS; a++) {
      int f = r.nextInt(haystack.size());
      PythonHaystack.Source src = haystack.bytes(f) < 2L * code ? null : haystack.source(f);
      if (src == null) {
        continue;
      }
      int[] cum = lineTokens(f, src);
      int[] safe = src.safeLines();
      List<Window> ok = new ArrayList<>();
      for (int si = 0; si < safe.length; si++) {
        int b = safe[si];
        int end = b;
        for (int k = si + 1; k < safe.length && cum[safe[k]] - cum[b] <= after; k++) {
          end = safe[k];
        }
        int first = b;
        for (int j = b - 1; j >= 0 && cum[b] - cum[j] <= before; j--) {
          if (src.clean()[j]) {
            first = j;
          }
        }
        int err = (before - (cum[b] - cum[first])) + (after - (cum[end] - cum[b]));
        if (err <= tol) {
          ok.add(new Window(src, cum, first, b, end));
        } else if (err < bestErr) {
          bestErr = err;
          best = new Window(src, cum, first, b, end);
        }
      }
      if (!ok.isEmpty()) {
        return ok.get(r.nextInt(ok.size()));
      }
    }
    if (best == null) {
      throw new TaskTooShortException(
          "no module of the Python standard library in "
              + haystack.dir()
              + " holds "
              + code
              + " tokens of code");
    }
    return best;
  }

  // ---- assembly -----------------------------------------------------------------------------

  private Built assemble(String task, int length, double depth, int sample, Plan plan, Window w) {
    List<Needle> needles = plan.needles();
    int n = needles.size();
    int[] safe = w.source().safeLines();
    List<Integer> bounds = new ArrayList<>();
    for (int s : safe) {
      if (s >= w.first() && s <= w.end()) {
        bounds.add(s);
      }
    }
    int total = w.tokens(w.first(), w.end());
    int[] at = new int[n];
    for (int i = 0; i < n; i++) {
      Needle nd = needles.get(i);
      if (i == 0) {
        at[i] = w.needle();
        continue;
      }
      int min = nd.after() < 0 ? w.first() : at[nd.after()];
      double target = nd.depth() * total;
      int best = -1;
      for (int s : bounds) {
        if (s >= min
            && (best < 0
                || Math.abs(w.tokens(w.first(), s) - target)
                    < Math.abs(w.tokens(w.first(), best) - target))) {
          best = s;
        }
      }
      at[i] = best;
    }
    // the text, needles before the line they precede in their given order
    StringBuilder sb = new StringBuilder();
    int[] charStart = new int[n];
    for (int line = w.first(); line <= w.end(); line++) {
      for (int i = 0; i < n; i++) {
        if (at[i] == line) {
          charStart[i] = sb.length();
          sb.append(needles.get(i).text());
        }
      }
      if (line < w.end()) {
        sb.append(w.source().lines().get(line)).append('\n');
      }
    }
    int tailChar = sb.length();
    sb.append(plan.question());
    String text = sb.toString();
    int[] body = tokenizer.encode(text, false, false);
    int head = tokenizer.addsBos() && tokenizer.bos() >= 0 ? 1 : 0;
    int[] prompt = new int[head + body.length];
    if (head == 1) {
      prompt[0] = tokenizer.bos();
    }
    System.arraycopy(body, 0, prompt, head, body.length);
    long[] starts = tokenByteStarts(body, text);
    int[] needleStarts = new int[n];
    int[] needleLengths = new int[n];
    int[] needleCode = new int[n];
    for (int i = 0; i < n; i++) {
      int s = tokenAt(starts, text, charStart[i]);
      int e = tokenAt(starts, text, charStart[i] + needles.get(i).text().length());
      needleStarts[i] = head + s;
      needleLengths[i] = e - s;
      needleCode[i] = w.tokens(w.first(), at[i]);
    }
    int tailStart = head + tokenAt(starts, text, tailChar);
    Map<String, Object> setting = new LinkedHashMap<>();
    setting.put("variant", task.substring(task.indexOf(':') + 1));
    setting.put("length", length);
    setting.put("depth", depth);
    setting.put("haystack", haystack.dir().toString());
    setting.put("source", w.source().name() + ":" + (w.first() + 1) + "-" + w.end());
    int answerTokens = tokenizer.encode(plan.answer(), false, false).length;
    TaskCase c =
        new TaskCase(
            task,
            setting,
            sample,
            prompt,
            plan.answer(),
            Metrics.Scoring.INTEGER,
            answerTokens + 3,
            needleStarts,
            needleLengths);
    return new Built(c, w, at, needleCode, total, tailStart, text);
  }

  /** The token that starts at character {@code ch} of {@code text}; it must start one. */
  private static int tokenAt(long[] starts, String text, int ch) {
    if (ch == 0) {
      return 0; // a SentencePiece tokenizer may join its added space to the first token
    }
    long b = text.substring(0, ch).getBytes(StandardCharsets.UTF_8).length;
    int i = Arrays.binarySearch(starts, b);
    if (i < 0) {
      throw new IllegalStateException(
          "the tokenizer merges across a line start; the code tasks need lines to start tokens");
    }
    while (i > 0 && starts[i - 1] == b) {
      i--; // a zero-byte token (none expected) would share the offset
    }
    return i;
  }
}
