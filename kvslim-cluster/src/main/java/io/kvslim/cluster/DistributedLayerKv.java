package io.kvslim.cluster;

import com.hazelcast.cluster.Member;
import com.hazelcast.core.HazelcastInstanceNotActiveException;
import com.hazelcast.core.MemberLeftException;
import com.hazelcast.spi.exception.TargetNotMemberException;
import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.LayerKv;
import io.kvslim.kv.attention.AttentionKernels;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * One layer of a {@link DistributedKvCache}. Token {@code t} belongs to block {@code t / B}, which
 * lives on member {@code (t / B) mod N}. Appended rows wait here until the next attention call,
 * which sends each member its new rows and the queries in one task ({@link AttendTask}); every
 * member computes the partial softmax over the blocks it holds, and this coordinator merges them
 * exactly (METHODS.md M11): {@code M = max m_j}, {@code L = Σ e^{m_j − M} l_j}, {@code out = Σ
 * e^{m_j − M} o_j / L}. With one member the merge is the identity and the result is {@link
 * io.kvslim.kv.DenseLayerKv}'s bit for bit.
 *
 * <p>A member that left, lost its rows or did not answer within the cluster's step timeout fails
 * the call with a {@link ClusterUnavailableException}; the layer then refuses every later call.
 */
final class DistributedLayerKv implements LayerKv {
  private final KvCluster cluster;
  private final List<Member> members;
  private final String seq;
  private final int layer;
  private final int blockTokens;
  private final int kvHeads;
  private final int headDim;
  private final int[] held; // tokens each member holds (confirmed)
  private final Pending[] pending; // rows not yet sent, per member
  private int count;
  private String failure;

  DistributedLayerKv(
      KvCluster cluster,
      List<Member> members,
      String seq,
      int layer,
      int blockTokens,
      int kvHeads,
      int headDim) {
    this.cluster = cluster;
    this.members = members;
    this.seq = seq;
    this.layer = layer;
    this.blockTokens = blockTokens;
    this.kvHeads = kvHeads;
    this.headDim = headDim;
    this.held = new int[members.size()];
    this.pending = new Pending[members.size()];
    for (int j = 0; j < pending.length; j++) {
      pending[j] = new Pending(kvHeads * headDim);
    }
  }

  @Override
  public int kvHeads() {
    return kvHeads;
  }

  @Override
  public int headDim() {
    return headDim;
  }

  @Override
  public void append(int n, int[] positions, float[] keys, float[] values) {
    checkUsable();
    int row = kvHeads * headDim;
    for (int t = 0; t < n; t++) {
      int member = (int) (((long) (count + t) / blockTokens) % members.size());
      pending[member].add(positions[t], keys, values, t * row);
    }
    count += n;
  }

  @Override
  public void attend(
      int n,
      int[] positions,
      int heads,
      float[] queries,
      float scale,
      float[] out,
      AttentionObserver observer) {
    checkUsable();
    if (observer != null) {
      throw new UnsupportedOperationException(
          "DistAttention does not return attention weights, so it runs without eviction policies");
    }
    if (heads % kvHeads != 0) {
      throw new IllegalArgumentException(
          heads + " query heads do not share " + kvHeads + " KV heads");
    }
    float[][] parts = partials(n, positions, heads, queries, scale);
    merge(n, heads, parts, out);
  }

  /** Sends each member its new rows and the queries; waits for every partial, or fails. */
  private float[][] partials(int n, int[] positions, int heads, float[] queries, float scale) {
    int[] qPos = Arrays.copyOf(positions, n);
    float[] q = Arrays.copyOf(queries, n * heads * headDim);
    long deadline = System.nanoTime() + cluster.stepTimeout().toNanos();
    @SuppressWarnings("unchecked")
    Future<float[]>[] futures = new Future[members.size()];
    float[][] parts = new float[members.size()][];
    int j = 0;
    try {
      var present = cluster.instance().getCluster().getMembers();
      for (; j < futures.length; j++) {
        Member m = members.get(j);
        if (!present.contains(m)) {
          throw fail(m, "left the cluster", null);
        }
        Pending p = pending[j];
        AttendTask task =
            new AttendTask(
                seq,
                layer,
                kvHeads,
                headDim,
                held[j],
                p.positions(),
                p.keys(),
                p.values(),
                qPos,
                heads,
                q,
                scale);
        futures[j] = cluster.executor().submitToMember(task, m);
      }
      for (j = 0; j < futures.length; j++) {
        long left = Math.max(0, deadline - System.nanoTime());
        parts[j] = futures[j].get(left, TimeUnit.NANOSECONDS);
      }
    } catch (TimeoutException e) {
      throw fail(
          members.get(j), "did not answer within " + cluster.stepTimeout().toMillis() + " ms", e);
    } catch (ExecutionException e) {
      Throwable cause = e.getCause() == null ? e : e.getCause();
      throw fail(members.get(j), reason(members.get(j), cause), cause);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw fail(members.get(j), "was being waited for when the thread was interrupted", e);
    } catch (ClusterUnavailableException e) {
      throw e;
    } catch (RuntimeException e) { // the local member stopped, or submitting failed
      Member m = members.get(Math.min(j, members.size() - 1));
      throw fail(m, reason(m, e), e);
    } finally {
      if (failure != null) {
        for (Future<float[]> f : futures) {
          if (f != null) {
            f.cancel(true);
          }
        }
      }
    }
    for (j = 0; j < pending.length; j++) {
      held[j] += pending[j].size;
      pending[j].clear();
    }
    return parts;
  }

