package io.kvslim.cluster;

import com.hazelcast.cluster.Member;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.LayerKv;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The KV cache of one sequence whose blocks live on the members of a {@link KvCluster}
 * (DistAttention, METHODS.md H6): one {@link DistributedLayerKv} per layer, all placing block
 * {@code b} on member {@code b mod N} of the members present when the cache was made. The engine
 * runs on it unchanged. Closing it frees the blocks on every member still there.
 */
public final class DistributedKvCache implements KvCache {
  private final KvCluster cluster;
  private final List<Member> members;
  private final String seq = UUID.randomUUID().toString();
  private final DistributedLayerKv[] layers;

  DistributedKvCache(
      KvCluster cluster,
      List<Member> members,
      int blockTokens,
      int layerCount,
      int kvHeads,
      int headDim) {
    if (members.isEmpty()) {
      throw new ClusterUnavailableException("the cluster has no members to hold KV blocks");
    }
    this.cluster = cluster;
    this.members = List.copyOf(members);
    this.layers = new DistributedLayerKv[layerCount];
    for (int l = 0; l < layerCount; l++) {
      layers[l] =
          new DistributedLayerKv(cluster, this.members, seq, l, blockTokens, kvHeads, headDim);
    }
  }

  /** The members holding this sequence's blocks, in placement order. */
  public List<Member> members() {
    return members;
  }

  @Override
  public int layerCount() {
    return layers.length;
  }

  @Override
  public LayerKv layer(int layer) {
    return layers[layer];
  }

  /** Bytes of F32 rows (keys, values, positions) placed on the members, all layers. */
  @Override
  public long bytes() {
    long total = 0;
    for (DistributedLayerKv l : layers) {
      total += l.bytes();
    }
    return total;
  }

  /**
   * Frees the blocks on every member and waits for them (at most the cluster's step timeout in
   * all); a member that left holds nothing any more.
   */
  @Override
  public void close() {
    AttendTask.Drop drop = new AttendTask.Drop(seq);
    List<Future<?>> pending = new ArrayList<>();
    for (Member m : members) {
      try {
        pending.add(cluster.executor().submitToMember(drop, m));
      } catch (RuntimeException e) {
        // gone: nothing to free there
      }
    }
    long deadline = System.nanoTime() + cluster.stepTimeout().toNanos();
    for (Future<?> f : pending) {
      try {
        f.get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
      } catch (ExecutionException | TimeoutException e) {
        // gone or slow: its blocks go with it
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      }
    }
  }
}
