package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.calibrate.CqCodebooks;
import io.kvslim.calibrate.KMeans;
import io.kvslim.calibrate.TestProfiles;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.CqFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import io.kvslim.tokenizer.Tokenizer;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Coupled Quantization on the trained model: codebooks, real activations, specs and caches. */
class CqMethodTest {
  static Model model;
  static Engine engine;
  static Tokenizer tok;
  static Path file;

  @BeforeAll
  static void load() {
    file = SharedData.model("pycoder-6m-f16.gguf");
    model = Model.load(file);
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    tok = Tokenizer.fromGguf(model.file());
  }

  @AfterAll
  static void close() {
    if (engine != null) {
      engine.close();
      model.close();
    }
  }

  static int[] text(String name, int tokens) throws Exception {
    String t = Files.readString(SharedData.require().resolve("golden/texts").resolve(name));
    int[] ids = tok.encode(t, true, false);
    return Arrays.copyOf(ids, Math.min(tokens, ids.length));
  }

  /** Keys (or values) of every layer for {@code window}: {@code [layer][token·kvHeads + g][d]}. */
  static float[][] activations(int[] window, boolean values) {
    ModelConfig c = model.config();
    KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
    Arrays.fill(formats, KvCacheFormat.of(KvFormats.F32));
    float[][] out = new float[c.layers()][window.length * c.kvHeads() * c.headDim()];
    try (ManagedKvCache cache =
        new ManagedKvCache(new BlockPool(), c.kvHeads(), c.headDim(), formats, List.of(), null)) {
      engine.prefill(cache, window, 0, window.length, 0, false, new float[c.vocabSize()]);
      float[] row = new float[c.headDim()];
      for (int l = 0; l < c.layers(); l++) {
        for (int g = 0; g < c.kvHeads(); g++) {
          HeadStore h = cache.paged(l).store().head(g);
          for (int t = 0; t < window.length; t++) {
            if (values) {
              h.readValue(t, row);
            } else {
              h.readKey(t, row);
            }
            System.arraycopy(row, 0, out[l], (t * c.kvHeads() + g) * row.length, row.length);
          }
        }
      }
    }
    return out;
  }

  /**
   * Codebooks learned on one text, applied to the keys and values of another: every group decodes
   * to the centroid the brute-force search finds nearest, each element's error is at most its
   * group's distance to that centroid, and the relative error grows as fewer bits are kept (c=2, 4
   * bits per channel, is the most accurate).
   */
  @Test
  void codebooksFromOneTextQuantizeAnothersActivations() throws Exception {
    int[] calib = text("py-a.txt", 600);
    CqCodebooks books = CqCodebooks.train(engine, List.of(calib), 3);
    assertThat(books.samples()).isEqualTo(600 * model.config().kvHeads());
    int d = model.config().headDim();
    int[] other = text("py-b.txt", 200);
    double[][] relative = new double[CqCodebooks.COUPLINGS.length][2];
    for (int kind = 0; kind < 2; kind++) {
      float[][] act = activations(other, kind == 1);
      for (int ci = 0; ci < CqCodebooks.COUPLINGS.length; ci++) {
        int c = CqCodebooks.COUPLINGS[ci];
        double err = 0;
        double norm = 0;
        for (int l = 0; l < act.length; l++) {
          CqFormat f = new CqFormat(c, books.book(c, l, kind == 1), "t");
          int n = act[l].length / d;
          MemorySegment block = MemorySegment.ofArray(new byte[(int) f.blockBytes(n, d)]);
          f.encode(act[l], 0, d, n, block, 0, n, d);
          float[] out = new float[d];
          float[] centroids = new float[CqFormat.CENTROIDS * c];
          for (int t = 0; t < n; t++) {
            f.decode(block, t, n, d, out, 0);
            for (int g = 0; g < d / c; g++) {
              for (int j = 0; j < CqFormat.CENTROIDS; j++) {
                for (int i = 0; i < c; i++) {
                  centroids[j * c + i] = f.centroid(g, j, i);
                }
              }
              int want = KMeans.bruteForce(act[l], t * d + g * c, c, CqFormat.CENTROIDS, centroids);
              double dist = 0;
              for (int i = 0; i < c; i++) {
                assertThat(out[g * c + i]).isEqualTo(f.centroid(g, want, i));
                double e = act[l][t * d + g * c + i] - out[g * c + i];
                dist += e * e;
              }
              double bound = Math.sqrt(dist) * (1 + 1e-6);
              for (int i = 0; i < c; i++) {
                double e = Math.abs(act[l][t * d + g * c + i] - out[g * c + i]);
                assertThat(e).isLessThanOrEqualTo(bound);
              }
              err += dist;
              for (int i = 0; i < c; i++) {
                norm += (double) act[l][t * d + g * c + i] * act[l][t * d + g * c + i];
              }
            }
          }
        }
        relative[ci][kind] = Math.sqrt(err / norm);
      }
      assertThat(relative[0][kind]).as("c=2 vs c=4").isLessThan(relative[1][kind]);
      assertThat(relative[1][kind]).as("c=4 vs c=8").isLessThan(relative[2][kind]);
      assertThat(relative[2][kind]).as("c=8, 1 bit per channel").isLessThan(1.0);
    }
  }

