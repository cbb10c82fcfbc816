package io.kvslim.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvCacheFactory;
import io.kvslim.kv.DenseLayerKv;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.LayerKv;
import io.kvslim.model.Model;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;

/**
 * DistAttention (METHODS.md H6) on in-process Hazelcast members joined over TCP on loopback: the
 * logits of a prefill and of decode steps equal the single-node dense cache's (bit for bit with one
 * member, within 1e-5 with two and three), and a member that stops mid-sequence fails the next step
 * with one clear sentence, promptly.
 */
class DistAttentionTest {
  private static final int PROMPT = 45;
  private static final int STEPS = 12;
  private static final int BLOCK = 8; // small blocks: the prompt spreads over every member

  @Test
  void oneTwoAndThreeMembersGiveTheSingleNodeLogits() throws Exception {
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"))) {
      float[][] reference = run(model, DistAttentionTest::dense);
      List<KvCluster> members = new ArrayList<>();
      String name = "kvslim-test-" + UUID.randomUUID();
      List<InetSocketAddress> seeds = List.of(new InetSocketAddress("127.0.0.1", freePort()));
      try {
        for (int n = 1; n <= 3; n++) {
          members.add(KvCluster.join(name, seeds, Duration.ofSeconds(20)));
          KvCluster coordinator = members.get(0);
          assertThat(coordinator.members()).hasSize(n);
          float[][] dist = run(model, coordinator.cacheFactory(BLOCK));
          for (int s = 0; s < reference.length; s++) {
            if (n == 1) {
              assertThat(dist[s]).as("step %d, one member: bit for bit", s).isEqualTo(reference[s]);
            } else {
              assertThat(maxAbsDiff(dist[s], reference[s]))
                  .as("step %d, %d members", s, n)
                  .isLessThanOrEqualTo(1e-5f);
            }
          }
          for (KvCluster m : members) {
            assertThat(m.localSequences()).as("blocks freed on close").isZero();
          }
        }
      } finally {
        members.forEach(KvCluster::close);
      }
    }
  }

  @Test
  void aMemberThatStopsMidSequenceFailsTheNextStepClearly() throws Exception {
    assertFailure(m -> m.instance().shutdown(), "left the cluster");
  }

  @Test
  void aMemberThatIsKilledMidSequenceFailsTheNextStepClearly() throws Exception {
    assertFailure(m -> m.instance().getLifecycleService().terminate(), "left the cluster");
  }

  @Test
  void aMemberThatLostItsBlocksFailsTheNextStepInsteadOfAnsweringFromFewer() throws Exception {
    assertFailure(m -> m.blocks().dropAll(), "lost KV blocks");
  }

  private static void assertFailure(Consumer<KvCluster> breakMember, String why) throws Exception {
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"))) {
      String name = "kvslim-test-" + UUID.randomUUID();
      List<InetSocketAddress> seeds = List.of(new InetSocketAddress("127.0.0.1", freePort()));
      List<KvCluster> members = new ArrayList<>();
      try {
        for (int i = 0; i < 3; i++) {
          members.add(KvCluster.join(name, seeds, Duration.ofSeconds(5)));
        }
        KvCluster coordinator = members.get(0);
        try (Engine engine = new Engine(model, 1, coordinator.cacheFactory(BLOCK));
            KvCache cache = engine.newCache()) {
          int vocab = model.config().vocabSize();
          float[] logits = new float[vocab];
          engine.prefill(cache, tokens(vocab), 0, PROMPT, 0, false, logits);
          engine.decode(cache, 5, PROMPT, logits);
          breakMember.accept(members.get(2));
          assertTimeoutPreemptively(
              Duration.ofSeconds(30),
              () ->
                  assertThatThrownBy(() -> engine.decode(cache, 6, PROMPT + 1, logits))
                      .isInstanceOf(ClusterUnavailableException.class)
                      .hasMessageStartingWith("cluster member 127.0.0.1:")
                      .hasMessageContaining(why)
                      .hasMessageEndingWith("so the sequence cannot go on"));
          assertThatThrownBy(() -> engine.decode(cache, 6, PROMPT + 1, logits))
              .isInstanceOf(ClusterUnavailableException.class)
              .hasMessageContaining(why);
        }
      } finally {
        members.forEach(KvCluster::close);
      }
    }
  }

  /** Logits of the prompt's last row, then of each greedy decode step. */
  private static float[][] run(Model model, KvCacheFactory caches) {
    int vocab = model.config().vocabSize();
    float[][] out = new float[STEPS + 1][vocab];
    try (Engine engine = new Engine(model, 1, caches);
        KvCache cache = engine.newCache()) {
      engine.prefill(cache, tokens(vocab), 0, PROMPT, 0, false, out[0]);
      for (int s = 0; s < STEPS; s++) {
        engine.decode(cache, argmax(out[s]), PROMPT + s, out[s + 1]);
      }
    }
    return out;
  }

  private static int[] tokens(int vocab) {
    int[] t = new int[PROMPT];
    t[0] = 1;
    for (int i = 1; i < PROMPT; i++) {
      t[i] = 3 + (i * 37) % (vocab - 3);
    }
    return t;
  }

  private static KvCache dense(io.kvslim.model.ModelConfig c) {
    LayerKv[] layers = new LayerKv[c.layers()];
    for (int l = 0; l < layers.length; l++) {
      layers[l] = new DenseLayerKv(c.kvHeads(), c.headDim());
    }
    return new KvCache() {
      @Override
      public int layerCount() {
        return layers.length;
      }

      @Override
      public LayerKv layer(int layer) {
        return layers[layer];
      }

      @Override
      public long bytes() {
        long b = 0;
        for (LayerKv l : layers) {
          b += l.bytes();
        }
        return b;
      }

      @Override
      public void close() {}
    };
  }

  private static int argmax(float[] x) {
    int best = 0;
    for (int i = 1; i < x.length; i++) {
      if (x[i] > x[best]) {
        best = i;
      }
    }
    return best;
  }

  private static float maxAbsDiff(float[] a, float[] b) {
    float m = 0;
    for (int i = 0; i < a.length; i++) {
      m = Math.max(m, Math.abs(a[i] - b[i]));
    }
    return m;
  }

  static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }
}
