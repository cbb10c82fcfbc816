package io.kvslim.bench;

import io.kvslim.bench.PromptAssembler.Assembled;
import io.kvslim.bench.PromptAssembler.Needle;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * The seeded retrieval tasks of BENCHMARKS.md: llama.cpp-style passkey, needle in a haystack, the
 * RULER-style variants (multi-key, multi-value, variable tracking, common-word extraction) and
 * next-line code completion, and the code-retrieval tasks of {@link CodeRetrievalTasks} (pycode:*,
 * in real Python code). A case depends only on (seed, task, length, depth, sample); hidden numbers
 * and names occur in the prompt only inside their needles.
 */
public final class RetrievalTasks {
  /** llama.cpp's passkey filler: no digits, so the key cannot appear in it by chance. */
  static final String PASSKEY_FILLER =
      "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

  static final String PASSKEY_INTRO =
      "A pass key is hidden in the long text below. Find it and remember it; you will be asked"
          + " for it at the end.";

  private final PromptAssembler assembler;
  private final BenchConfig.Niah niah;
  private final CodeCorpus code;
  private final long seed;
  private String haystackText;
  private CodeRetrievalTasks pycode;

  public RetrievalTasks(
      io.kvslim.tokenizer.Tokenizer tokenizer, BenchConfig.Niah niah, CodeCorpus code, long seed) {
    this.assembler = new PromptAssembler(tokenizer);
    this.niah = niah;
    this.code = code;
    this.seed = seed;
  }

  /** The cases of one task (ruler:mk etc. for the RULER variants) at one length and depth. */
  public List<TaskCase> cases(String task, int length, double depth, int samples) {
    List<TaskCase> out = new ArrayList<>();
    for (int s = 0; s < samples; s++) {
      SplittableRandom r = random(task, length, depth, s);
      out.add(
          switch (task) {
            case "passkey" -> passkey(length, depth, s, r);
            case "niah" -> niah(length, depth, s, r);
            case "ruler:mk" -> multiKey(length, depth, s, r);
            case "ruler:mv" -> multiValue(length, depth, s, r);
            case "ruler:vt" -> variableTracking(length, depth, s, r);
            case "ruler:cwe" -> commonWords(length, s, r);
            case "code" -> codeLine(length, s, r);
            case "pycode:assign", "pycode:vt", "pycode:arg" ->
                pycode().task(task, length, depth, s, r);
            default -> throw new IllegalArgumentException("unknown retrieval task '" + task + "'");
          });
    }
    return out;
  }

  /** The code-retrieval tasks, on the system's Python standard library read at first use. */
  private CodeRetrievalTasks pycode() {
    if (pycode == null) {
      pycode = new CodeRetrievalTasks(assembler.tokenizer(), PythonHaystack.system());
    }
    return pycode;
  }

  /** The code corpus's text, for the code NLL. */
  public String codeText() {
    return code.text();
  }

  /** Whether the task places a needle (and so has a depth). */
  public static boolean hasDepth(String task) {
    return !task.equals("ruler:cwe") && !task.equals("code");
  }

  private SplittableRandom random(String task, int length, double depth, int sample) {
    long h = seed;
    h = h * 0x9E3779B97F4A7C15L + task.hashCode();
    h = h * 0x9E3779B97F4A7C15L + length;
    h = h * 0x9E3779B97F4A7C15L + Double.hashCode(depth);
    h = h * 0x9E3779B97F4A7C15L + sample;
    return new SplittableRandom(h);
  }

  private static Map<String, Object> setting(String task, int length, Double depth) {
    Map<String, Object> m = new LinkedHashMap<>();
    int colon = task.indexOf(':');
    m.put("variant", colon < 0 ? "" : task.substring(colon + 1));
    m.put("length", length);
    m.put("depth", depth);
    return m;
  }

  private TaskCase passkey(int length, double depth, int sample, SplittableRandom r) {
    String key = SyntheticText.number(r, 5);
    int[] head = assembler.head(PASSKEY_INTRO);
    int[] needle =
        assembler.piece("The pass key is " + key + ". Remember it. " + key + " is the pass key.");
    int[] tail = assembler.piece("What is the pass key? The pass key is");
    List<Needle> needles = List.of(new Needle(depth, needle));
    int fill = Math.max(0, PromptAssembler.fillerLength(length, head, needles, tail));
    int[] filler = PromptAssembler.tile(assembler.piece(PASSKEY_FILLER), fill);
    Assembled a = PromptAssembler.assemble("passkey", length, head, filler, needles, tail);
    return build("passkey", length, depth, sample, a, key, Metrics.Scoring.PREFIX);
  }

  private String template(String t, String key, String value) {
    return t.replace("{key}", key).replace("{value}", value);
  }