  /**
   * Why a member's task failed: it left (its exception, anywhere in the chain, or the member list
   * says so), lost rows, or something else.
   */
  private String reason(Member m, Throwable failure) {
    for (Throwable c = failure; c != null; c = c.getCause()) {
      if (c instanceof MemberLeftException
          || c instanceof TargetNotMemberException
          || c instanceof HazelcastInstanceNotActiveException) {
        return "left the cluster";
      }
      if (c instanceof IllegalStateException) {
        return "lost KV blocks (" + c.getMessage() + ")";
      }
    }
    try {
      if (!cluster.instance().getCluster().getMembers().contains(m)) {
        return "left the cluster";
      }
    } catch (RuntimeException e) {
      return "is unreachable, as this node left the cluster";
    }
    return "failed: " + failure;
  }

  private ClusterUnavailableException fail(Member m, String why, Throwable cause) {
    failure =
        "cluster member "
            + m.getAddress().getHost()
            + ":"
            + m.getAddress().getPort()
            + " holding KV blocks of this sequence "
            + why
            + ", so the sequence cannot go on";
    return new ClusterUnavailableException(failure, cause);
  }

  private void checkUsable() {
    if (failure != null) {
      throw new ClusterUnavailableException(failure);
    }
  }

  /** The log-sum-exp merge of the members' partials (stride {@code headDim + 2}). */
  private void merge(int n, int heads, float[][] parts, float[] out) {
    int stride = headDim + 2;
    float[] acc = new float[headDim];
    for (int r = 0; r < n * heads; r++) {
      int o = r * stride;
      float max = Float.NEGATIVE_INFINITY;
      for (float[] p : parts) {
        max = Math.max(max, p[o]);
      }
      Arrays.fill(acc, 0f);
      float sum = 0f;
      if (max != Float.NEGATIVE_INFINITY) {
        for (float[] p : parts) {
          if (p[o] == Float.NEGATIVE_INFINITY) {
            continue;
          }
          float f = AttentionKernels.exp(p[o] - max);
          sum = Math.fma(f, p[o + 1], sum);
          AttentionKernels.addWeighted(f, p, o + 2, acc, 0, headDim);
        }
      }
      float inverse = sum == 0f ? 0f : 1f / sum;
      AttentionKernels.scale(acc, 0, inverse, out, r * headDim, headDim);
    }
  }

  @Override
  public int size(int kvHead) {
    return count;
  }

  /** Bytes of F32 rows placed on the members: keys, values and positions of every token. */
  @Override
  public long bytes() {
    return 4L * count * (2L * kvHeads * headDim + 1);
  }

  @Override
  public long bytes(int kvHead) {
    return 4L * count * (2L * headDim) + 4L * count / kvHeads;
  }

  /** Rows waiting to be sent to one member: positions and {@code row} floats of keys and values. */
  private static final class Pending {
    private final int row;
    private int[] positions = new int[4];
    private float[] keys;
    private float[] values;
    int size;

    Pending(int row) {
      this.row = row;
      this.keys = new float[4 * row];
      this.values = new float[4 * row];
    }

    void add(int position, float[] k, float[] v, int off) {
      if (size == positions.length) {
        positions = Arrays.copyOf(positions, 2 * size);
        keys = Arrays.copyOf(keys, 2 * size * row);
        values = Arrays.copyOf(values, 2 * size * row);
      }
      positions[size] = position;
      System.arraycopy(k, off, keys, size * row, row);
      System.arraycopy(v, off, values, size * row, row);
      size++;
    }

    int[] positions() {
      return Arrays.copyOf(positions, size);
    }

    float[] keys() {
      return Arrays.copyOf(keys, size * row);
    }

    float[] values() {
      return Arrays.copyOf(values, size * row);
    }

    void clear() {
      size = 0;
    }
  }
}
