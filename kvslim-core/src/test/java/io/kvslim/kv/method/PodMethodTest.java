package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.kvslim.SharedData;
import io.kvslim.calibrate.TestProfiles;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.DroppedKeys;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * POD (METHODS.md S4) on the 4-layer test model with a synthetic profile whose similarities fall
 * with depth (groups of 2: layers 0–1 and 2–3; of 4: one group), and on random keys against a
 * scalar reference.
 */
class PodMethodTest {
  static final int PROMPT = 128;
  static final int DECODE = 32;
  static Model model;
  static Engine engine;
  static Path profile;
  static int[] tokens;

  @BeforeAll
  static void load() {
    if (!SharedData.present()) {
      return;
    }
    Path file = SharedData.model("llama-spm-f32.gguf");
    model = Model.load(file);
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    int layers = model.config().layers();
    double[][] zero = new double[layers][model.config().kvHeads()];
    profile = TestProfiles.synthetic(file, model.config(), zero, zero, zero);
    SplittableRandom r = new SplittableRandom(17);
    tokens = new int[PROMPT + DECODE];
    for (int i = 0; i < tokens.length; i++) {
      tokens[i] = 3 + r.nextInt(model.config().vocabSize() - 3);
    }
  }

  @AfterAll
  static void close() {
    if (engine != null) {
      engine.close();
      model.close();
    }
  }

  static ManagedKvCache cache(String spec) {
    return KvSpecs.caches(
            KvSpec.parse(KvSpec.withProfile(spec, profile)), new BlockPool(), model.config())
        .create();
  }

  /** Logits of the prefill and of every decode step; {@code check} runs after each step. */
  static float[][] run(ManagedKvCache c, java.util.function.IntConsumer check) {
    int vocab = model.config().vocabSize();
    float[][] out = new float[DECODE + 1][vocab];
    engine.prefill(c, tokens, 0, PROMPT, 0, false, out[0]);
    check.accept(PROMPT - 1);
    for (int i = 0; i < DECODE; i++) {
      engine.decode(c, tokens[PROMPT + i], PROMPT + i, out[i + 1]);
      check.accept(PROMPT + i);
    }
    return out;
  }

  @Test
  void theGroupsComeFromTheProfileGreedily() {
    SharedData.require();
    try (ManagedKvCache c = cache("pod:group=2")) {
      // the key-sharing layers attend through their own view, the first layers through the usual
      assertThat(c.layer(1).getClass().getSimpleName()).isEqualTo("DistantKeyLayer");
      assertThat(c.layer(3).getClass().getSimpleName()).isEqualTo("DistantKeyLayer");
      assertThat(c.layer(0).getClass().getSimpleName()).isNotEqualTo("DistantKeyLayer");
      assertThat(c.layer(2).getClass().getSimpleName()).isNotEqualTo("DistantKeyLayer");
    }
  }

  @Test
  void groupOneIsTheFullCacheBitForBit() {
    SharedData.require();
    try (ManagedKvCache full = cache("full");
        ManagedKvCache pod = cache("pod:group=1,sinks=0,window=1")) {
      float[][] a = run(full, p -> {});
      float[][] b = run(pod, p -> {});
      for (int s = 0; s < a.length; s++) {
        assertThat(b[s]).as("step %d", s).containsExactly(a[s]);
      }
      assertThat(pod.bytes()).isEqualTo(full.bytes());
    }
  }

  @Test
  void aWindowCoveringTheSequenceIsTheFullCacheBitForBit() {
    SharedData.require();
    try (ManagedKvCache full = cache("full");
        ManagedKvCache pod = cache("pod:group=4,window=" + (PROMPT + DECODE))) {
      float[][] a = run(full, p -> {});
      float[][] b = run(pod, p -> {});
      for (int s = 0; s < a.length; s++) {
        assertThat(b[s]).as("step %d", s).containsExactly(a[s]);
      }
    }
  }

  /** Key bytes of one full F32 block of the test model. */
  static long blockKeyBytes() {
    return KvFormats.F32.blockBytes(32, model.config().headDim());
  }