  private int[] haystack(int tokens, SplittableRandom r, Set<String> secrets) {
    String text =
        switch (niah.haystack) {
          case "synthetic" -> SyntheticText.prose(r.nextLong(), tokens + 64);
          case "repeat" -> PASSKEY_FILLER;
          default -> haystackFile();
        };
    for (String s : secrets) {
      if (text.contains(s)) {
        throw new IllegalArgumentException(
            "the haystack text contains the hidden value " + s + "; use a text without numbers");
      }
    }
    return PromptAssembler.tile(assembler.piece(text), tokens);
  }

  private String haystackFile() {
    if (haystackText == null) {
      Path p = Path.of(niah.haystack);
      if (!Files.isRegularFile(p)) {
        throw new IllegalArgumentException(
            "niah.haystack '" + niah.haystack + "' is not 'synthetic', 'repeat' or a text file");
      }
      try {
        haystackText = Files.readString(p, StandardCharsets.UTF_8);
      } catch (IOException e) {
        throw new UncheckedIOException("cannot read haystack " + p + ": " + e.getMessage(), e);
      }
    }
    return haystackText;
  }

  private TaskCase needleTask(
      String task,
      int length,
      double depth,
      int sample,
      SplittableRandom r,
      List<String[]> keyValues,
      String questionKey,
      String answer,
      Metrics.Scoring scoring,
      String question) {
    int[] head = assembler.head(niah.intro);
    List<Needle> needles = new ArrayList<>();
    Set<String> secrets = new LinkedHashSet<>();
    for (int i = 0; i < keyValues.size(); i++) {
      String[] kv = keyValues.get(i);
      secrets.add(kv[1]);
      // the first needle is the one asked about, at the requested depth; the others anywhere
      double d = i == 0 ? depth : r.nextDouble();
      needles.add(new Needle(d, assembler.piece(template(niah.needle, kv[0], kv[1]))));
    }
    int[] tail = assembler.piece(template(question, questionKey, ""));
    int fill = Math.max(0, PromptAssembler.fillerLength(length, head, needles, tail));
    Assembled a =
        PromptAssembler.assemble(task, length, head, haystack(fill, r, secrets), needles, tail);
    return build(task, length, depth, sample, a, answer, scoring);
  }

  private TaskCase niah(int length, double depth, int sample, SplittableRandom r) {
    String key = SyntheticText.noun(r);
    String value = SyntheticText.number(r, niah.digits);
    return needleTask(
        "niah",
        length,
        depth,
        sample,
        r,
        List.<String[]>of(new String[] {key, value}),
        key,
        value,
        Metrics.Scoring.PREFIX,
        niah.question);
  }

  private TaskCase multiKey(int length, double depth, int sample, SplittableRandom r) {
    List<String[]> kvs = new ArrayList<>();
    Set<String> keys = new LinkedHashSet<>();
    Set<String> values = new LinkedHashSet<>();
    while (kvs.size() < 4) {
      String k = SyntheticText.noun(r);
      String v = SyntheticText.number(r, niah.digits);
      if (keys.add(k) && values.add(v)) {
        kvs.add(new String[] {k, v});
      }
    }
    return needleTask(
        "ruler:mk",
        length,
        depth,
        sample,
        r,
        kvs,
        kvs.get(0)[0],
        kvs.get(0)[1],
        Metrics.Scoring.PREFIX,
        niah.question);
  }

  private TaskCase multiValue(int length, double depth, int sample, SplittableRandom r) {
    String key = SyntheticText.noun(r);
    Set<String> values = new LinkedHashSet<>();
    while (values.size() < 4) {
      values.add(SyntheticText.number(r, niah.digits));
    }
    List<String[]> kvs = new ArrayList<>();
    for (String v : values) {
      kvs.add(new String[] {key, v});
    }
    String q = "What are all the secret numbers of the {key}? The secret numbers of the {key} are";
    return needleTask(
        "ruler:mv",
        length,
        depth,
        sample,
        r,
        kvs,
        key,
        String.join(", ", values),
        Metrics.Scoring.ALL,
        q);
  }

