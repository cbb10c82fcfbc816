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
  void badOptionsAreOneErrorLine() {
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
