package io.kvslim.cli;

import java.util.Locale;

/** Human-readable numbers for command output. */
final class Format {
  private Format() {}

  static String bytes(long b) {
    if (b < 1024) {
      return b + " B";
    }
    if (b < 1024L * 1024) {
      return String.format(Locale.ROOT, "%.1f KiB", b / 1024.0);
    }
    if (b < 1024L * 1024 * 1024) {
      return String.format(Locale.ROOT, "%.2f MiB", b / (1024.0 * 1024));
    }
    return String.format(Locale.ROOT, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  }
}