  @Test
  void distantKeysOfTheGroupsOtherLayersAreReallyReleased() {
    SharedData.require();
    int sinks = 32;
    int window = 32;
    int kvHeads = model.config().kvHeads();
    for (int g : new int[] {2, 4}) { // groups {0,1},{2,3} or {0,1,2,3}
      try (ManagedKvCache full = cache("full");
          ManagedKvCache pod = cache("pod:group=" + g + ",sinks=32,window=32")) {
        long[] fullBytes = new long[PROMPT + DECODE];
        run(full, p -> fullBytes[p] = full.bytes());
        run(
            pod,
            p -> {
              // whole blocks of 32 inside [sinks, p - window] are distant for every later query
              int distantBlocks = Math.max(0, (p - window + 1) / 32 - sinks / 32);
              // a group of g layers holds g layers' distant keys in a full cache and keeps one
              long groupDistantKeys = (long) g * kvHeads * distantBlocks * blockKeyBytes();
              long dropped = (4 / g) * groupDistantKeys * (g - 1) / g;
              assertThat(pod.bytes()).as("p=%d g=%d", p, g).isEqualTo(fullBytes[p] - dropped);
            });
        assertThat(pod.bytes()).isLessThan(full.bytes());
        try (ManagedKvCache fresh = cache("pod:group=" + g + ",sinks=32,window=32")) {
          // the peak of a prefill: the last key-sharing layer holds the prompt's keys whole after
          // its append, when the ones before it have dropped their distant keys
          float[] logits = new float[model.config().vocabSize()];
          engine.prefill(fresh, tokens, 0, PROMPT, 0, false, logits);
          int followers = g == 2 ? 2 : 3;
          int distantBlocks = (PROMPT - window) / 32 - sinks / 32;
          long earlier = (long) (followers - 1) * kvHeads * distantBlocks * blockKeyBytes();
          assertThat(fresh.peakBytes()).isEqualTo(fullBytes[PROMPT - 1] - earlier);
          assertThat(fresh.peakBytes()).isGreaterThan(fresh.bytes());
        }
        for (int l = 0; l < 4; l++) {
          boolean follower = g == 2 ? l % 2 == 1 : l > 0;
          if (!follower) {
            assertThat(pod.paged(l).bytes()).isEqualTo(full.paged(l).bytes());
          }
        }
      }
    }
  }

  @Test
  void proximalKeysAreExactAndDistantOnesDropped() {
    SharedData.require();
    int sinks = 8;
    int window = 40;
    try (ManagedKvCache full = cache("full");
        ManagedKvCache pod = cache("pod:group=2,sinks=" + sinks + ",window=" + window)) {
      run(full, p -> {});
      run(pod, p -> {});
      int last = PROMPT + DECODE - 1;
      int d = model.config().headDim();
      float[] a = new float[d];
      float[] b = new float[d];
      for (int l = 0; l < 4; l++) {
        for (int g = 0; g < model.config().kvHeads(); g++) {
          HeadStore mine = pod.paged(l).head(g);
          HeadStore ref = full.paged(l).head(g);
          int[] pos = pod.paged(l).positions(g);
          assertThat(pos).containsExactly(full.paged(l).positions(g));
          int t = 0;
          for (KvBlock blk : mine.blocks()) {
            boolean dropped = blk.keyFormat() == DroppedKeys.INSTANCE;
            assertThat(dropped && l % 2 == 0).as("a first layer keeps its keys").isFalse();
            for (int s = 0; s < blk.filled(); s++, t++) {
              boolean proximal = pos[t] < sinks || pos[t] > last - window;
              if (proximal) {
                assertThat(dropped).as("layer %d position %d", l, pos[t]).isFalse();
              }
              if (l > 1) {
                continue; // layer 1's output changed, so deeper layers' inputs differ
              }
              ref.readValue(t, a);
              mine.readValue(t, b);
              assertThat(b).containsExactly(a);
              if (!dropped) {
                ref.readKey(t, a);
                mine.readKey(t, b);
                assertThat(b).containsExactly(a);
              }
            }
          }
          if (l % 2 == 1) {
            // blocks [32, 64) .. up to the last whole block <= last - window are dropped
            long droppedBlocks =
                mine.blocks().stream().filter(x -> x.keyFormat() == DroppedKeys.INSTANCE).count();
            assertThat(droppedBlocks).isEqualTo((last - window + 1) / 32 - 1);
          }
        }
      }
    }
  }

