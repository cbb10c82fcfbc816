package io.kvslim.chat;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELResolver;

/**
 * The Python {@code str} methods Hugging Face chat templates call on strings ({@code
 * message['content'].strip()}, {@code role.startswith('tool')}, {@code role.title()}, {@code ',
 * '.join(names)}...), for Jinjava, which otherwise resolves method calls to the Java {@link String}
 * methods (there is no {@code startswith}, and {@code split} takes a regex there). It runs before
 * Jinjava's own resolvers and answers only for a {@link String} base and a method named here; the
 * semantics follow the Python documentation of {@code str} (whitespace is what {@code str.isspace}
 * accepts).
 */
final class PyStringMethods extends ELResolver {
  static final Set<String> METHODS =
      Set.of(
          "strip",
          "lstrip",
          "rstrip",
          "startswith",
          "endswith",
          "upper",
          "lower",
          "title",
          "capitalize",
          "split",
          "replace",
          "find",
          "count",
          "join",
          "splitlines",
          "isspace",
          "isdigit",
          "isalpha",
          "isalnum",
          "isupper",
          "islower");

  @Override
  public Object invoke(
      ELContext context, Object base, Object method, Class<?>[] paramTypes, Object[] params) {
    if (!(base instanceof String s) || method == null || !METHODS.contains(method.toString())) {
      return null;
    }
    Object[] a = params == null ? new Object[0] : params;
    Object result = call(s, method.toString(), a);
    context.setPropertyResolved(true);
    return result;
  }

  static Object call(String s, String name, Object[] a) {
    return switch (name) {
      case "strip" -> strip(s, chars(a), true, true);
      case "lstrip" -> strip(s, chars(a), true, false);
      case "rstrip" -> strip(s, chars(a), false, true);
      case "startswith" -> affix(s, arg(a, 0, name), true);
      case "endswith" -> affix(s, arg(a, 0, name), false);
      case "upper" -> s.toUpperCase(Locale.ROOT);
      case "lower" -> s.toLowerCase(Locale.ROOT);
      case "title" -> title(s);
      case "capitalize" ->
          s.isEmpty()
              ? s
              : s.substring(0, s.offsetByCodePoints(0, 1)).toUpperCase(Locale.ROOT)
                  + s.substring(s.offsetByCodePoints(0, 1)).toLowerCase(Locale.ROOT);
      case "split" -> split(s, a.length > 0 ? a[0] : null, a.length > 1 ? toInt(a[1]) : -1);
      case "replace" ->
          replace(
              s,
              String.valueOf(arg(a, 0, name)),
              String.valueOf(arg(a, 1, name)),
              a.length > 2 ? toInt(a[2]) : -1);
      case "find" -> s.indexOf(String.valueOf(arg(a, 0, name)));
      case "count" -> count(s, String.valueOf(arg(a, 0, name)));
      case "join" -> join(s, arg(a, 0, name));
      case "splitlines" -> List.of(s.split("\r\n|\r|\n", -1)).stream().limit(lines(s)).toList();
      case "isspace" -> !s.isEmpty() && s.codePoints().allMatch(PyStringMethods::isSpace);
      case "isdigit" -> !s.isEmpty() && s.codePoints().allMatch(Character::isDigit);
      case "isalpha" -> !s.isEmpty() && s.codePoints().allMatch(Character::isLetter);
      case "isalnum" -> !s.isEmpty() && s.codePoints().allMatch(Character::isLetterOrDigit);
      case "isupper" -> hasCased(s) && s.equals(s.toUpperCase(Locale.ROOT));
      case "islower" -> hasCased(s) && s.equals(s.toLowerCase(Locale.ROOT));
      default -> throw new IllegalStateException("unhandled str method " + name);
    };
  }

  /** Python's {@code str.isspace} for one code point (Unicode White_Space, plus U+001C..U+001F). */
  static boolean isSpace(int cp) {
    return Character.isWhitespace(cp) || Character.isSpaceChar(cp) || cp == 0x85;
  }

  /** {@code str.strip(chars)}: without chars, Python whitespace. */
  static String strip(String s, String chars, boolean left, boolean right) {
    int start = 0;
    int end = s.length();
    while (left && start < end && stripped(s.codePointAt(start), chars)) {
      start += Character.charCount(s.codePointAt(start));
    }
    while (right && end > start && stripped(s.codePointBefore(end), chars)) {
      end -= Character.charCount(s.codePointBefore(end));
    }
    return s.substring(start, end);
  }

  private static boolean stripped(int cp, String chars) {
    return chars == null ? isSpace(cp) : chars.indexOf(cp) >= 0;
  }

  private static String chars(Object[] a) {
    return a.length == 0 || a[0] == null ? null : a[0].toString();
  }

  private static Object arg(Object[] a, int i, String method) {
    if (a.length <= i) {
      throw new IllegalArgumentException(
          "str." + method + "() takes at least " + (i + 1) + " argument(s)");
    }
    return a[i];
  }

