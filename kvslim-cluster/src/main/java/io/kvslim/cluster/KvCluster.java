package io.kvslim.cluster;

import com.hazelcast.cluster.Member;
import com.hazelcast.config.Config;
import com.hazelcast.config.JoinConfig;
import com.hazelcast.config.NetworkConfig;
import com.hazelcast.core.Hazelcast;
import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.core.IExecutorService;
import io.kvslim.engine.KvCacheFactory;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * An embedded Hazelcast member of a kvslim cluster (METHODS.md H6, DistAttention from
 * "Infinite-LLM", arXiv 2401.02669, in its CPU form: members instead of GPU instances): it holds KV
 * blocks that other members place on it and computes partial attention over them, and, as a
 * coordinator, makes caches whose blocks spread over every member ({@link #cacheFactory}).
 *
 * <p>Members join by TCP/IP on the listed addresses (multicast and cloud discovery off); a member
 * binds the first listed address of its own machine, or the next free port after it. Heartbeats are
 * short, so a member that dies is noticed within seconds; a step waits at most {@link #stepTimeout}
 * for the members' answers.
 */
public final class KvCluster implements AutoCloseable {
  /** The cluster name members must share. */
  public static final String DEFAULT_NAME = "kvslim";

  static final String EXECUTOR = "kvslim-dist-attention";

  private final HazelcastInstance instance;
  private final MemberBlocks blocks;
  private final Duration stepTimeout;

  private KvCluster(HazelcastInstance instance, MemberBlocks blocks, Duration stepTimeout) {
    this.instance = instance;
    this.blocks = blocks;
    this.stepTimeout = stepTimeout;
  }

  /**
   * Starts a member that joins the members at {@code addresses}, or forms the cluster when none
   * answers. It binds the first address of this machine among them (ports counted up from it when
   * taken, at most {@code addresses.size() + 8} tries).
   *
   * @throws IllegalArgumentException if no address is this machine's
   */
  public static KvCluster join(List<InetSocketAddress> addresses, Duration stepTimeout) {
    return join(DEFAULT_NAME, addresses, stepTimeout);
  }

  /** As {@link #join(List, Duration)} in the cluster named {@code name}. */
  public static KvCluster join(
      String name, List<InetSocketAddress> addresses, Duration stepTimeout) {
    InetSocketAddress self = ClusterAddresses.local(addresses);
    Logger.getLogger("com.hazelcast").setLevel(Level.WARNING);
    Config c = new Config();
    c.setClusterName(name);
    c.setProperty("hazelcast.logging.type", "jdk");
    c.setProperty("hazelcast.phone.home.enabled", "false");
    c.setProperty("hazelcast.shutdownhook.enabled", "false");
    c.setProperty("hazelcast.wait.seconds.before.join", "0");
    c.setProperty("hazelcast.max.wait.seconds.before.join", "1");
    c.setProperty("hazelcast.heartbeat.interval.seconds", "1");
    c.setProperty("hazelcast.max.no.heartbeat.seconds", "5");
    c.setProperty("hazelcast.tcp.join.port.try.count", String.valueOf(addresses.size() + 8));
    c.setProperty("hazelcast.local.localAddress", self.getAddress().getHostAddress());
    NetworkConfig net = c.getNetworkConfig();
    net.setPort(self.getPort()).setPortAutoIncrement(true).setPortCount(addresses.size() + 8);
    JoinConfig join = net.getJoin();
    join.getMulticastConfig().setEnabled(false);
    join.getAutoDetectionConfig().setEnabled(false);
    join.getTcpIpConfig().setEnabled(true).setConnectionTimeoutSeconds(2);
    for (InetSocketAddress a : addresses) {
      join.getTcpIpConfig().addMember(a.getAddress().getHostAddress() + ":" + a.getPort());
    }
    c.getExecutorConfig(EXECUTOR)
        .setPoolSize(Math.max(2, Runtime.getRuntime().availableProcessors()));
    MemberBlocks blocks = new MemberBlocks();
    ConcurrentHashMap<String, Object> context = new ConcurrentHashMap<>();
    context.put(MemberBlocks.KEY, blocks);
    c.setUserContext(context);
    return new KvCluster(Hazelcast.newHazelcastInstance(c), blocks, stepTimeout);
  }

  /** The Hazelcast member (tests stop it to simulate a failure). */
  public HazelcastInstance instance() {
    return instance;
  }

  /** The members now, oldest first. */
  public List<Member> members() {
    return List.copyOf(instance.getCluster().getMembers());
  }

  /** This member's address as host:port. */
  public String address() {
    var a = instance.getCluster().getLocalMember().getAddress();
    return a.getHost() + ":" + a.getPort();
  }

  /** How long a step waits for the members' partial attention. */
  public Duration stepTimeout() {
    return stepTimeout;
  }

  IExecutorService executor() {
    return instance.getExecutorService(EXECUTOR);
  }

  MemberBlocks blocks() {
    return blocks;
  }

  /** Sequences whose blocks this member holds (tests). */
  public int localSequences() {
    return blocks.sequenceCount();
  }

  /**
   * Caches whose blocks of {@code blockTokens} tokens go round-robin over the members present when
   * each cache is made (block {@code b} of every layer and KV head on member {@code b mod N}).
   */
  public KvCacheFactory cacheFactory(int blockTokens) {
    if (blockTokens < 1) {
      throw new IllegalArgumentException("block size must be >= 1 token, got " + blockTokens);
    }
    return config ->
        new DistributedKvCache(
            this, members(), blockTokens, config.layers(), config.kvHeads(), config.headDim());
  }

  /** Leaves the cluster; the blocks this member held are gone. */
  @Override
  public void close() {
    if (instance.getLifecycleService().isRunning()) {
      instance.shutdown();
    }
  }
}
