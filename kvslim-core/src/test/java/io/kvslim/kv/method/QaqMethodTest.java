package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.format.QaqFormat;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.model.Model;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * QAQ (METHODS.md Q6): the error bounds and bit widths, and on the bundled model which tokens are
 * quantized when, the bytes, and the composition with SnapKV's eviction.
 */
class QaqMethodTest {
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

  static QaqMethod.Policy policy(String spec, int dim) {
    MethodCall c = KvSpec.parse(spec).rules().get(0).calls().get(0);
    return (QaqMethod.Policy)
        c.method().policy(c, new PolicyContext(new boolean[] {true}, 1, dim, 4.0 * dim));
  }

  @Test
  void boundsAndBitWidthsFollowThePaperAndStayInRange() {
    QaqMethod.Policy p = policy("qaq:tk=1000,tv=4,bmin=2,bmax=8", 64);
    // values: ε = √T_v / L / a
    assertThat(p.valueError(0.25f, 100)).isCloseTo(2.0 / 100 / 0.25, within(1e-12));
    // keys: ε = √(T_k/d) / L / (q_max · max(a(1−a), a·a_other))
    double sens = Math.max(0.25 * 0.75, 0.25 * 0.5);
    assertThat(p.keyError(0.25f, 0.5f, 2f, 100))
        .isCloseTo(Math.sqrt(1000.0 / 64) / 100 / (2 * sens), within(1e-9));
    sens = Math.max(0.1 * 0.9, 0.1 * 0.95);
    assertThat(p.keyError(0.1f, 0.95f, 2f, 100))
        .isCloseTo(Math.sqrt(1000.0 / 64) / 100 / (2 * sens), within(1e-6));
    // ⌈log2(r/(2ε) + 1)⌉ clamped: r/(2ε) = 3 → 2, 255 → 8, 256 → 9 → 8, 0 → bmin
    assertThat(p.bits(1f, 1.0 / 6)).isEqualTo(2);
    assertThat(p.bits(1f, 1.0 / 14)).isEqualTo(3);
    assertThat(p.bits(1f, 1.0 / 510)).isEqualTo(8);
    assertThat(p.bits(1f, 1.0 / 512)).isEqualTo(8);
    assertThat(p.bits(0f, 1e-3)).isEqualTo(2);
    assertThat(p.bits(1f, Double.POSITIVE_INFINITY)).isEqualTo(2);
    // value bits never fall as a token's attention grows
    int last = 0;
    for (int i = 0; i <= 1000; i++) {
      float a = i / 1000f;
      int b = p.bits(3f, p.valueError(a, 512));
      assertThat(b).isBetween(2, 8).isGreaterThanOrEqualTo(last);
      last = b;
    }
    assertThat(last).isEqualTo(8);
  }

  @Test
  void badKnobsAreOneSentence() {
    assertThatThrownBy(() -> KvSpec.parse("qaq:bmin=5,bmax=4"))
        .isInstanceOf(KvSpecException.class)
        .hasMessage("qaq:bmin=5 must not exceed bmax=4");
    for (String spec : new String[] {"qaq:bmax=9", "qaq:n=0", "qaq:tk=x", "qaq:outliers=0.6"}) {
      assertThatThrownBy(() -> KvSpec.parse(spec))
          .isInstanceOf(KvSpecException.class)
          .hasMessageContaining("qaq")
          .hasMessageNotContaining("\n");
    }
  }

  static int[] tokens(int n) {
    int[] t = new int[n];
    for (int i = 0; i < n; i++) {
      t[i] = 3 + (i * 37) % (model.config().vocabSize() - 3);
    }
    return t;
  }

  static ManagedKvCache cache(String spec) {
    return KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create();
  }

  /** Every token at least n − 1 behind the newest query sits in a QAQ block, newer ones in f16. */
  static void assertJudgedTokensAreQuantized(ManagedKvCache c, int newest, int window) {
    for (int l = 0; l < c.layerCount(); l++) {
      for (int g = 0; g < c.paged(l).kvHeads(); g++) {
        HeadStore h = c.paged(l).head(g);
        long bytes = 0;
        for (int i = 0; i < h.blocks().size(); i++) {
          KvBlock b = h.blocks().get(i);
          bytes += b.bytes();
          boolean judged = b.maxPosition() <= newest - (window - 1);
          boolean closed = i < h.blocks().size() - 1 || b.filled() == b.capacity();
          if (judged && closed) {
            assertThat(b.keyFormat()).as("layer %d block %d", l, i).isInstanceOf(QaqFormat.class);
            assertThat(b.valueFormat()).isInstanceOf(QaqFormat.class);
          } else {
            assertThat(b.keyFormat()).as("layer %d block %d", l, i).isEqualTo(KvFormats.F16);
          }
        }
        assertThat(h.bytes()).isEqualTo(bytes);
      }
    }
  }