  @Test
  void aKeySharingLayerAttendsAsTheScalarReference() {
    int d = 8;
    int kvHeads = 2;
    int heads = 4;
    int sinks = 3;
    int window = 5;
    float scale = 0.35f;
    KvCacheFormat f32 = KvCacheFormat.of(KvFormats.F32);
    DistantKeys groups = new DistantKeys(new int[] {0, 0}, sinks, window);
    SplittableRandom r = new SplittableRandom(3);
    int total = 100;
    int prompt = 40;
    float[][] keys = new float[2][total * kvHeads * d];
    float[][] values = new float[2][total * kvHeads * d];
    for (int l = 0; l < 2; l++) {
      for (int i = 0; i < keys[l].length; i++) {
        keys[l][i] = (float) r.nextGaussian();
        values[l][i] = (float) r.nextGaussian();
      }
    }
    BlockPool pool = new BlockPool();
    try (ManagedKvCache c =
        new ManagedKvCache(
            pool, kvHeads, d, new KvCacheFormat[] {f32, f32}, List.of(), null, groups)) {
      long fullBlockKeys = KvFormats.F32.blockBytes(32, d);
      int n = prompt;
      int from = 0;
      while (from < total) {
        int[] pos = new int[n];
        for (int i = 0; i < n; i++) {
          pos[i] = from + i;
        }
        float[] q = new float[n * heads * d];
        for (int i = 0; i < q.length; i++) {
          q[i] = (float) r.nextGaussian();
        }
        for (int l = 0; l < 2; l++) {
          c.layer(l)
              .append(
                  n,
                  pos,
                  java.util.Arrays.copyOfRange(
                      keys[l], from * kvHeads * d, (from + n) * kvHeads * d),
                  java.util.Arrays.copyOfRange(
                      values[l], from * kvHeads * d, (from + n) * kvHeads * d));
        }
        float[] out = new float[q.length];
        c.layer(1).attend(n, pos, heads, q, scale, out, null);
        for (int i = 0; i < n; i++) {
          for (int h = 0; h < heads; h++) {
            double[] ref =
                reference(
                    keys, values, pos[i], h / 2, q, (i * heads + h) * d, scale, groups, kvHeads, d);
            for (int j = 0; j < d; j++) {
              assertThat((double) out[(i * heads + h) * d + j])
                  .as("query %d head %d", pos[i], h)
                  .isCloseTo(ref[j], within(1e-5));
            }
          }
        }
        // what the key-sharing layer holds is what was appended: every value, proximal keys
        HeadStore h1 = c.paged(1).head(1);
        float[] row = new float[d];
        for (int t = 0; t < from + n; t++) {
          h1.readValue(t, row);
          assertThat(row)
              .containsExactly(
                  java.util.Arrays.copyOfRange(
                      values[1], (t * kvHeads + 1) * d, (t * kvHeads + 2) * d));
          if (t < sinks || t > from + n - 1 - window) {
            h1.readKey(t, row);
            assertThat(row)
                .containsExactly(
                    java.util.Arrays.copyOfRange(
                        keys[1], (t * kvHeads + 1) * d, (t * kvHeads + 2) * d));
          }
        }
        from += n;
        n = 1;
        // the key-sharing layer holds its own keys only where they are proximal
        int p = from - 1;
        int distantBlocks = Math.max(0, (p - window + 1) / 32 - 1); // block 0 holds the sinks
        assertThat(c.paged(1).bytes())
            .as("after position %d", p)
            .isEqualTo(c.paged(0).bytes() - kvHeads * distantBlocks * fullBlockKeys);
      }
      assertThat(pool.usedBytes()).isEqualTo(c.bytes());
    }
  }

  /** Layer 1's attention in plain double loops: layer 0's keys for distant tokens. */
  static double[] reference(
      float[][] keys,
      float[][] values,
      int p,
      int g,
      float[] q,
      int qOff,
      float scale,
      DistantKeys groups,
      int kvHeads,
      int d) {
    double[] s = new double[p + 1];
    double max = Double.NEGATIVE_INFINITY;
    for (int t = 0; t <= p; t++) {
      float[] k = groups.distant(t, p) ? keys[0] : keys[1];
      double dot = 0;
      for (int j = 0; j < d; j++) {
        dot += (double) q[qOff + j] * k[(t * kvHeads + g) * d + j];
      }
      s[t] = dot * scale;
      max = Math.max(max, s[t]);
    }
    double sum = 0;
    double[] out = new double[d];
    for (int t = 0; t <= p; t++) {
      double w = Math.exp(s[t] - max);
      sum += w;
      for (int j = 0; j < d; j++) {
        out[j] += w * values[1][(t * kvHeads + g) * d + j];
      }
    }
    for (int j = 0; j < d; j++) {
      out[j] /= sum;
    }
    return out;
  }

  @Test
  void aProfileOfAnotherModelIsRefusedInOneSentence() {
    SharedData.require();
    String spec = "pod:group=2@profile=" + profile;
    try (Model other = Model.load(SharedData.model("llama-spm-q8_0.gguf"))) {
      assertThatThrownBy(() -> KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), other.config()))
          .isInstanceOf(KvSpecException.class)
          .hasMessageContaining("was measured on llama-spm-f32.gguf (sha256 ")
          .hasMessageContaining("but this model is llama-spm-q8_0.gguf")
          .satisfies(e -> assertThat(e.getMessage()).doesNotContain("\n"));
    }
  }

  @Test
  void aProfileWithoutPodLoadsButPodRefusesIt(@org.junit.jupiter.api.io.TempDir Path dir)
      throws Exception {
    SharedData.require();
    ObjectMapper json = new ObjectMapper();
    ObjectNode root = (ObjectNode) json.readTree(Files.readString(profile));
    root.remove("pod");
    Path old = dir.resolve("old.json");
    Files.writeString(old, json.writeValueAsString(root));
    assertThat(io.kvslim.calibrate.CalibrationProfile.read(old).pod()).isNull();
    assertThatThrownBy(
            () ->
                KvSpecs.caches(KvSpec.parse("pod@profile=" + old), new BlockPool(), model.config()))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("has no POD similarities; make it again with 'kvslim calibrate'");
  }

  @Test
  void podComposesWithFormatsButNotWithEvictionOrScopes() {
    SharedData.require();
    try (ManagedKvCache c = cache("pod:group=2 + q8_0")) {
      float[] logits = new float[model.config().vocabSize()];
      engine.prefill(c, tokens, 0, PROMPT, 0, false, logits);
      assertThat(logits[0]).isFinite();
    }
    assertThatThrownBy(() -> cache("pod + snapkv:budget=64"))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("pod composes with storage formats only");
    assertThatThrownBy(() -> cache("pod@layers=0-1"))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("do not scope it with @layers");
    assertThatThrownBy(() -> cache("pod + kivi"))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("residual window");
  }
}
