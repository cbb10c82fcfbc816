package io.kvslim.model.convert;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.calibrate.Calibrator;
import io.kvslim.cli.Main;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** MHA→GQA by aligned merging: METHODS.md S5's checks on real models. */
class KvHeadMergeTest {
  @TempDir Path dir;

  static int[] tokens(ModelConfig c, int n, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    int[] t = new int[n];
    for (int i = 0; i < n; i++) {
      t[i] = 3 + r.nextInt(c.vocabSize() - 3);
    }
    return t;
  }

  /** All logits of a prefill of {@code t} with the full cache. */
  static float[] logits(Path file, int[] t) {
    try (Model m = Model.load(file);
        Engine e = new Engine(m, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      float[] out = new float[t.length * m.config().vocabSize()];
      try (var cache = e.newCache()) {
        e.prefill(cache, t, 0, t.length, 0, true, out);
      }
      return out;
    }
  }

  /** Fits on random text, then writes the model folded (merge false) or merged. */
  Path convert(Path in, int factor, boolean merge) {
    try (Model m = Model.load(in);
        Engine e = new Engine(m, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      List<int[]> windows =
          Calibrator.split(tokens(m.config(), 160, 7), m.config().contextLength(), -1);
      KvHeadMerge.Alignment a = KvHeadMerge.fit(e, windows, factor, u -> {});
      // the fitted rotations are proper and orthogonal
      int hd = m.config().headDim();
      for (double[][] layer : a.valueQ()) {
        for (double[] q : layer) {
          for (int i = 0; i < hd; i++) {
            for (int j = 0; j < hd; j++) {
              double s = 0;
              for (int k = 0; k < hd; k++) {
                s += q[k * hd + i] * q[k * hd + j];
              }
              assertThat(s).isCloseTo(i == j ? 1 : 0, org.assertj.core.api.Assertions.within(1e-9));
            }
          }
        }
      }
      Path out = dir.resolve(in.getFileName() + "-" + factor + "-" + merge + ".gguf");
      KvHeadMerge.write(m, a, merge, out);
      return out;
    }
  }

  static void assertClose(float[] got, float[] want, double rel) {
    double maxAbs = 0;
    double maxDiff = 0;
    for (int i = 0; i < want.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(want[i]));
      maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
    }
    assertThat(maxDiff).isLessThanOrEqualTo(rel * maxAbs);
  }

  @Test
  void foldingTheRotationsKeepsTheLogitsInBothRopePairings() {
    SharedData.require();
    // llama: adjacent RoPE pairs; qwen2: NeoX halves and q/k/v biases
    for (String name : new String[] {"llama-spm-f32.gguf", "qwen2-bpe-f32.gguf"}) {
      Path in = SharedData.model(name);
      Path folded = convert(in, 2, false);
      int[] t;
      try (Model m = Model.load(in)) {
        t = tokens(m.config(), 48, 3);
      }
      assertClose(logits(folded, t), logits(in, t), 1e-4);
    }
  }

  @Test
  void factorOneChangesNothingAndAMergedFileHasFewerKvHeads() throws Exception {
    SharedData.require();
    Path in = SharedData.model("llama-spm-f32.gguf");
    int[] t;
    ModelConfig c;
    try (Model m = Model.load(in)) {
      c = m.config();
      t = tokens(c, 40, 9);
    }
    assertThat(logits(convert(in, 1, true), t)).isEqualTo(logits(in, t)); // bit for bit
    Path merged = convert(in, 2, true);
    try (Model m = Model.load(merged)) {
      assertThat(m.config().kvHeads()).isEqualTo(c.kvHeads() / 2);
      assertThat(m.config().heads()).isEqualTo(c.heads());
      assertThat(m.layer(0).wk().rows()).isEqualTo(c.kvDim() / 2);
      assertThat(m.layer(0).wv().rows()).isEqualTo(c.kvDim() / 2);
      assertThat(m.layer(0).wq().rows()).isEqualTo(c.qDim());
    }
    float[] l = logits(merged, t);
    for (float v : l) {
      assertThat(Float.isFinite(v)).isTrue();
    }
  }

  @Test
  void theCommandRefusesAFactorThatDoesNotDivideAndAnMqaModel() throws Exception {
    SharedData.require();
    Path in = SharedData.model("llama-spm-f32.gguf");
    Path text = dir.resolve("calib.txt");
    Files.writeString(text, "def f(x):\n    return x + 1\n".repeat(20));
    StringWriter err = new StringWriter();
    int code =
        Main.commandLine()
            .setErr(new PrintWriter(err))
            .execute(
                "convert",
                "-m",
                in.toString(),
                "--merge-kv-heads",
                "3",
                "--calib",
                text.toString(),
                "--out",
                dir.resolve("x.gguf").toString());
    assertThat(code).isNotZero();
    assertThat(err.toString()).contains("--merge-kv-heads 3 must divide the model's 2 KV heads");
    Path mqa = dir.resolve("mqa.gguf");
    assertThat(
            Main.run(
                "convert",
                "-m",
                in.toString(),
                "--merge-kv-heads",
                "2",
                "--calib",
                text.toString(),
                "--out",
                mqa.toString()))
        .isZero();
    StringWriter err2 = new StringWriter();
    int again =
        Main.commandLine()
            .setErr(new PrintWriter(err2))
            .execute(
                "convert",
                "-m",
                mqa.toString(),
                "--merge-kv-heads",
                "2",
                "--calib",
                text.toString(),
                "--out",
                dir.resolve("y.gguf").toString());
    assertThat(again).isNotZero();
    assertThat(err2.toString()).contains("already multi-query");
  }
}
