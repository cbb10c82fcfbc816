package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.calibrate.LexicoDictionaries;
import io.kvslim.calibrate.TestProfiles;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.LexicoFormat;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import io.kvslim.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Lexico on the trained model: dictionaries from real activations, profiles, specs and caches. */
class LexicoMethodTest {
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

  /** Keys of every layer for {@code window}: {@code [layer][token·kvHeads + g][d]}. */
  static float[][] keys(int[] window) {
    ModelConfig c = model.config();
    KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
    Arrays.fill(formats, KvCacheFormat.of(io.kvslim.kv.format.KvFormats.F32));
    float[][] out = new float[c.layers()][window.length * c.kvHeads() * c.headDim()];
    try (ManagedKvCache cache =
        new ManagedKvCache(new BlockPool(), c.kvHeads(), c.headDim(), formats, List.of(), null)) {
      engine.prefill(cache, window, 0, window.length, 0, false, new float[c.vocabSize()]);
      float[] row = new float[c.headDim()];
      for (int l = 0; l < c.layers(); l++) {
        for (int g = 0; g < c.kvHeads(); g++) {
          for (int t = 0; t < window.length; t++) {
            cache.paged(l).store().head(g).readKey(t, row);
            System.arraycopy(row, 0, out[l], (t * c.kvHeads() + g) * row.length, row.length);
          }
        }
      }
    }
    return out;
  }

  /**
   * Dictionaries learned on one text code another text's keys and values: every atom has unit norm,
   * and more atoms per vector reconstruct better (relative error at s=16 below s=4's, both below
   * 1).
   */
  @Test
  void dictionariesFromOneTextCodeAnothersActivations() throws Exception {
    LexicoDictionaries dicts = LexicoDictionaries.train(engine, List.of(text("py-a.txt", 600)), 3);
    ModelConfig c = model.config();
    int d = c.headDim();
    assertThat(dicts.samples()).isEqualTo(600 * c.kvHeads());
    assertThat(dicts.atoms()).isEqualTo(LexicoDictionaries.ATOMS);
    for (int l = 0; l < c.layers(); l++) {
      for (float[] dict : List.of(dicts.dictionary(l, false), dicts.dictionary(l, true))) {
        assertThat(dict).hasSize(LexicoDictionaries.ATOMS * d);
        for (int a = 0; a < LexicoDictionaries.ATOMS; a++) {
          double n2 = 0;
          for (int i = 0; i < d; i++) {
            n2 += (double) dict[a * d + i] * dict[a * d + i];
          }
          assertThat(Math.sqrt(n2)).isBetween(1 - 1e-5, 1 + 1e-5);
        }
      }
    }
    float[][] keys = keys(text("py-b.txt", 100));
    int layer = 2;
    double[] relative = new double[2];
    int[] sparsity = {4, 16};
    for (int i = 0; i < 2; i++) {
      LexicoFormat f =
          new LexicoFormat(dicts.dictionary(layer, false), dicts.atoms(), sparsity[i], "t");
      int rows = keys[layer].length / d;
      var block = java.lang.foreign.MemorySegment.ofArray(new byte[(int) f.blockBytes(rows, d)]);
      float[] back = new float[rows * d];
      f.encode(keys[layer], 0, d, rows, block, 0, rows, d);
      for (int t = 0; t < rows; t++) {
        f.decode(block, t, rows, d, back, t * d);
      }
      double err = 0;
      double norm = 0;
      for (int j = 0; j < back.length; j++) {
        err += (back[j] - keys[layer][j]) * (double) (back[j] - keys[layer][j]);
        norm += keys[layer][j] * (double) keys[layer][j];
      }
      relative[i] = Math.sqrt(err / norm);
    }
    assertThat(relative[1]).isLessThan(relative[0]);
    assertThat(relative[0]).isLessThan(1.0);
  }

