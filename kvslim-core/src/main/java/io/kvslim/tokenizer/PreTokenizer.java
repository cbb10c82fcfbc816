package io.kvslim.tokenizer;

import io.kvslim.gguf.SafeText;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Splits text into words before byte-level BPE, as selected by {@code tokenizer.ggml.pre}. A
 * pre-tokenizer is a list of regexes applied in turn: each one splits every current segment into
 * its matches and the gaps between them, so that no BPE merge crosses a word boundary.
 *
 * <p>To reproduce llama.cpp's tokenization exactly, the regexes are evaluated the way llama.cpp
 * evaluates them. A regex using Unicode classes ({@code \p{L}} etc.) runs on a "collapsed" text in
 * which every non-ASCII code point is replaced by one placeholder per class (whitespace by {@code
 * \x0B}), and each {@code \p{X}} by a class holding that placeholder and the ASCII members of X.
 * Regexes without classes run on the text itself, with non-ASCII whitespace turned into {@code
 * \x0B} so that {@code \s} sees it. The patterns are the models' own pre-tokenizer definitions
 * (from their {@code tokenizer.json}).
 */
final class PreTokenizer {
  /** GPT-2's word pattern, also the second stage of several others. */
  private static final String GPT2 =
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";

  private static final String LLAMA3 =
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
          + "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

  private static final String QWEN2 =
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
          + "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

  /** CJK ideographs, a wide block below them, and Hangul, as one run. */
  private static final String CJK_RUN = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+";

  /** Cased letters of the Latin, Greek, Cyrillic, Armenian, Georgian... scripts. */
  private static final String DEEPSEEK_LLM_LETTERS =
      "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293"
          + "\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C"
          + "\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5"
          + "\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77"
          + "\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59"
          + "\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC"
          + "\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107"
          + "\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139"
          + "\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE"
          + "\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E"
          + "\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A"
          + "\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}"
          + "\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+";

  private static final String DEEPSEEK_LLM_PUNCT =
      "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+";

  /** Name groups of {@code tokenizer.ggml.pre} and the regexes each one runs. */
  private static final Map<List<String>, String[]> DEFINITIONS = new LinkedHashMap<>();

