package io.kvslim.cli;

import io.kvslim.cluster.ClusterAddresses;
import io.kvslim.cluster.KvCluster;
import io.kvslim.kv.method.KvSpec;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.List;
import picocli.CommandLine.Option;

/**
 * {@code --cluster HOST:PORT,...}: DistAttention (METHODS.md H6) over a Hazelcast cluster; this
 * process joins the members listed, or forms the cluster with them, and every sequence's KV blocks
 * spread over the members.
 */
public final class ClusterOptions {
  @Option(
      names = "--cluster",
      paramLabel = "HOST:PORT,...",
      description =
          "Join (or form) a kvslim cluster with these members, one of them this machine's address"
              + " (its port, or the next free one, is bound); every sequence's KV blocks are spread"
              + " over the members, which compute attention next to them (DistAttention). Needs"
              + " --kv full.")
  String cluster;

  @Option(
      names = "--cluster-block",
      paramLabel = "TOKENS",
      description = "Tokens per KV block placed on one member (default ${DEFAULT-VALUE}).")
  int blockTokens = 32;

  @Option(
      names = "--cluster-timeout",
      paramLabel = "SECONDS",
      description =
          "Longest wait for the members' attention in one step before the request fails"
              + " (default ${DEFAULT-VALUE}).")
  int timeoutSeconds = 10;

  private List<InetSocketAddress> addresses;

  /** Whether {@code --cluster} was given. */
  boolean enabled() {
    return cluster != null;
  }

  /** Checks the options (a bad address fails here, in one sentence, before any model loads). */
  void check(KvOptions kv) {
    if (!enabled()) {
      return;
    }
    addresses = ClusterAddresses.parse(cluster);
    ClusterAddresses.local(addresses);
    if (blockTokens < 1) {
      throw new IllegalArgumentException("--cluster-block must be >= 1 token, got " + blockTokens);
    }
    if (timeoutSeconds < 1) {
      throw new IllegalArgumentException(
          "--cluster-timeout must be >= 1 second, got " + timeoutSeconds);
    }
    if (!kv.parsed().text().equals(KvSpec.FULL.text())) {
      throw new IllegalArgumentException(
          "--cluster keeps full F32 keys and values on the members, so --kv must be 'full', got '"
              + kv.spec()
              + "'");
    }
  }

  /** Starts this process's member; the caller closes it. */
  KvCluster join(KvOptions kv) {
    check(kv);
    KvCluster c = KvCluster.join(addresses, Duration.ofSeconds(timeoutSeconds));
    System.err.printf(
        "kvslim: cluster member %s, %d member(s), KV blocks of %d tokens%n",
        c.address(), c.members().size(), blockTokens);
    return c;
  }
}