  private TaskCase variableTracking(int length, double depth, int sample, SplittableRandom r) {
    int hops = 4;
    String value = SyntheticText.number(r, 5);
    String other;
    do {
      other = SyntheticText.number(r, 5);
    } while (other.equals(value));
    Set<String> names = new LinkedHashSet<>();
    while (names.size() < hops + 2) {
      names.add(SyntheticText.variableName(r));
    }
    List<String> all = new ArrayList<>(names);
    List<Needle> needles = new ArrayList<>();
    // the chain keeps its order: hop k sits between the first statement and the end
    for (int k = 0; k < hops; k++) {
      String rhs = k == 0 ? value : "VAR " + all.get(k - 1);
      double d = depth + (1 - depth) * k / hops;
      needles.add(new Needle(d, assembler.piece("VAR " + all.get(k) + " = " + rhs + ".")));
    }
    double d1 = r.nextDouble();
    double d2 = d1 + (1 - d1) * r.nextDouble();
    needles.add(new Needle(d1, assembler.piece("VAR " + all.get(hops) + " = " + other + ".")));
    needles.add(
        new Needle(
            d2, assembler.piece("VAR " + all.get(hops + 1) + " = VAR " + all.get(hops) + ".")));
    int[] head = assembler.head("Track the variable assignments in the text below.");
    int[] tail =
        assembler.piece(
            "Which variables are assigned the value "
                + value
                + "? Answer: the variables assigned the value "
                + value
                + " are");
    int fill = Math.max(0, PromptAssembler.fillerLength(length, head, needles, tail));
    Set<String> secrets = new LinkedHashSet<>(all);
    secrets.add(value);
    Assembled a =
        PromptAssembler.assemble(
            "ruler:vt", length, head, haystack(fill, r, secrets), needles, tail);
    String answer = String.join(", ", all.subList(0, hops));
    return build("ruler:vt", length, depth, sample, a, answer, Metrics.Scoring.ALL);
  }

  private TaskCase commonWords(int length, int sample, SplittableRandom r) {
    int[] head = assembler.head("Below is a numbered list of words. Some words occur many times.");
    int[] tail =
        assembler.piece(
            "Which five words occur most often in the list above? Answer: the five most common"
                + " words are");
    int budget = length - head.length - tail.length;
    Set<String> used = new LinkedHashSet<>();
    List<String> common = new ArrayList<>();
    while (common.size() < 5) {
      String w = SyntheticText.pseudoWord(r);
      if (used.add(w)) {
        common.add(w);
      }
    }
    // blocks of ten slots, five common words and five fresh ones, shuffled within the block,
    // so every common word occurs once per block and every other word once in the list
    int[] body = new int[Math.max(0, budget)];
    int at = 0;
    int items = 0;
    boolean full = false;
    while (!full) {
      List<String> block = new ArrayList<>(common);
      while (block.size() < 10) {
        String w = SyntheticText.pseudoWord(r);
        if (used.add(w)) {
          block.add(w);
        }
      }
      for (int i = block.size() - 1; i > 0; i--) {
        int j = r.nextInt(i + 1);
        String t = block.get(i);
        block.set(i, block.get(j));
        block.set(j, t);
      }
      for (String w : block) {
        int[] t = assembler.piece((items + 1) + ". " + w);
        if (at + t.length > body.length) {
          full = true;
          break;
        }
        System.arraycopy(t, 0, body, at, t.length);
        at += t.length;
        items++;
      }
    }
    if (items < 20) {
      throw new TaskTooShortException(
          "length " + length + " is too short for task 'ruler:cwe' (fewer than 20 words fit)");
    }
    // the list fills up to the last whole word; the prompt may end a few tokens short of length
    int[] prompt = new int[head.length + at + tail.length];
    System.arraycopy(head, 0, prompt, 0, head.length);
    System.arraycopy(body, 0, prompt, head.length, at);
    System.arraycopy(tail, 0, prompt, head.length + at, tail.length);
    Assembled a = new Assembled(prompt, new int[0], new int[0]);
    return build(
        "ruler:cwe", length, null, sample, a, String.join(", ", common), Metrics.Scoring.ALL);
  }

  private TaskCase codeLine(int length, int sample, SplittableRandom r) {
    CodeCorpus.Line line = code.pickLine(r, length);
    int[] context = assembler.tokenizer().encode(code.contextBefore(line, length), false, false);
    if (context.length < length) {
      throw new TaskTooShortException(
          "the code corpus has too little text before its lines for length " + length);
    }
    int[] head = assembler.head("");
    int take = length - head.length;
    int[] prompt = new int[length];
    System.arraycopy(head, 0, prompt, 0, head.length);
    System.arraycopy(context, context.length - take, prompt, head.length, take);
    Assembled a = new Assembled(prompt, new int[0], new int[0]);
    return build("code", length, null, sample, a, line.text().strip(), Metrics.Scoring.LINE);
  }

  private TaskCase build(
      String task,
      int length,
      Double depth,
      int sample,
      Assembled a,
      String answer,
      Metrics.Scoring scoring) {
    int answerTokens = assembler.piece(answer).length;
    return new TaskCase(
        task,
        setting(task, length, depth),
        sample,
        a.tokens(),
        answer,
        scoring,
        answerTokens + 3,
        a.needleStarts(),
        a.needleLengths());
  }
}