  private static int toInt(Object o) {
    return o instanceof Number n ? n.intValue() : Integer.parseInt(String.valueOf(o));
  }

  /** startswith/endswith with one prefix or a tuple (list) of them. */
  private static boolean affix(String s, Object what, boolean start) {
    if (what instanceof Iterable<?> many) {
      for (Object w : many) {
        if (affix(s, w, start)) {
          return true;
        }
      }
      return false;
    }
    String w = String.valueOf(what);
    return start ? s.startsWith(w) : s.endsWith(w);
  }

  /** {@code str.title()}: a cased letter after a cased one is lowered, other cased ones raised. */
  static String title(String s) {
    StringBuilder sb = new StringBuilder(s.length());
    boolean previousCased = false;
    for (int i = 0; i < s.length(); ) {
      int cp = s.codePointAt(i);
      i += Character.charCount(cp);
      if (Character.isUpperCase(cp) || Character.isTitleCase(cp)) {
        sb.appendCodePoint(previousCased ? Character.toLowerCase(cp) : cp);
        previousCased = true;
      } else if (Character.isLowerCase(cp)) {
        sb.appendCodePoint(previousCased ? cp : Character.toTitleCase(cp));
        previousCased = true;
      } else {
        sb.appendCodePoint(cp);
        previousCased = false;
      }
    }
    return sb.toString();
  }

  /** {@code str.split(sep, maxsplit)}: no sep splits at whitespace runs and drops empty parts. */
  static List<String> split(String s, Object sep, int maxSplit) {
    List<String> out = new ArrayList<>();
    if (sep == null) {
      int i = 0;
      int n = s.length();
      while (true) {
        while (i < n && isSpace(s.codePointAt(i))) {
          i += Character.charCount(s.codePointAt(i));
        }
        if (i >= n) {
          return out;
        }
        if (maxSplit >= 0 && out.size() == maxSplit) {
          out.add(strip(s.substring(i), null, false, true));
          return out;
        }
        int j = i;
        while (j < n && !isSpace(s.codePointAt(j))) {
          j += Character.charCount(s.codePointAt(j));
        }
        out.add(s.substring(i, j));
        i = j;
      }
    }
    String d = sep.toString();
    if (d.isEmpty()) {
      throw new IllegalArgumentException("str.split() got an empty separator");
    }
    int from = 0;
    int at;
    while ((maxSplit < 0 || out.size() < maxSplit) && (at = s.indexOf(d, from)) >= 0) {
      out.add(s.substring(from, at));
      from = at + d.length();
    }
    out.add(s.substring(from));
    return out;
  }

  private static String replace(String s, String old, String with, int max) {
    if (max < 0) {
      return s.replace(old, with);
    }
    StringBuilder sb = new StringBuilder();
    int from = 0;
    int at;
    int done = 0;
    while (done < max && !old.isEmpty() && (at = s.indexOf(old, from)) >= 0) {
      sb.append(s, from, at).append(with);
      from = at + old.length();
      done++;
    }
    return sb.append(s.substring(from)).toString();
  }

  private static int count(String s, String sub) {
    if (sub.isEmpty()) {
      return s.codePointCount(0, s.length()) + 1;
    }
    int n = 0;
    for (int at = s.indexOf(sub); at >= 0; at = s.indexOf(sub, at + sub.length())) {
      n++;
    }
    return n;
  }

  private static String join(String sep, Object items) {
    if (!(items instanceof Iterable<?> it)) {
      throw new IllegalArgumentException("str.join() needs a list of strings");
    }
    StringBuilder sb = new StringBuilder();
    for (Iterator<?> i = it.iterator(); i.hasNext(); ) {
      sb.append(i.next());
      if (i.hasNext()) {
        sb.append(sep);
      }
    }
    return sb.toString();
  }

  /** How many lines {@code str.splitlines()} yields: no trailing empty part after a final break. */
  private static long lines(String s) {
    String[] parts = s.split("\r\n|\r|\n", -1);
    return parts.length > 0 && parts[parts.length - 1].isEmpty() ? parts.length - 1 : parts.length;
  }

  private static boolean hasCased(String s) {
    return s.codePoints().anyMatch(c -> Character.isUpperCase(c) || Character.isLowerCase(c));
  }

  // ---- property access is left to Jinjava's resolvers -----------------------------------------

  @Override
  public Object getValue(ELContext context, Object base, Object property) {
    return null;
  }

  @Override
  public Class<?> getType(ELContext context, Object base, Object property) {
    return null;
  }

  @Override
  public void setValue(ELContext context, Object base, Object property, Object value) {}

  @Override
  public boolean isReadOnly(ELContext context, Object base, Object property) {
    return true;
  }

  @Override
  public Iterator<java.beans.FeatureDescriptor> getFeatureDescriptors(
      ELContext context, Object base) {
    return null;
  }

  @Override
  public Class<?> getCommonPropertyType(ELContext context, Object base) {
    return null;
  }
}
