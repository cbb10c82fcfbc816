package io.kvslim.kv.method;

/** Checks several methods share: knob values against each other. */
final class Checks {
  private Checks() {}

  /** A token budget must leave room beyond the sinks. */
  static void budgetAboveSinks(MethodCall c, int sinks) {
    Budget b = c.budget("budget");
    if (b != null && b.kind() == Budget.Kind.TOKENS && b.value() <= sinks) {
      throw new KvSpecException(
          c.name() + ":budget=" + b + " must exceed the sink count (" + sinks + ")");
    }
  }

  /** SnapKV's family: an odd pooling kernel and a token budget larger than the window. */
  static void windowed(MethodCall c) {
    if (c.integer("kernel") % 2 == 0) {
      throw new KvSpecException(c.name() + ":kernel must be odd, got " + c.integer("kernel"));
    }
    Budget b = c.budget("budget");
    if (b.kind() == Budget.Kind.TOKENS && b.value() <= c.integer("window")) {
      throw new KvSpecException(
          c.name() + ":budget=" + b + " must exceed the window (" + c.integer("window") + ")");
    }
  }
}