  @Test
  void theProfileKeepsTheDictionariesBitForBit(@TempDir Path dir) throws Exception {
    Path p = TestProfiles.quick(engine, file);
    CalibrationProfile a = CalibrationProfile.read(p);
    assertThat(a.lexico()).isNotNull();
    Path copy = dir.resolve("copy.json");
    a.write(copy);
    CalibrationProfile b = CalibrationProfile.read(copy);
    for (int l = 0; l < model.config().layers(); l++) {
      assertThat(b.lexico().dictionary(l, false)).containsExactly(a.lexico().dictionary(l, false));
      assertThat(b.lexico().dictionary(l, true)).containsExactly(a.lexico().dictionary(l, true));
    }
    String json = Files.readString(copy);
    int at = json.indexOf("\"lexico\"");
    Files.writeString(
        copy,
        json.substring(0, at)
            + json.substring(at).replaceFirst("\"keys\" : \\[ \"", "\"keys\" : [ \"!"));
    assertThatThrownBy(() -> CalibrationProfile.read(copy))
        .isInstanceOf(CalibrationProfile.ProfileException.class)
        .hasMessageContaining("is damaged: lexico dictionary of layer 0 is not base64");
  }

  @Test
  void aProfileOfAnotherModelOrWithoutDictionariesIsRefused() {
    Path other = SharedData.model("llama-spm-f32.gguf");
    Path foreign;
    try (Model m = Model.load(other);
        Engine e = new Engine(m, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      foreign = TestProfiles.quick(e, other);
    }
    String spec = "lexico:s=8@profile=" + foreign;
    assertThatThrownBy(
            () -> KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create())
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("measured on llama-spm-f32.gguf")
        .hasMessageContaining("the head has 64");
    double[][] zero = new double[model.config().layers()][model.config().kvHeads()];
    Path none = TestProfiles.synthetic(file, model.config(), zero, zero, zero);
    assertThatThrownBy(
            () ->
                KvSpecs.caches(
                    KvSpec.parse("lexico@profile=" + none), new BlockPool(), model.config()))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("has no lexico dictionaries");
    assertThatThrownBy(() -> KvSpec.parse("lexico:s=8"))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("lexico needs a calibration profile");
    assertThatThrownBy(() -> KvSpec.parse("lexico:residual=40"))
        .isInstanceOf(KvSpecException.class)
        .hasMessage("lexico:residual=40 must be a multiple of 32");
  }

  /**
   * Without a window, bytes are the codes: ⌈20·s/8⌉ = 20 bytes per key and per value at s=8, 13
   * blocks of 32 slots for 400 tokens, plus each block's bookkeeping, plus once per layer the key
   * and the value dictionaries, N atoms × d f32 each (the method's declared tableBytes).
   */
  @Test
  void bytesAreTheCodes() throws Exception {
    Path p = TestProfiles.quick(engine, file);
    int[] prompt = text("py-a.txt", 400);
    ModelConfig c = model.config();
    float[] logits = new float[c.vocabSize()];
    String spec = "lexico:s=8,residual=0@profile=" + p;
    try (ManagedKvCache cache = KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), c).create()) {
      engine.prefill(cache, prompt, 0, prompt.length, 0, false, logits);
      engine.decode(cache, prompt[1], prompt.length, logits);
      long want = 0;
      for (int l = 0; l < c.layers(); l++) {
        KvCacheFormat f = cache.paged(l).store().format();
        assertThat(f.keys()).isInstanceOf(LexicoFormat.class);
        int atoms = CalibrationProfile.read(p).lexico().atoms();
        assertThat(atoms).isEqualTo(96 * c.kvHeads()); // the quick profile's samples
        assertThat(f.keys().name()).isEqualTo("lexico_s8_n" + atoms + "_k" + l);
        assertThat(((LexicoFormat) f.keys()).tableBytes()).isEqualTo(4L * atoms * c.headDim());
        assertThat(f.tableBytes()).isEqualTo(2 * 4L * atoms * c.headDim());
        assertThat(cache.paged(l).tableBytes()).isEqualTo(2 * 4L * atoms * c.headDim());
        MethodCall call = KvSpec.parse(spec).callsFor(l).get(0);
        assertThat(call.method().tableBytes(call, c.kvHeads(), c.headDim()))
            .isEqualTo(2 * 4L * atoms * c.headDim());
        want += 2 * 4L * atoms * c.headDim();
        for (int g = 0; g < c.kvHeads(); g++) {
          for (var b : cache.paged(l).head(g).blocks()) {
            assertThat(b.bytes() - b.bookkeepingBytes()).isEqualTo(2L * 32 * 20);
            want += 2L * 32 * 20 + b.bookkeepingBytes();
          }
          assertThat(cache.paged(l).head(g).blocks()).hasSize(13);
        }
      }
      assertThat(cache.bytes()).isEqualTo(want);
      for (float x : logits) {
        assertThat(Float.isFinite(x)).isTrue();
      }
    }
  }
}