  @Test
  void blocksAreQuantizedOnceTheirTokensLeaveTheWindowAndLogitsStayClose() {
    int n = 200;
    int[] toks = tokens(n + 40);
    int vocab = model.config().vocabSize();
    float[] lf = new float[vocab];
    float[] lq = new float[vocab];
    try (ManagedKvCache full = cache("f16");
        ManagedKvCache q = cache("qaq")) {
      engine.prefill(full, toks, 0, n, 0, false, lf);
      engine.prefill(q, toks, 0, n, 0, false, lq);
      assertThat(lq).isEqualTo(lf); // the prompt attends over f16 keys; it is quantized after
      assertJudgedTokensAreQuantized(q, n - 1, 5);
      // blocks 0..5 (positions 0..191) are judged, 192..199 wait in f16
      assertThat(q.paged(0).head(0).blocks().get(5).keyFormat()).isInstanceOf(QaqFormat.class);
      assertThat(q.bytes()).isLessThan(full.bytes() / 2);
      double sum = 0;
      int agree = 0;
      for (int i = 0; i < 40; i++) {
        engine.decode(full, toks[n + i], n + i, lf);
        engine.decode(q, toks[n + i], n + i, lq);
        assertJudgedTokensAreQuantized(q, n + i, 5);
        sum += kld(lf, lq);
        agree += argmax(lf) == argmax(lq) ? 1 : 0;
      }
      // position 227 judged 192..223: after it, 7 blocks of every head are QAQ
      assertThat(q.paged(3).head(0).blocks().get(6).keyFormat()).isInstanceOf(QaqFormat.class);
      // on this token sequence (not text) the f16 cache and QAQ's still mostly agree
      assertThat(sum / 40).as("mean KLD").isLessThan(0.05);
      assertThat(agree).as("top-1 agreements of 40").isGreaterThanOrEqualTo(30);
    }
  }

  @Test
  void composedWithSnapKvItKeepsSnapKvsTokensInFewerBytes() {
    int n = 300;
    int[] toks = tokens(n + 20);
    float[] la = new float[model.config().vocabSize()];
    float[] lb = new float[la.length];
    String snap = "snapkv:budget=100,window=32";
    try (ManagedKvCache a = cache(snap);
        ManagedKvCache b = cache(snap + " + qaq:rformat=f32")) {
      engine.prefill(a, toks, 0, n, 0, false, la);
      engine.prefill(b, toks, 0, n, 0, false, lb);
      for (int i = 0; i < 20; i++) {
        engine.decode(a, toks[n + i], n + i, la);
        engine.decode(b, toks[n + i], n + i, lb);
      }
      boolean someQaq = false;
      for (int l = 0; l < a.layerCount(); l++) {
        for (int g = 0; g < a.paged(l).kvHeads(); g++) {
          assertThat(b.paged(l).positions(g)).isEqualTo(a.paged(l).positions(g));
          for (KvBlock blk : b.paged(l).head(g).blocks()) {
            someQaq |= blk.keyFormat() instanceof QaqFormat;
          }
        }
      }
      assertThat(someQaq).isTrue();
      assertThat(b.bytes()).isLessThan(a.bytes() / 2);
    }
  }

  static int argmax(float[] x) {
    int m = 0;
    for (int i = 1; i < x.length; i++) {
      m = x[i] > x[m] ? i : m;
    }
    return m;
  }

  static double kld(float[] p, float[] q) {
    double mp = p[argmax(p)];
    double mq = q[argmax(q)];
    double zp = 0;
    double zq = 0;
    for (int i = 0; i < p.length; i++) {
      zp += Math.exp(p[i] - mp);
      zq += Math.exp(q[i] - mq);
    }
    double k = 0;
    for (int i = 0; i < p.length; i++) {
      double lp = p[i] - mp - Math.log(zp);
      double lq = q[i] - mq - Math.log(zq);
      k += Math.exp(lp) * (lp - lq);
    }
    return k;
  }
}
