package io.kvslim.bench;

/** File-name-safe forms of spec texts. */
final class Slug {
  private Slug() {}

  static String of(String s) {
    String t = s.replaceAll("[^A-Za-z0-9._=-]+", "_").replaceAll("_+", "_");
    t = t.replace('=', '-');
    if (t.length() <= 60) {
      return t;
    }
    // keep names of long specs apart: a hash of the whole text after the cut
    return t.substring(0, 52) + "-" + String.format("%07x", s.hashCode() & 0xfffffff);
  }
}
