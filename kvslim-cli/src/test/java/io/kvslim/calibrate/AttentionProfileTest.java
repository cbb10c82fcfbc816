package io.kvslim.calibrate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.bench.AttentionProfileReport;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AttentionProfileTest {
  static final Path BUNDLED = Path.of("models/pycoder-6m-f16.gguf");

  @Test
  void uniformAttentionGivesTheWindowsShareOfTheTokens() {
    int p = 100;
    float[] probs = new float[p + 1];
    Arrays.fill(probs, 1f / (p + 1));
    double[] s = new double[6];
    AttentionProfile.accumulate(probs, p, s);
    double u = 1.0 / (p + 1);
    assertThat(s[0]).isCloseTo(u, within(1e-6)); // bos
    assertThat(s[1]).isCloseTo(4 * u, within(1e-6)); // sink: positions 0..3
    assertThat(s[2]).isCloseTo(16 * u, within(1e-6)); // near: 85..100
    assertThat(s[3]).isCloseTo(64 * u, within(1e-6)); // local: 37..100
    assertThat(s[4]).isCloseTo((p + 1 - 68) * u, within(1e-6)); // rest: 4..36
    assertThat(s[5]).isCloseTo(50.0, within(1e-4)); // mean of 0..100 tokens back
  }

  @Test
  void oneHotAttentionIsAllSinkOrAllLocal() {
    float[] self = new float[201];
    self[200] = 1f;
    double[] s = new double[6];
    AttentionProfile.accumulate(self, 200, s);
    assertThat(s).containsExactly(0, 0, 1, 1, 0, 0);
    float[] bos = new float[201];
    bos[0] = 1f;
    double[] t = new double[6];
    AttentionProfile.accumulate(bos, 200, t);
    assertThat(t).containsExactly(1, 1, 0, 0, 0, 200);
    float[] edge = new float[201];
    edge[200 - 64] = 1f; // 64 tokens back: just outside the local window
    double[] e = new double[6];
    AttentionProfile.accumulate(edge, 200, e);
    assertThat(e).containsExactly(0, 0, 0, 0, 1, 64);
  }

  @Test
  void profilesEveryHeadOfTheBundledModelDeterministically(@TempDir Path dir) throws Exception {
    try (Model m = Model.load(BUNDLED);
        Engine e = new Engine(m, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      Tokenizer tok = Tokenizer.fromGguf(m.file());
      String code =
          Files.readString(
              Path.of("kvslim-core/src/main/java/io/kvslim/calibrate/AttentionProfile.java"));
      int[] ids = Arrays.copyOf(tok.encode(code, true, false), 300);
      AttentionProfile.Result a = AttentionProfile.run(e, ids, 100, null);
      AttentionProfile.Result b = AttentionProfile.run(e, ids, 100, null);
      assertThat(a.heads()).hasNumberOfRows(m.config().layers());
      assertThat(a.queries()).isEqualTo(200);
      for (int l = 0; l < a.heads().length; l++) {
        assertThat(a.heads()[l]).hasSize(m.config().heads());
        for (int h = 0; h < a.heads()[l].length; h++) {
          AttentionProfile.Head x = a.heads()[l][h];
          assertThat(x).isEqualTo(b.heads()[l][h]);
          // sink, local window and rest split the mass (disjoint from position 68 on)
          assertThat(x.sink() + x.local() + x.rest()).isCloseTo(1.0, within(1e-4));
          assertThat(x.bos()).isBetween(0.0, x.sink() + 1e-9);
          assertThat(x.near()).isBetween(0.0, x.local() + 1e-9);
          assertThat(x.distance()).isBetween(0.0, 299.0);
        }
      }
      String md = AttentionProfileReport.write(dir, "pycoder", "code", a);
      assertThat(md).contains("| 0 | 0 |").contains("Heads: ");
      assertThat(dir.resolve("attention.json")).exists();
      assertThat(dir.resolve("sink.png")).exists();
      assertThatThrownBy(() -> AttentionProfile.run(e, ids, 300, null))
          .hasMessageContaining("starts at position 300");
    }
  }
}
