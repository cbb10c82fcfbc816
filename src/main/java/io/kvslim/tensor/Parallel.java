package io.kvslim.tensor;

import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The engine's one fixed thread pool. Work is split statically into contiguous ranges, one per
 * thread; the calling thread runs the first range itself.
 */
public final class Parallel implements AutoCloseable {
  /** A task over the half-open range {@code [start, end)}. */
  @FunctionalInterface
  public interface RangeTask {
    void run(int start, int end);
  }

  private static final AtomicInteger POOL_IDS = new AtomicInteger();
  private final int threads;
  private final ExecutorService pool;

  public Parallel(int threads) {
    if (threads < 1) {
      throw new IllegalArgumentException("threads must be at least 1, got " + threads);
    }
    this.threads = threads;
    int id = POOL_IDS.incrementAndGet();
    AtomicInteger n = new AtomicInteger();
    this.pool =
        threads == 1
            ? null
            : Executors.newFixedThreadPool(
                threads - 1,
                r -> {
                  Thread t = new Thread(r, "kvslim-" + id + "-worker-" + n.incrementAndGet());
                  t.setDaemon(true);
                  return t;
                });
  }

  /** Threads from the CPU count. */
  public static int defaultThreads() {
    return Runtime.getRuntime().availableProcessors();
  }

  public int threads() {
    return threads;
  }

  /**
   * Runs {@code task} over {@code [0, n)} split into at most {@link #threads()} contiguous ranges
   * whose bounds are multiples of {@code grain} (except the last).
   */
  public void forRange(int n, int grain, RangeTask task) {
    if (n <= 0) {
      return;
    }
    int chunks = Math.min(threads, Math.max(1, (n + grain - 1) / grain));
    if (chunks == 1 || pool == null) {
      task.run(0, n);
      return;
    }
    int units = (n + grain - 1) / grain;
    @SuppressWarnings("unchecked")
    Future<?>[] futures = new Future<?>[chunks - 1];
    for (int c = 1; c < chunks; c++) {
      int s = Math.min(n, (int) ((long) units * c / chunks) * grain);
      int e = Math.min(n, (int) ((long) units * (c + 1) / chunks) * grain);
      futures[c - 1] = pool.submit(() -> task.run(s, e));
    }
    int e0 = Math.min(n, (int) ((long) units / chunks) * grain);
    task.run(0, e0);
    for (Future<?> f : futures) {
      try {
        f.get();
      } catch (InterruptedException ie) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted", ie);
      } catch (ExecutionException ee) {
        Throwable c = ee.getCause();
        if (c instanceof RuntimeException re) {
          throw re;
        }
        if (c instanceof Error err) {
          throw err;
        }
        throw new IllegalStateException(c);
      }
    }
  }

  public void forRange(int n, RangeTask task) {
    forRange(n, 1, task);
  }

  @Override
  public void close() {
    if (pool != null) {
      pool.shutdownNow();
    }
  }
}
