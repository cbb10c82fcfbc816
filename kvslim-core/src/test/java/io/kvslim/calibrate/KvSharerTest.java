package io.kvslim.calibrate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.method.KvSpecException;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** KVSharer: the search (METHODS.md S3 checks), the layer map, and really shared storage. */
class KvSharerTest {

  @Test
  void theMapResolvesChainsAsTheNotebooksReMap() {
    // 3 reads 1, then 1 reads 0: 3 must read 0 (no chains)
    int[] map = KvSharerSearch.map(new int[][] {{3, 1}, {1, 0}, {5, 3}}, 3, 6);
    assertThat(map).containsExactly(0, 0, 2, 0, 4, 0);
    for (int l = 0; l < map.length; l++) {
      assertThat(map[map[l]]).as("no chain at %d", l).isEqualTo(map[l]);
    }
    assertThat(KvSharerSearch.map(new int[][] {{3, 1}}, 0, 4)).containsExactly(0, 1, 2, 3);
  }

  @Test
  void theDistanceIsTheMeanOverHeadsAndTokensOfTheChannelNorm() {
    // 1 head, 2 tokens of 2 channels: distances 5 (3-4-5) and 0
    double[][] a = {{3, 4, 1, 1}};
    double[][] b = {{0, 0, 1, 1}};
    assertThat(KvSharerSearch.meanNorm(a, b, 2)).isCloseTo(2.5, within(1e-12));
  }

  @Test
  void samplesAreBosPlusPiecesOfTheText() {
    int[] text = new int[200];
    for (int i = 0; i < text.length; i++) {
      text[i] = i == 0 ? 1 : 100 + i;
    }
    List<int[]> s = KvSharerSearch.samples(text, 1, 64, 1024);
    assertThat(s).hasSize(3); // 199 tokens after BOS in pieces of 63
    assertThat(s.get(1)[0]).isEqualTo(1);
    assertThat(s.get(1)[1]).isEqualTo(100 + 64);
    assertThat(s).allSatisfy(x -> assertThat(x).hasSize(64));
  }

  @Test
  void theSearchIsDeterministicAndSharedLayersHoldNoBytes() {
    SharedData.require();
    Path file = SharedData.model("llama-spm-f32.gguf");
    try (Model model = Model.load(file);
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      Path p1 = TestProfiles.quick(engine, file);
      Path p2 = TestProfiles.quick(engine, file);
      CalibrationProfile a = CalibrationProfile.read(p1);
      CalibrationProfile b = CalibrationProfile.read(p2);
      assertThat(a.kvSharer()).isNotNull();
      assertThat(a.kvSharer().accepted()).isDeepEqualTo(b.kvSharer().accepted());
      assertThat(a.kvSharer().similarity()).containsExactly(b.kvSharer().similarity());
      int layers = model.config().layers();
      for (int i = 0; i < layers; i++) {
        for (int j = 0; j < i; j++) {
          assertThat(a.kvSharer().distance()[i][j]).isPositive();
        }
      }
      int accepted = a.kvSharer().accepted().length;
      assertThat(accepted).isPositive();
      for (double s : a.kvSharer().similarity()) {
        assertThat(s).isGreaterThan(KvSharerSearch.THRESHOLD);
      }
      int[] map = KvSharerSearch.map(a.kvSharer().accepted(), accepted, layers);
      String spec = "kvsharer:layers=" + accepted + "@profile=" + p1;
      int[] tokens = new int[40];
      for (int i = 0; i < tokens.length; i++) {
        tokens[i] = 5 + 7 * i;
      }
      float[] full = new float[model.config().vocabSize()];
      float[] shared = new float[full.length];
      try (ManagedKvCache f =
              KvSpecs.caches(KvSpec.FULL, new BlockPool(), model.config()).create();
          ManagedKvCache c =
              KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create()) {
        engine.prefill(f, tokens, 0, tokens.length, 0, false, full);
        engine.prefill(c, tokens, 0, tokens.length, 0, false, shared);
        long perLayer = f.bytes() / layers;
        for (int l = 0; l < layers; l++) {
          assertThat(c.shareOf(l)).isEqualTo(map[l]);
          assertThat(c.layer(l).bytes()).isEqualTo(map[l] == l ? perLayer : 0);
          // a shared layer sees its source's tokens
          assertThat(c.layer(l).size(0)).isEqualTo(tokens.length);
        }
        assertThat(c.bytes()).isEqualTo(f.bytes() - (long) accepted * perLayer);
        assertThat(shared).isNotEqualTo(full);
      }
      // more layers than the search accepted: one sentence naming the profile
      assertThatThrownBy(
              () ->
                  KvSpecs.caches(
                      KvSpec.parse("kvsharer:layers=" + (accepted + 1) + "@profile=" + p1),
                      new BlockPool(),
                      model.config()))
          .isInstanceOf(KvSpecException.class)
          .hasMessageContaining("accepted " + accepted);
      assertThatThrownBy(
              () ->
                  KvSpecs.caches(
                      KvSpec.parse("kvsharer:layers=1@profile=" + p1 + " + snapkv:budget=16"),
                      new BlockPool(),
                      model.config()))
          .isInstanceOf(KvSpecException.class);
    }
  }
}
