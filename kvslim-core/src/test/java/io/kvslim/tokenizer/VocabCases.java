package io.kvslim.tokenizer;

import io.kvslim.SharedData;
import io.kvslim.gguf.GgufFile;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * llama.cpp's tokenizer test vectors in {@code ../shared/tokenizers}: {@code X.gguf.inp} holds
 * texts, each followed by a line {@code __ggml_vocab_test__}; {@code X.gguf.out} the expected ids
 * of each text (add_special=false, parse_special=false), one line per text.
 */
final class VocabCases {
  static final List<String> VOCABS =
      List.of(
          "llama-spm", "phi-3", "gpt-2", "starcoder", "deepseek-coder", "deepseek-llm", "falcon");

  private static final String SEPARATOR = "\n__ggml_vocab_test__\n";
  private static final Map<String, Tokenizer> TOKENIZERS = new ConcurrentHashMap<>();

  record Case(String text, int[] expected) {}

  private VocabCases() {}

  static Path file(String vocab) {
    return SharedData.require().resolve("tokenizers").resolve("ggml-vocab-" + vocab + ".gguf");
  }

  /** Tokenizers are shared across tests: loading a 100k vocabulary takes a moment. */
  static Tokenizer tokenizer(String vocab) {
    return TOKENIZERS.computeIfAbsent(
        vocab,
        v -> {
          try (GgufFile gguf = GgufFile.open(file(v))) {
            return Tokenizer.fromGguf(gguf);
          }
        });
  }

  static List<Case> cases(String vocab) {
    Path gguf = file(vocab);
    try {
      String inp = Files.readString(Path.of(gguf + ".inp"), StandardCharsets.UTF_8);
      List<String> out = Files.readAllLines(Path.of(gguf + ".out"), StandardCharsets.UTF_8);
      List<String> texts = new ArrayList<>();
      int pos = 0;
      while (pos < inp.length()) {
        int next = inp.indexOf(SEPARATOR, pos);
        if (next < 0) {
          texts.add(inp.substring(pos));
          break;
        }
        texts.add(inp.substring(pos, next));
        pos = next + SEPARATOR.length();
      }
      if (texts.size() != out.size()) {
        throw new IllegalStateException(
            vocab + ": " + texts.size() + " texts but " + out.size() + " expected lines");
      }
      List<Case> cases = new ArrayList<>();
      for (int i = 0; i < texts.size(); i++) {
        String line = out.get(i).strip();
        int[] ids =
            line.isEmpty()
                ? new int[0]
                : Arrays.stream(line.split(" ")).mapToInt(Integer::parseInt).toArray();
        cases.add(new Case(texts.get(i), ids));
      }
      return cases;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
