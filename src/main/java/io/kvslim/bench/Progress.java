package io.kvslim.bench;

import java.io.PrintStream;
import java.util.Locale;

/**
 * Progress of a long run with an ETA from the work done so far: a redrawn bar on a terminal, plain
 * lines otherwise (logs, CI). Work is counted in arbitrary units (tokens processed, roughly).
 */
public final class Progress {
  private final PrintStream out;
  private final boolean terminal;
  private final long total;
  private final long t0 = System.nanoTime();
  private long done;
  private int lastPercentLine = -1;

  public Progress(PrintStream out, boolean terminal, long total) {
    this.out = out;
    this.terminal = terminal;
    this.total = Math.max(1, total);
  }

  /** Progress to stderr, as a bar when it is a terminal. */
  public static Progress onStderr(long total) {
    java.io.Console c = System.console();
    return new Progress(System.err, c != null && c.isTerminal(), total);
  }

  /** Counts {@code units} more as done and shows what was just finished. */
  public synchronized void advance(long units, String what) {
    done = Math.min(total, done + units);
    double frac = done / (double) total;
    double elapsed = (System.nanoTime() - t0) / 1e9;
    String eta = done == 0 ? "?" : duration(elapsed / frac - elapsed);
    int percent = (int) Math.floor(frac * 100);
    if (terminal) {
      int width = 30;
      int filled = (int) Math.round(frac * width);
      String bar = "#".repeat(filled) + "-".repeat(width - filled);
      String label = what.length() > 40 ? what.substring(0, 40) : what;
      out.printf(Locale.ROOT, "\r[%s] %3d%% ETA %-8s %-40s", bar, percent, eta, label);
      if (done >= total) {
        out.println();
      }
    } else if (percent != lastPercentLine || done >= total) {
      out.printf(
          Locale.ROOT,
          "progress %3d%% (elapsed %s, ETA %s) %s%n",
          percent,
          duration(elapsed),
          eta,
          what);
    }
    lastPercentLine = percent;
    out.flush();
  }

  /** Marks the run finished. */
  public void finish() {
    if (done < total) {
      advance(total - done, "done");
    }
  }

  static String duration(double seconds) {
    long s = Math.round(seconds);
    if (s < 60) {
      return s + "s";
    }
    if (s < 3600) {
      return (s / 60) + "m" + String.format(Locale.ROOT, "%02d", s % 60) + "s";
    }
    return (s / 3600) + "h" + String.format(Locale.ROOT, "%02d", (s % 3600) / 60) + "m";
  }
}
