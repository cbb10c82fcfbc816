package io.kvslim.tensor;

import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * The engine's one fixed thread pool, built for many short parallel loops per token: work is split
 * statically into contiguous ranges, one per thread; the calling thread runs the first range
 * itself. Workers spin briefly on a generation counter before parking, so a dispatch costs well
 * under a microsecond while the engine is busy and nothing while it is idle. Nested or concurrent
 * calls run on the calling thread.
 */
public final class Parallel implements AutoCloseable {
  /** A task over the half-open range {@code [start, end)}. */
  @FunctionalInterface
  public interface RangeTask {
    void run(int start, int end);
  }

  /**
   * A task over the half-open range {@code [start, end)} that also gets the index of its chunk,
   * {@code 0 <= chunk < threads()}: the ranges of one call have distinct chunk indices, so a caller
   * can keep one scratch buffer per chunk index.
   */
  @FunctionalInterface
  public interface ChunkTask {
    void run(int chunk, int start, int end);
  }

  private static final int SPIN_ITERATIONS = 1 << 12;
  private static final AtomicInteger POOL_IDS = new AtomicInteger();

  private final int threads;
  private final Thread[] workers;
  private final AtomicBoolean busy = new AtomicBoolean();
  private final AtomicInteger pending = new AtomicInteger();
  private final boolean[] parked;
  private volatile long generation;
  private volatile boolean closed;
  // the current job, published by the volatile write of generation
  private ChunkTask task;
  private int n;
  private int grain;
  private int chunks;
  private volatile Throwable failure;

  public Parallel(int threads) {
    if (threads < 1) {
      throw new IllegalArgumentException("threads must be at least 1, got " + threads);
    }
    this.threads = threads;
    this.workers = new Thread[threads - 1];
    this.parked = new boolean[threads];
    int id = POOL_IDS.incrementAndGet();
    for (int i = 1; i < threads; i++) {
      int index = i;
      Thread t = new Thread(() -> workerLoop(index), "kvslim-" + id + "-worker-" + i);
      t.setDaemon(true);
      workers[i - 1] = t;
      t.start();
    }
  }

  /** Threads from the CPU count. */
  public static int defaultThreads() {
    return Runtime.getRuntime().availableProcessors();
  }

  public int threads() {
    return threads;
  }

  private void workerLoop(int index) {
    long seen = 0;
    while (true) {
      long g;
      int spins = 0;
      while ((g = generation) == seen && !closed) {
        if (++spins < SPIN_ITERATIONS) {
          Thread.onSpinWait();
        } else {
          synchronized (parked) {
            parked[index] = true;
          }
          if (generation == seen && !closed) {
            LockSupport.park(this);
          }
          synchronized (parked) {
            parked[index] = false;
          }
          spins = 0;
        }
      }
      if (closed) {
        return;
      }
      seen = g;
      // every worker acknowledges every generation, so none can mistake a later job's fields
      // for the one it woke up for
      try {
        if (index < chunks) {
          runChunk(index);
        }
      } catch (Throwable e) {
        failure = e;
      } finally {
        pending.decrementAndGet();
      }
    }
  }

  private void runChunk(int c) {
    int units = (n + grain - 1) / grain;
    int s = Math.min(n, (int) ((long) units * c / chunks) * grain);
    int e = Math.min(n, (int) ((long) units * (c + 1) / chunks) * grain);
    if (s < e) {
      task.run(c, s, e);
    }
  }

  /**
   * Runs {@code task} over {@code [0, n)} split into at most {@link #threads()} contiguous ranges
   * whose bounds are multiples of {@code grain} (except the last).
   */
  public void forRange(int n, int grain, RangeTask task) {
    forChunks(n, grain, (chunk, start, end) -> task.run(start, end));
  }

  /**
   * As {@link #forRange(int, int, RangeTask)}, telling each range its chunk index. A call that runs
   * inline (one chunk, nested or concurrent) runs the whole range as chunk 0.
   */
  public void forChunks(int n, int grain, ChunkTask task) {
    if (n <= 0) {
      return;
    }
    grain = Math.max(1, grain);
    int chunks = Math.min(threads, (n + grain - 1) / grain);
    if (chunks == 1 || !busy.compareAndSet(false, true)) {
      task.run(0, 0, n);
      return;
    }
    try {
      this.task = task;
      this.n = n;
      this.grain = grain;
      this.chunks = chunks;
      this.failure = null;
      pending.set(threads - 1);
      generation = generation + 1; // publishes the job
      synchronized (parked) {
        for (int i = 1; i < threads; i++) {
          if (parked[i]) {
            LockSupport.unpark(workers[i - 1]);
          }
        }
      }
      runChunk(0);
      int spins = 0;
      while (pending.get() > 0) {
        if (++spins < SPIN_ITERATIONS) {
          Thread.onSpinWait();
        } else {
          Thread.yield();
        }
      }
      this.task = null;
      Throwable f = failure;
      if (f != null) {
        failure = null;
        if (f instanceof RuntimeException re) {
          throw re;
        }
        if (f instanceof Error err) {
          throw err;
        }
        throw new IllegalStateException(f);
      }
    } finally {
      busy.set(false);
    }
  }

  public void forRange(int n, RangeTask task) {
    forRange(n, 1, task);
  }

  @Override
  public void close() {
    closed = true;
    for (Thread t : workers) {
      LockSupport.unpark(t);
    }
  }
}
