package io.kvslim.bench;

import java.io.PrintStream;
import java.time.Duration;
import java.util.Locale;
import me.tongfei.progressbar.ConsoleProgressBarConsumer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarConsumer;
import me.tongfei.progressbar.ProgressBarStyle;
import me.tongfei.progressbar.ProgressState;

/**
 * Progress of a long run with an ETA from the work done so far, drawn by Tongfei Chen's progressbar
 * library ({@code me.tongfei:progressbar}): on a terminal an ASCII bar redrawn in place; otherwise
 * (logs, CI) plain lines, one per whole percent, so a log gets no carriage returns or escape codes.
 * Work is counted in arbitrary units (tokens processed, roughly).
 */
public final class Progress implements AutoCloseable {
  /** How often the library redraws (a background daemon thread), in milliseconds. */
  private static final int REDRAW_MILLIS = 200;

  private final ProgressBar bar;
  private final long total;

  public Progress(PrintStream out, boolean terminal, long total) {
    this.total = Math.max(1, total);
    ProgressBarBuilder b =
        new ProgressBarBuilder()
            .setTaskName("kvslim")
            .setInitialMax(this.total)
            .setUpdateIntervalMillis(REDRAW_MILLIS);
    if (terminal) {
      b.setStyle(ProgressBarStyle.ASCII).setConsumer(new ConsoleProgressBarConsumer(out));
    } else {
      b.setRenderer(Progress::logLine).setConsumer(new LogLines(out));
    }
    this.bar = b.build();
  }

  /** Progress to stderr, as a bar when it is a terminal. */
  public static Progress onStderr(long total) {
    java.io.Console c = System.console();
    return new Progress(System.err, c != null && c.isTerminal(), total);
  }

  /** Counts {@code units} more as done and shows what was just finished. */
  public synchronized void advance(long units, String what) {
    bar.stepTo(Math.min(total, bar.getCurrent() + units));
    bar.setExtraMessage(what.length() > 40 ? what.substring(0, 40) : what);
  }

  /** Marks the run finished and draws the last state. */
  public synchronized void finish() {
    if (bar.getCurrent() < total) {
      advance(total - bar.getCurrent(), "done");
    }
    bar.close();
  }

  @Override
  public void close() {
    finish();
  }

  /** The line a log gets: {@code progress 42% (elapsed 1m05s, ETA 1m30s) what}. */
  static String logLine(ProgressState p, int maxLength) {
    long done = p.getCurrent();
    long max = Math.max(1, p.getMax());
    double elapsed = p.getTotalElapsed().toMillis() / 1e3;
    String eta = done == 0 ? "?" : duration(elapsed * (max - done) / done);
    return String.format(
        Locale.ROOT,
        "progress %3d%% (elapsed %s, ETA %s) %s",
        (int) Math.floor(100.0 * done / max),
        duration(elapsed),
        eta,
        p.getExtraMessage());
  }

  static String duration(double seconds) {
    Duration d = Duration.ofSeconds(Math.round(seconds));
    long s = d.toSeconds();
    if (s < 60) {
      return s + "s";
    }
    if (s < 3600) {
      return d.toMinutesPart() + "m" + String.format(Locale.ROOT, "%02d", d.toSecondsPart()) + "s";
    }
    return d.toHours() + "h" + String.format(Locale.ROOT, "%02d", d.toMinutesPart()) + "m";
  }

  /** The library's periodic redraws as log lines: a line only when the whole percent changed. */
  private static final class LogLines implements ProgressBarConsumer {
    private final PrintStream out;
    private String lastPercent = "";

    LogLines(PrintStream out) {
      this.out = out;
    }

    @Override
    public int getMaxRenderedLength() {
      return Integer.MAX_VALUE;
    }

    @Override
    public synchronized void accept(String line) {
      String percent = line.substring(0, Math.min(line.length(), "progress 100%".length()));
      if (!percent.equals(lastPercent)) {
        lastPercent = percent;
        out.println(line);
        out.flush();
      }
    }

    @Override
    public void close() {
      out.flush();
    }
  }
}
