package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.gguf.GgmlType;
import io.kvslim.gguf.GgufFile;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SynthCommandTest {
  @TempDir Path dir;

  @Test
  void writesATinyModelWithTheGivenVocabulary() {
    Path vocab = SharedData.require().resolve("tokenizers/ggml-vocab-llama-spm.gguf");
    Path out = dir.resolve("tiny.gguf");
    CliResult r =
        CliResult.run(
            "synth",
            "--shape",
            "tiny",
            "--type",
            "q8_0",
            "--seed",
            "5",
            "--vocab",
            vocab.toString(),
            "--out",
            out.toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    assertThat(r.out()).contains("vocab: SentencePiece vocabulary from").contains("wrote " + out);
    try (GgufFile f = GgufFile.open(out)) {
      assertThat(f.tensor("blk.3.ffn_up.weight").type()).isEqualTo(GgmlType.Q8_0);
      assertThat(f.getStringArray("tokenizer.ggml.tokens")[300]).isNotEmpty();
    }
  }

  @Test
  void longContextAndGqaVariantsLoadWithTheirShape() {
    Path out = dir.resolve("long.gguf");
    CliResult r =
        CliResult.run(
            "synth",
            "--shape",
            "tiny",
            "--type",
            "q4_0",
            "--ctx",
            "16384",
            "--kv-heads",
            "2",
            "--out",
            out.toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    assertThat(r.out()).contains("2 KV heads").contains("context 16384, RoPE base 500000");
    try (io.kvslim.model.Model m = io.kvslim.model.Model.load(out)) {
      assertThat(m.config().contextLength()).isEqualTo(16384);
      assertThat(m.config().kvHeads()).isEqualTo(2);
      assertThat(m.config().heads()).isEqualTo(8);
    }
    Path based = dir.resolve("based.gguf");
    assertThat(
            CliResult.run(
                    "synth",
                    "--shape",
                    "tiny",
                    "--ctx",
                    "4096",
                    "--rope-base",
                    "20000",
                    "--out",
                    based.toString())
                .out())
        .contains("context 4096, RoPE base 20000");
  }

  @Test
  void badOptionsAreOneErrorLine() {
    for (String[] bad :
        new String[][] {
          {"--ctx", "40000", "--ctx must be between 16 and 32768"},
          {"--ctx", "0", "--ctx must be between"},
          {"--kv-heads", "3", "--kv-heads must divide the 8 query heads"},
          {"--rope-base", "NaN", "--rope-base must be a finite number above 1"}
        }) {
      CliResult r =
          CliResult.run(
              "synth",
              "--shape",
              "tiny",
              bad[0],
              bad[1],
              "--out",
              dir.resolve("y.gguf").toString());
      assertThat(r.exitCode()).isEqualTo(1);
      assertThat(r.err()).startsWith("kvslim: " + bad[2]);
      assertThat(dir.resolve("y.gguf")).doesNotExist();
    }
    Path out = dir.resolve("x.gguf");
    CliResult badType =
        CliResult.run("synth", "--shape", "tiny", "--type", "q5_k", "--out", out.toString());
    assertThat(badType.exitCode()).isEqualTo(1);
    assertThat(badType.err()).startsWith("kvslim: unknown weight type 'q5_k'");
    CliResult badVocab =
        CliResult.run(
            "synth",
            "--shape",
            "tiny",
            "--vocab",
            dir.resolve("none.gguf").toString(),
            "--out",
            out.toString());
    assertThat(badVocab.exitCode()).isEqualTo(1);
    assertThat(badVocab.err()).startsWith("kvslim: ").contains("no such file");
    assertThat(out).doesNotExist();
  }
}
