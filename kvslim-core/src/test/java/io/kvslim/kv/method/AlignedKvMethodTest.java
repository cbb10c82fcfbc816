package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * AlignedKV (METHODS.md Q8) on the bundled model: bytes held are fp16's plus the exponent maxima,
 * bytes read per decode step fall as the thresholds tighten, unreachable thresholds read every bit,
 * and it composes with eviction.
 */
class AlignedKvMethodTest {
  static Model model;
  static Engine engine;

  @BeforeAll
  static void load() {
    model = Model.load(Path.of("models/pycoder-6m-f16.gguf"));
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
  }

  @AfterAll
  static void close() {
    engine.close();
    model.close();
  }

  static int[] tokens(int n) {
    int[] t = new int[n];
    for (int i = 0; i < n; i++) {
      t[i] = 3 + (i * 37) % (model.config().vocabSize() - 3);
    }
    return t;
  }

  record Run(ManagedKvCache cache, AlignedKvMethod.Policy policy) {}

  static Run cache(String spec) {
    MethodCall call = KvSpec.parse(spec).rules().get(0).calls().get(0);
    var c = model.config();
    boolean[] layers = new boolean[c.layers()];
    Arrays.fill(layers, true);
    KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
    for (int l = 0; l < formats.length; l++) {
      formats[l] = call.method().format(call, l, c.layers());
    }
    var policy =
        (AlignedKvMethod.Policy)
            call.method()
                .policy(
                    call, new PolicyContext(layers, c.kvHeads(), c.headDim(), 4.0 * c.headDim()));
    return new Run(
        new ManagedKvCache(new BlockPool(), c.kvHeads(), c.headDim(), formats, List.of(policy)),
        policy);
  }

  @Test
  void bytesReadFallAsThresholdsTightenWhileBytesHeldStayFp16s() {
    int n = 150;
    int steps = 10;
    int vocab = model.config().vocabSize();
    int[] toks = tokens(n + steps);
    String[] specs = {"alignedkv:t1=64,t2=64,t3=64", "alignedkv", "alignedkv:t1=2,t2=4,t3=8"};
    double[] read = new double[specs.length];
    float[][] logits = new float[specs.length][vocab];
    long held = -1;
    for (int i = 0; i < specs.length; i++) {
      Run r = cache(specs[i]);
      try (ManagedKvCache c = r.cache()) {
        engine.prefill(c, toks, 0, n, 0, false, logits[i]);
        for (int s = 0; s < steps; s++) {
          engine.decode(c, toks[n + s], n + s, logits[i]);
        }
        assertThat(r.policy().decodeSteps()).isEqualTo(steps);
        read[i] = r.policy().bytesReadPerStep();
        var cfg = model.config();
        int tokens = n + steps;
        int blocks = (tokens + 31) / 32;
        // per layer and KV head: fp16 keys and values, plus d + 32 bytes of maxima a block each
        long planes = 2L * (2L * 32 * cfg.headDim() + cfg.headDim() + 32) * blocks;
        assertThat(c.bytes()).isGreaterThanOrEqualTo(planes * cfg.layers() * cfg.kvHeads());
        held = held < 0 ? c.bytes() : held;
        assertThat(c.bytes()).isEqualTo(held);
        if (i == 0) {
          // every element read at 16 bits: the full read plus each block's maxima
          assertThat(read[0]).isGreaterThan(r.policy().fullBytesPerStep());
        } else {
          assertThat(read[i]).isLessThan(r.policy().fullBytesPerStep());
        }
      }
    }
    assertThat(read[1]).isLessThan(read[0]);
    assertThat(read[2]).isLessThan(read[1]);
    // the paper's thresholds keep the step's top choice
    assertThat(QaqMethodTest.argmax(logits[1])).isEqualTo(QaqMethodTest.argmax(logits[0]));
    assertThat(QaqMethodTest.kld(logits[0], logits[1])).isLessThan(0.01);
  }

  @Test
  void composesWithEviction() {
    int n = 300;
    int[] toks = tokens(n + 5);
    float[] lg = new float[model.config().vocabSize()];
    try (ManagedKvCache c =
        KvSpecs.caches(
                KvSpec.parse("snapkv:budget=100,window=32 + alignedkv"),
                new BlockPool(),
                model.config())
            .create()) {
      engine.prefill(c, toks, 0, n, 0, false, lg);
      for (int s = 0; s < 5; s++) {
        engine.decode(c, toks[n + s], n + s, lg);
      }
      for (int l = 0; l < c.layerCount(); l++) {
        assertThat(c.paged(l).size(0)).isEqualTo(105);
      }
      for (float v : lg) {
        assertThat(Float.isFinite(v)).isTrue();
      }
    }
  }

  @Test
  void badKnobsAreOneSentence() {
    assertThatThrownBy(() -> KvSpec.parse("alignedkv:t1=9,t2=8"))
        .isInstanceOf(KvSpecException.class)
        .hasMessage("alignedkv thresholds must satisfy t1 <= t2 <= t3, got 9, 8, 11");
  }
}
