package io.kvslim.fuzz;

import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.kvslim.gguf.GgufFile;
import io.kvslim.gguf.GgufFormatException;
import io.kvslim.gguf.GgufValue;
import io.kvslim.gguf.TensorInfo;
import io.kvslim.model.Model;
import io.kvslim.tokenizer.Tokenizer;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

/**
 * Coverage-guided fuzzing of the GGUF parser and the model loader (Jazzer): any byte string either
 * loads as a model and tokenizer, or fails with the documented one-sentence errors, {@link
 * GgufFormatException} from the file and the model, {@link IllegalArgumentException} from the
 * tokenizer. Anything else, any {@link Error} included, is a finding. The seeds are the tiny test
 * model ({@code io.kvslim.TinyModel}) in F32 and Q8_0; without {@code JAZZER_FUZZ} only they run.
 * See the README's robustness section for the fuzzing commands.
 */
class GgufLoaderFuzzTest {
  private static final Path NAME = Path.of("fuzz.gguf");

  @FuzzTest(maxDuration = "60s")
  void parseAndLoad(byte[] data) {
    try (Arena arena = Arena.ofConfined()) {
      // native and page-aligned, like the memory map of a real file
      MemorySegment seg = arena.allocate(Math.max(1, data.length), 4096);
      MemorySegment.copy(MemorySegment.ofArray(data), 0, seg, 0, data.length);
      seg = seg.asSlice(0, data.length);
      GgufFile file;
      try {
        file = GgufFile.read(NAME, seg, warning -> {});
      } catch (GgufFormatException e) {
        assertNamesTheFile(e);
        return;
      }
      try (file) {
        readEverything(file);
        try {
          Tokenizer tok = Tokenizer.fromGguf(file);
          assertThat(tok.vocabSize()).isPositive();
        } catch (GgufFormatException e) {
          assertNamesTheFile(e);
        } catch (IllegalArgumentException e) {
          FuzzChecks.assertPrintable(e);
        }
        try {
          Model m = Model.of(file);
          assertThat(m.config().vocabSize()).isPositive();
        } catch (GgufFormatException e) {
          assertNamesTheFile(e);
        }
      }
    }
  }

  /** Every metadata value and every tensor's bytes are reachable once the file has opened. */
  private static void readEverything(GgufFile f) {
    for (GgufValue v : f.metadata().values()) {
      assertThat(v.toString()).isNotNull();
    }
    for (TensorInfo t : f.tensors()) {
      MemorySegment s = f.tensorData(t);
      if (s.byteSize() > 0) {
        s.get(java.lang.foreign.ValueLayout.JAVA_BYTE, s.byteSize() - 1);
      }
    }
  }

  private static void assertNamesTheFile(GgufFormatException e) {
    FuzzChecks.assertPrintable(e);
    assertThat(e.getMessage()).startsWith(NAME + ": ");
  }
}