  /**
   * {@code codebooks=head}: each KV head has its own codebooks, k-means on that head's calibration
   * rows only, so on those rows they quantize with less error than the layer's shared ones; a cache
   * stores each head's rows with its head's codebooks (what the store reads back is what that
   * head's codebook encodes), also through the fp16 window's flush; the layer's form itself stores
   * nothing; the tables are the KV heads times the layer's, declared and counted.
   */
  @Test
  void perHeadCodebooksAreEachHeadsOwnAndCounted() throws Exception {
    ModelConfig c = model.config();
    int d = c.headDim();
    int kv = c.kvHeads();
    int[] calib = text("py-a.txt", 300);
    CqCodebooks books = CqCodebooks.train(engine, List.of(calib), 3);
    float[][] act = activations(calib, false);
    int n = calib.length;
    for (int l = 0; l < c.layers(); l++) {
      double shared = 0;
      double own = 0;
      for (int g = 0; g < kv; g++) {
        CqFormat layerBook = new CqFormat(4, books.book(4, l, false), "l");
        CqFormat headBook = new CqFormat(4, books.headBook(4, l, g, false), "h");
        for (int t = 0; t < n; t++) {
          int off = (t * kv + g) * d;
          shared += error(layerBook, act[l], off, d);
          own += error(headBook, act[l], off, d);
        }
      }
      assertThat(own).as("layer %d", l).isLessThan(shared);
    }
    Path p = TestProfiles.quick(engine, file);
    int[] prompt = text("py-b.txt", 200);
    float[][] keys = activations(prompt, false);
    for (String spec :
        List.of(
            "cq:c=4,codebooks=head@profile=" + p,
            "cq:c=4,codebooks=head,residual=64@profile=" + p)) {
      KvSpec parsed = KvSpec.parse(spec);
      CalibrationProfile prof = CalibrationProfile.read(p);
      try (ManagedKvCache cache = KvSpecs.caches(parsed, new BlockPool(), c).create()) {
        engine.prefill(cache, prompt, 0, prompt.length, 0, false, new float[c.vocabSize()]);
        long tables = kv * 2 * 4L * CqFormat.CENTROIDS * d;
        for (int l = 0; l < c.layers(); l++) {
          CqFormat layerKeys = (CqFormat) cache.paged(l).store().format().keys();
          assertThat(layerKeys.perHeadBooks()).isTrue();
          assertThatThrownBy(
                  () ->
                      layerKeys.encode(
                          new float[d], 0, d, 1, MemorySegment.ofArray(new byte[64]), 0, 1, d))
              .hasMessageContaining("forHead");
          assertThat(cache.paged(l).tableBytes()).isEqualTo(tables);
          MethodCall call = parsed.callsFor(l).get(0);
          assertThat(call.method().tableBytes(call, kv, d)).isEqualTo(tables);
          int quantized = spec.contains("residual") ? prompt.length / 64 * 64 : prompt.length;
          for (int g = 0; g < kv; g++) {
            CqFormat want = new CqFormat(4, prof.cq().headBook(4, l, g, false), "w");
            float[] row = new float[d];
            float[] expect = new float[d];
            MemorySegment one = MemorySegment.ofArray(new byte[want.rowBytes(d)]);
            for (int t = 0; t < quantized; t++) {
              cache.paged(l).store().head(g).readKey(t, row);
              if (l == 0) { // layer 0's keys do not depend on the cache: the same inputs
                float[] in = Arrays.copyOfRange(keys[l], (t * kv + g) * d, (t * kv + g + 1) * d);
                if (spec.contains("residual")) { // quantized from the fp16 window
                  for (int i = 0; i < d; i++) {
                    in[i] =
                        io.kvslim.kv.format.HalfFloats.fromF16(
                            io.kvslim.kv.format.HalfFloats.toF16(in[i]));
                  }
                }
                want.encode(in, 0, d, 1, one, 0, 1, d);
                want.decode(one, 0, 1, d, expect, 0);
                assertThat(row).as("%s head %d token %d", spec, g, t).containsExactly(expect);
              }
              for (int q = 0; q < d / 4; q++) { // every group is one of this head's centroids
                boolean found = false;
                for (int j = 0; j < CqFormat.CENTROIDS && !found; j++) {
                  found = true;
                  for (int i = 0; i < 4; i++) {
                    found &= row[q * 4 + i] == want.centroid(q, j, i);
                  }
                }
                assertThat(found).as("%s layer %d head %d token %d", spec, l, g, t).isTrue();
              }
            }
          }
        }
      }
    }
    // a profile made before the per-head codebooks: codebooks=head is one sentence
    var mapper = new com.fasterxml.jackson.databind.ObjectMapper();
    var root = (com.fasterxml.jackson.databind.node.ObjectNode) mapper.readTree(p.toFile());
    for (var cfg : root.path("cq").path("configs")) {
      ((com.fasterxml.jackson.databind.node.ObjectNode) cfg)
          .remove(List.of("keys_per_head", "values_per_head"));
    }
    Path old = p.resolveSibling(p.getFileName() + ".old.json");
    mapper.writeValue(old.toFile(), root);
    assertThat(CalibrationProfile.read(old).cq().headBook(4, 0, 0, false)).isNull();
    assertThatThrownBy(
            () ->
                KvSpecs.caches(
                        KvSpec.parse("cq:c=4,codebooks=head@profile=" + old), new BlockPool(), c)
                    .create())
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("has no per-head cq codebooks")
        .hasMessageContaining("kvslim calibrate");
    Files.delete(old);
  }