  static {
    DEFINITIONS.put(
        List.of("default"),
        new String[] {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2, "\\p{N}+", "[0-9][0-9][0-9]"});
    DEFINITIONS.put(
        List.of(
            "gpt-2",
            "phi-2",
            "mpt",
            "olmo",
            "jais",
            "roberta-bpe",
            "gigachat",
            "jina-es",
            "jina-de",
            "jina-v1-en"),
        new String[] {GPT2});
    DEFINITIONS.put(
        List.of("llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe"),
        new String[] {LLAMA3});
    DEFINITIONS.put(
        List.of("qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"), new String[] {QWEN2});
    DEFINITIONS.put(
        List.of("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"),
        new String[] {"\\p{N}", GPT2});
    DEFINITIONS.put(
        List.of("deepseek-coder"),
        new String[] {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", CJK_RUN, "\\p{N}"});
    DEFINITIONS.put(
        List.of("deepseek-llm"),
        new String[] {
          "[\\r\\n]", DEEPSEEK_LLM_LETTERS, DEEPSEEK_LLM_PUNCT, "\\s+\\z", CJK_RUN, "\\p{N}+"
        });
    DEFINITIONS.put(
        List.of("falcon"), new String[] {"[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2, "[0-9][0-9][0-9]"});
  }

  /** Placeholders of the collapsed text, indexed by {@link CodepointClass} constants. */
  private static final char[] PLACEHOLDER = {
    '\uE000', '\uE001', '\uE002', '\uE003', '\uE004', '\uE005'
  };

  private static final char COLLAPSED_SPACE = '\u000B';

  private final String name;
  private final Pattern[] patterns;
  private final boolean[] collapsed;

  private PreTokenizer(String name, String[] regexes) {
    this.name = name;
    this.patterns = new Pattern[regexes.length];
    this.collapsed = new boolean[regexes.length];
    for (int i = 0; i < regexes.length; i++) {
      String translated = collapseClasses(regexes[i]);
      collapsed[i] = !translated.equals(regexes[i]);
      patterns[i] = Pattern.compile(translated);
    }
  }

  /** The pre-tokenizer called {@code name}, or an error listing the supported names. */
  static PreTokenizer forName(String name) {
    for (Map.Entry<List<String>, String[]> e : DEFINITIONS.entrySet()) {
      if (e.getKey().contains(name)) {
        return new PreTokenizer(name, e.getValue());
      }
    }
    throw new IllegalArgumentException(
        "unsupported pre-tokenizer '"
            + SafeText.of(name)
            + "' in tokenizer.ggml.pre (supported: "
            + String.join(", ", supportedNames())
            + ")");
  }

  static List<String> supportedNames() {
    List<String> names = new ArrayList<>();
    DEFINITIONS.keySet().forEach(names::addAll);
    return names;
  }

  String name() {
    return name;
  }

  /** The words of {@code text}, in order; their concatenation is {@code text}. */
  List<String> split(String text) {
    int[] cps = text.codePoints().toArray();
    if (cps.length == 0) {
      return List.of();
    }
    Subject subject = new Subject(cps);
    IntList ends = new IntList();
    ends.add(cps.length);
    for (int stage = 0; stage < patterns.length; stage++) {
      IntList next = new IntList(ends.size() * 2);
      boolean useCollapsed = collapsed[stage];
      Matcher m = patterns[stage].matcher(subject.text(useCollapsed));
      int start = 0;
      for (int s = 0; s < ends.size(); s++) {
        int end = ends.get(s);
        splitSegment(m, subject, useCollapsed, start, end, next);
        start = end;
      }
      ends = next;
    }
    List<String> words = new ArrayList<>(ends.size());
    int start = 0;
    for (int s = 0; s < ends.size(); s++) {
      int end = ends.get(s);
      words.add(new String(cps, start, end - start));
      start = end;
    }
    return words;
  }

  /** Appends the ends of the matches of {@code m} in {@code [from, to)} and of the gaps. */
  private static void splitSegment(
      Matcher m, Subject subject, boolean useCollapsed, int from, int to, IntList ends) {
    m.region(subject.charIndex(useCollapsed, from), subject.charIndex(useCollapsed, to));
    int last = from;
    while (m.find()) {
      if (m.end() == m.start()) {
        continue;
      }
      int start = subject.codepointIndex(useCollapsed, m.start());
      int end = subject.codepointIndex(useCollapsed, m.end());
      if (start > last) {
        ends.add(start);
      }
      ends.add(end);
      last = end;
    }
    if (last < to) {
      ends.add(to);
    }
  }

  /** Rewrites {@code \p{N|L|P|M|S}} for the collapsed text; other regexes come back unchanged. */
  static String collapseClasses(String regex) {
    StringBuilder out = new StringBuilder(regex.length() + 32);
    boolean insideClass = false;
    for (int i = 0; i < regex.length(); i++) {
      char c = regex.charAt(i);
      if (c == '\\' && i + 1 < regex.length()) {
        if (regex.startsWith("\\p{", i) && i + 4 < regex.length() && regex.charAt(i + 4) == '}') {
          String members = classMembers(regex.charAt(i + 3));
          if (members != null) {
            out.append(insideClass ? members : "[" + members + "]");
            i += 4;
            continue;
          }
        }
        out.append(c).append(regex.charAt(++i));
        continue;
      }
      if (c == '[') {
        insideClass = true;
      } else if (c == ']') {
        insideClass = false;
      }
      out.append(c);
    }
    return out.toString();
  }

  /**
   * The placeholder of a class plus its ASCII members. llama.cpp's ASCII symbol set lacks {@code
   * ~}; kept so that the same text splits the same way.
   */
  private static String classMembers(char category) {
    return switch (category) {
      case 'N' -> PLACEHOLDER[CodepointClass.NUMBER] + "0-9";
      case 'L' -> PLACEHOLDER[CodepointClass.LETTER] + "A-Za-z";
      case 'P' -> PLACEHOLDER[CodepointClass.PUNCTUATION] + "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}";
      case 'M' -> String.valueOf(PLACEHOLDER[CodepointClass.MARK]);
      case 'S' -> PLACEHOLDER[CodepointClass.SYMBOL] + "\\$\\+<->\\^`\\|";
      default -> null;
    };
  }

  /** The two views of one text that the stages match against, built on first use. */
  private static final class Subject {
    private final int[] cps;
    private String collapsedText;
    private String plainText;
    private int[] plainOffsets; // char index of each code point, or null when all are BMP

    Subject(int[] cps) {
      this.cps = cps;
    }

    CharSequence text(boolean collapsed) {
      return collapsed ? collapsed() : plain();
    }

    int charIndex(boolean collapsed, int codepoint) {
      if (collapsed) {
        return codepoint;
      }
      plain();
      return plainOffsets == null ? codepoint : plainOffsets[codepoint];
    }

    int codepointIndex(boolean collapsed, int charIndex) {
      if (collapsed || plainOffsets == null) {
        return charIndex;
      }
      return Arrays.binarySearch(plainOffsets, charIndex);
    }

    private String collapsed() {
      if (collapsedText == null) {
        char[] chars = new char[cps.length];
        for (int i = 0; i < cps.length; i++) {
          int cp = cps[i];
          if (cp < 128) {
            chars[i] = (char) cp;
          } else if (CodepointClass.isWhitespace(cp)) {
            chars[i] = COLLAPSED_SPACE;
          } else {
            chars[i] = PLACEHOLDER[CodepointClass.of(cp)];
          }
        }
        collapsedText = new String(chars);
      }
      return collapsedText;
    }

    private String plain() {
      if (plainText == null) {
        StringBuilder sb = new StringBuilder(cps.length + 8);
        boolean supplementary = false;
        int[] offsets = new int[cps.length + 1];
        for (int i = 0; i < cps.length; i++) {
          offsets[i] = sb.length();
          int cp = cps[i];
          if (cp >= 128 && CodepointClass.isWhitespace(cp)) {
            cp = COLLAPSED_SPACE;
          }
          supplementary |= Character.isSupplementaryCodePoint(cp);
          sb.appendCodePoint(cp);
        }
        offsets[cps.length] = sb.length();
        plainText = sb.toString();
        plainOffsets = supplementary ? offsets : null;
      }
      return plainText;
    }
  }
}
