package io.kvslim.server;

/**
 * Admission by reservation (DESIGN.md §4), the one rule the server's {@link Scheduler} and {@code
 * kvslim bench throughput} both admit sequences by: a sequence is admitted when fewer than {@code
 * maxBatch} sequences hold a slot and its {@link KvPlan#estimateBytes estimated} KV bytes fit next
 * to the reservations of the admitted ones under the pool's limit; it holds that reservation and
 * its slot until it retires. The estimate is an upper bound of what the sequence's cache holds, so
 * the admitted sequences together stay within the limit.
 *
 * <p>Not thread-safe: one thread admits and releases (the scheduler's). {@link #fitsAlone} reads
 * only the fixed limit and may be called from any thread.
 */
public final class Admission {
  private final long limitBytes;
  private final int maxBatch;
  private long reservedBytes;
  private int admitted;

  /**
   * @param limitBytes the pool's byte limit that reservations must stay within
   * @param maxBatch the most sequences admitted at once
   */
  public Admission(long limitBytes, int maxBatch) {
    if (limitBytes < 1) {
      throw new IllegalArgumentException("the KV memory limit must be positive, got " + limitBytes);
    }
    if (maxBatch < 1) {
      throw new IllegalArgumentException("--max-batch must be at least 1, got " + maxBatch);
    }
    this.limitBytes = limitBytes;
    this.maxBatch = maxBatch;
  }

  /**
   * Whether a sequence reserving {@code estimate} bytes could ever be admitted (with none else).
   */
  public boolean fitsAlone(long estimate) {
    return checked(estimate) <= limitBytes;
  }

  /** Whether a sequence reserving {@code estimate} bytes can be admitted now. */
  public boolean fits(long estimate) {
    return admitted < maxBatch && checked(estimate) <= limitBytes - reservedBytes;
  }

  /**
   * Admits a sequence reserving {@code estimate} bytes if it {@link #fits}: reserves the bytes and
   * a slot until {@link #release}.
   *
   * @return whether it was admitted
   */
  public boolean tryAdmit(long estimate) {
    if (!fits(estimate)) {
      return false;
    }
    reservedBytes += estimate;
    admitted++;
    return true;
  }

  /** Retires an admitted sequence that reserved {@code estimate} bytes: its bytes and slot free. */
  public void release(long estimate) {
    checked(estimate);
    if (admitted == 0 || estimate > reservedBytes) {
      throw new IllegalStateException(
          "release of "
              + estimate
              + " bytes with "
              + admitted
              + " sequences holding "
              + reservedBytes
              + " bytes");
    }
    reservedBytes -= estimate;
    admitted--;
  }

  /** Bytes reserved by the admitted sequences. */
  public long reservedBytes() {
    return reservedBytes;
  }

  /** Sequences admitted and not yet released. */
  public int admitted() {
    return admitted;
  }

  public long limitBytes() {
    return limitBytes;
  }

  public int maxBatch() {
    return maxBatch;
  }

  private static long checked(long estimate) {
    if (estimate < 0) {
      throw new IllegalArgumentException("a reservation cannot be negative, got " + estimate);
    }
    return estimate;
  }
}
