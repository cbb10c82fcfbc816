package io.kvslim.calibrate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import io.kvslim.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The calibration pass and its profile file. */
class CalibratorTest {
  @TempDir Path dir;

  static CalibrationProfile calibrate(Path file, int threads, long seed) {
    try (Model model = Model.load(file);
        Engine engine = new Engine(model, threads, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      ModelConfig c = model.config();
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      int[] text = tok.encode("def f(x):\n    return x + 1\n".repeat(60), true, false);
      return Calibrator.run(
          engine,
          new ModelIdentity(file, c.layers(), c.heads(), c.kvHeads(), c.headDim()),
          tok,
          text,
          "t.py",
          "abc",
          new Calibrator.Options(700, seed, 24, 2),
          null);
    }
  }

  @Test
  void theSameModelTextAndSeedGiveTheSameBytesWhateverTheThreads() {
    Path file = SharedData.model("pycoder-6m-f16.gguf");
    String a = calibrate(file, 1, 7).toJson();
    String b = calibrate(file, 2, 7).toJson();
    assertThat(b).isEqualTo(a);
    CalibrationProfile other = calibrate(file, 2, 8);
    assertThat(other.toJson()).isNotEqualTo(a);
    assertThat(other.duo()).isDeepEqualTo(calibrate(file, 1, 7).duo()); // the seed is razor's only
  }

  @Test
  void theProfileHoldsTheModelsIdentityAndScoresInRange() {
    Path file = SharedData.model("pycoder-6m-f16.gguf");
    CalibrationProfile p = calibrate(file, 2, 1);
    assertThat(p.model().file()).isEqualTo("pycoder-6m-f16.gguf");
    assertThat(p.model().sha256()).isEqualTo(ModelIdentity.sha256Of(file)).hasSize(64);
    assertThat(p.model().shape()).isEqualTo("6 layers, 4 heads, 2 KV heads of 64");
    // 60 repeats of 13 tokens = 780 + BOS, 700 read in one window of the 1,024 context
    assertThat(p.calibration().tokens()).isEqualTo(700);
    assertThat(p.calibration().windows()).isEqualTo(1);
    for (int l = 0; l < 6; l++) {
      for (int h = 0; h < 4; h++) {
        double echo = p.echo()[l][h];
        double induction = p.induction()[l][h];
        assertThat(echo).isBetween(0.0, 1.0);
        assertThat(echo + induction).isLessThanOrEqualTo(1.0 + 1e-9);
        assertThat(p.kvInduction()[l][h / 2]).isGreaterThanOrEqualTo(induction);
      }
      for (int g = 0; g < 2; g++) {
        assertThat(p.duo()[l][g]).isBetween(1.0 / Calibrator.DUO_POSITIONS, 1.0);
        assertThat(p.kvEcho()[l][g])
            .isEqualTo(Math.max(p.echo()[l][2 * g], p.echo()[l][2 * g + 1]));
      }
    }
    // the model's layer 0 reads uniformly (docs/results/pycoder-attention): area under a linear
    // cumulative curve, 1/2
    assertThat(p.duo()[0][0]).isCloseTo(0.5, within(0.01));
    assertThat(p.attentionMass().heads()[0][0].local()).isBetween(0.0, 1.0);
  }

  @Test
  void aWrittenProfileReadsBackAsWritten() throws Exception {
    Path file = SharedData.model("llama-spm-f32.gguf");
    CalibrationProfile p = calibrate(file, 2, 3);
    Path out = dir.resolve("p.json");
    p.write(out);
    CalibrationProfile back = CalibrationProfile.read(out);
    assertThat(back.toJson()).isEqualTo(Files.readString(out));
    assertThat(back.source()).isEqualTo(out);
  }

  @Test
  void aBadProfileFileIsOneSentenceNamingIt() throws Exception {
    Path file = SharedData.model("llama-spm-f32.gguf");
    Path good = dir.resolve("good.json");
    calibrate(file, 2, 3).write(good);
    String json = Files.readString(good);
    List<String[]> cases =
        List.of(
            new String[] {"{", "is not JSON"},
            new String[] {"{\"a\": 1}", "is not a kvslim calibration profile"},
            new String[] {json.replace("\"version\" : 1", "\"version\" : 2"), "has version 2"},
            new String[] {json.replace("\"duo\" :", "\"dua\" :"), "is damaged: 'duo' is missing"},
            new String[] {
              json.replace("\"kv_heads\" : 2", "\"kv_heads\" : 3"), "is damaged: model.heads"
            },
            new String[] {
              json.replace("\"scores\" : [ [", "\"scores\" : [ [ 1,"), "duo.scores[0]"
            });
    for (String[] c : cases) {
      Path bad = dir.resolve("bad.json");
      Files.writeString(bad, c[0]);
      assertThatThrownBy(() -> CalibrationProfile.read(bad))
          .as(c[1])
          .isInstanceOf(CalibrationProfile.ProfileException.class)
          .hasMessageContaining(bad.toString())
          .hasMessageContaining(c[1])
          .satisfies(e -> assertThat(e.getMessage()).doesNotContain("\n"));
    }
    assertThatThrownBy(() -> CalibrationProfile.read(dir.resolve("none.json")))
        .hasMessageContaining("does not exist");
  }

  @Test
  void echoAndInductionScoreAConstructedHead() {
    // [BOS, X, X] with m = 5: a head that reads the token after the earlier copy of its token (an
    // induction head) scores 1, one that reads the earlier copy itself (an echo head) scores 1 on
    // echo, a head spread uniformly scores about 1/p on each
    int m = 5;
    int offset = 1;
    double[] induction = new double[2];
    double[] echo = new double[2];
    double[] uniform = new double[2];
    int counted = 0;
    for (int p = 0; p < offset + 2 * m; p++) {
      float[] ind = new float[p + 1];
      float[] ech = new float[p + 1];
      float[] uni = new float[p + 1];
      int j = p - offset - m;
      if (j >= 0) {
        ind[offset + j + 1] = 1f;
        ech[offset + j] = 1f;
      }
      Arrays.fill(uni, 1f / (p + 1));
      boolean a = EchoInduction.accumulate(ind, p, offset, m, induction);
      EchoInduction.accumulate(ech, p, offset, m, echo);
      EchoInduction.accumulate(uni, p, offset, m, uniform);
      counted += a ? 1 : 0;
    }
    assertThat(counted).isEqualTo(m);
    assertThat(induction[1] / m).isEqualTo(1.0);
    assertThat(induction[0] / m).isEqualTo(0.0);
    assertThat(echo[0] / m).isEqualTo(1.0);
    assertThat(echo[1] / m).isEqualTo(0.0);
    assertThat(uniform[0] / m).isLessThan(0.2);
    // the sequence: BOS, then X twice, X of distinct tokens
    int[] seq =
        EchoInduction.sequence(new SplittableRandom(1), new int[] {5, 6, 7, 8, 9, 10}, m, 1);
    assertThat(seq).hasSize(1 + 2 * m);
    assertThat(seq[0]).isEqualTo(1);
    assertThat(Arrays.copyOfRange(seq, 1, 1 + m))
        .isEqualTo(Arrays.copyOfRange(seq, 1 + m, 1 + 2 * m));
    assertThat(Arrays.stream(seq, 1, 1 + m).distinct().count()).isEqualTo(m);
    // a KV head scores as its best query head
    assertThat(EchoInduction.perKvHead(new double[][] {{0.1, 0.4, 0.3, 0.2}}, 2))
        .isDeepEqualTo(new double[][] {{0.4, 0.3}});
  }

  @Test
  void duoScoresAreTheAreaUnderTheCumulativeAttentionOfTheLastPosition() {
    int p = 500;
    double[] uniform = new double[p];
    Arrays.fill(uniform, 1);
    assertThat(DuoScores.areaUnderCumulative(uniform, p))
        .isCloseTo((p + 1) / (2.0 * p), within(1e-12));
    double[] last = new double[p];
    last[p - 1] = 1;
    assertThat(DuoScores.areaUnderCumulative(last, 1)).isCloseTo(1.0 / p, within(1e-12));
    double[] first = new double[p];
    first[0] = 1;
    assertThat(DuoScores.areaUnderCumulative(first, 1)).isCloseTo(1.0, within(1e-12));
    // through RoPE: a zero query attends uniformly; a query along the key attends to the nearest
    // positions (RoPE's relative angle is 0 there), so the head scores low (streaming)
    try (Model model = Model.load(SharedData.model("pycoder-6m-f16.gguf"))) {
      int d = model.config().headDim();
      float[] key = new float[d];
      SplittableRandom r = new SplittableRandom(2);
      for (int i = 0; i < d; i++) {
        key[i] = (float) r.nextGaussian();
      }
      float[] zero = new float[d];
      float[] along = new float[d];
      for (int i = 0; i < d; i++) {
        along[i] = 8 * key[i];
      }
      assertThat(DuoScores.score(zero, key, model.rope(), d, p)).isCloseTo(0.501, within(1e-6));
      assertThat(DuoScores.score(along, key, model.rope(), d, p)).isLessThan(0.05);
    }
  }

  @Test
  void theTextIsReadInWindowsOfTheContextEachAfterTheFirstBosPrefixed() {
    int[] tokens = new int[25];
    for (int i = 0; i < tokens.length; i++) {
      tokens[i] = 100 + i;
    }
    var w = Calibrator.split(tokens, 10, 1);
    assertThat(w).hasSize(3);
    assertThat(w.get(0)).hasSize(10).startsWith(100);
    assertThat(w.get(1)).startsWith(1, 110).hasSize(10);
    assertThat(w.get(2)).containsExactly(1, 119, 120, 121, 122, 123, 124);
  }
}