  /** Squared error of {@code f}'s round trip of the row at {@code off}. */
  private static double error(CqFormat f, float[] rows, int off, int d) {
    MemorySegment one = MemorySegment.ofArray(new byte[f.rowBytes(d)]);
    float[] out = new float[d];
    f.encode(rows, off, d, 1, one, 0, 1, d);
    f.decode(one, 0, 1, d, out, 0);
    double e = 0;
    for (int i = 0; i < d; i++) {
      e += (rows[off + i] - out[i]) * (double) (rows[off + i] - out[i]);
    }
    return e;
  }

  @Test
  void withAtMost256DistinctVectorsEveryCalibrationVectorReconstructsExactly() {
    SplittableRandom r = new SplittableRandom(4);
    int c = 4;
    float[] distinct = new float[200 * c];
    for (int i = 0; i < distinct.length; i++) {
      distinct[i] = (float) r.nextGaussian();
    }
    float[] data = new float[1000 * c];
    for (int t = 0; t < 1000; t++) {
      System.arraycopy(distinct, r.nextInt(200) * c, data, t * c, c);
    }
    float[] centroids = KMeans.train(data, 1000, c, CqFormat.CENTROIDS, 5, r.split());
    assertThat(KMeans.error(data, 1000, c, CqFormat.CENTROIDS, centroids)).isZero();
  }

  @Test
  void lloydIterationsNeverIncreaseTheError() {
    SplittableRandom r = new SplittableRandom(5);
    int n = 2000;
    float[] data = new float[n * 2];
    for (int i = 0; i < data.length; i++) {
      data[i] = (float) (r.nextGaussian() * (i % 2 == 0 ? 1 : 3));
    }
    double last = Double.POSITIVE_INFINITY;
    for (int it = 0; it <= 6; it += 2) {
      float[] centroids = KMeans.train(data, n, 2, CqFormat.CENTROIDS, it, new SplittableRandom(1));
      double e = KMeans.error(data, n, 2, CqFormat.CENTROIDS, centroids);
      assertThat(e).as("after %d iterations", it).isLessThanOrEqualTo(last * (1 + 1e-9));
      last = e;
    }
  }

  @Test
  void theProfileKeepsTheCodebooksBitForBit(@TempDir Path dir) throws Exception {
    Path p = TestProfiles.quick(engine, file);
    CalibrationProfile a = CalibrationProfile.read(p);
    assertThat(a.cq()).isNotNull();
    Path copy = dir.resolve("copy.json");
    a.write(copy);
    CalibrationProfile b = CalibrationProfile.read(copy);
    for (int c : CqCodebooks.COUPLINGS) {
      for (int l = 0; l < model.config().layers(); l++) {
        assertThat(b.cq().book(c, l, false)).containsExactly(a.cq().book(c, l, false));
        assertThat(b.cq().book(c, l, true)).containsExactly(a.cq().book(c, l, true));
      }
    }
    Files.writeString(
        copy, Files.readString(copy).replaceFirst("\"keys\" : \\[ \"", "\"keys\" : [ \"!"));
    assertThatThrownBy(() -> CalibrationProfile.read(copy))
        .isInstanceOf(CalibrationProfile.ProfileException.class)
        .hasMessageContaining("is damaged: cq codebook of layer 0");
  }

