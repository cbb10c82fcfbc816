package io.kvslim.bench;

/** File-name-safe forms of spec texts. */
final class Slug {
  private Slug() {}

  static String of(String s) {
    String t = s.replaceAll("[^A-Za-z0-9._=-]+", "_").replaceAll("_+", "_");
    t = t.replace('=', '-');
    return t.length() > 60 ? t.substring(0, 60) : t;
  }
}