  @Test
  void aProfileOfAnotherModelOrWithoutCodebooksIsRefused() {
    Path other = SharedData.model("llama-spm-f32.gguf");
    Path foreign;
    try (Model m = Model.load(other);
        Engine e = new Engine(m, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      foreign = TestProfiles.quick(e, other);
    }
    String spec = "cq:c=4@profile=" + foreign;
    assertThatThrownBy(
            () -> KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create())
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("measured on llama-spm-f32.gguf")
        .hasMessageContaining("the head dimension is 64");
    double[][] zero = new double[model.config().layers()][model.config().kvHeads()];
    Path none = TestProfiles.synthetic(file, model.config(), zero, zero, zero);
    assertThatThrownBy(
            () ->
                KvSpecs.caches(KvSpec.parse("cq@profile=" + none), new BlockPool(), model.config()))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("has no cq codebooks for c=4");
    assertThatThrownBy(() -> KvSpec.parse("cq:c=2"))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("cq needs a calibration profile");
    assertThatThrownBy(() -> KvSpec.parse("cq:residual=40"))
        .isInstanceOf(KvSpecException.class)
        .hasMessage("cq:residual=40 must be a multiple of 32");
  }

  /**
   * Bytes are the codes (d/8 = 8 bytes per key and per value at c=8, 13 blocks of 32 slots for 400
   * tokens) plus each block's header and positions; no scales; plus once per layer the key and the
   * value codebooks, 256 × d f32 each (the method's declared tableBytes). {@code snapkv + cq}:
   * SnapKV's kept tokens stored as CQ codes, every layer its own codebook.
   */
  @Test
  void bytesAreTheCodesAndComposeWithEviction() throws Exception {
    Path p = TestProfiles.quick(engine, file);
    int[] prompt = text("py-a.txt", 400);
    ModelConfig c = model.config();
    float[] logits = new float[c.vocabSize()];
    long full;
    try (ManagedKvCache cache =
        KvSpecs.caches(KvSpec.parse("cq:c=8@profile=" + p), new BlockPool(), c).create()) {
      engine.prefill(cache, prompt, 0, prompt.length, 0, false, logits);
      full = cache.bytes();
      long want = 0;
      for (int l = 0; l < c.layers(); l++) {
        for (int g = 0; g < c.kvHeads(); g++) {
          for (var b : cache.paged(l).head(g).blocks()) {
            assertThat(b.bytes() - b.bookkeepingBytes()).isEqualTo(2L * 32 * 8);
            assertThat(b.scaleBytes()).isZero();
            want += 2L * 32 * 8 + b.bookkeepingBytes();
          }
          assertThat(cache.paged(l).head(g).blocks()).hasSize(13);
        }
        long tables = 2 * 4L * CqFormat.CENTROIDS * c.headDim();
        assertThat(cache.paged(l).tableBytes()).isEqualTo(tables);
        MethodCall call = KvSpec.parse("cq:c=8@profile=" + p).callsFor(l).get(0);
        assertThat(call.method().tableBytes(call, c.kvHeads(), c.headDim())).isEqualTo(tables);
        want += tables;
      }
      assertThat(full).isEqualTo(want);
    }
    String spec = "snapkv:budget=25%,window=32 + cq:c=8@profile=" + p;
    try (ManagedKvCache cache = KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), c).create()) {
      engine.prefill(cache, prompt, 0, prompt.length, 0, false, logits);
      engine.decode(cache, prompt[1], prompt.length, logits);
      for (int l = 0; l < c.layers(); l++) {
        KvCacheFormat f = cache.paged(l).store().format();
        assertThat(f.keys()).isInstanceOf(CqFormat.class);
        assertThat(f.keys().name()).isEqualTo("cq8c8b_k" + l);
        assertThat(cache.paged(l).positions(0).length).isLessThan(prompt.length / 2);
      }
      long tables = c.layers() * 2 * 4L * CqFormat.CENTROIDS * c.headDim(); // the same codebooks
      assertThat(cache.bytes() - tables).isLessThan((full - tables) / 2);
      for (float x : logits) {
        assertThat(Float.isFinite(x)).isTrue();
      }
    }
  }
}
