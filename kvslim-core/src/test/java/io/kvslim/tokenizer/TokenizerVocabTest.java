package io.kvslim.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.FieldSource;

/** Every case of llama.cpp's tokenizer test vectors, for each of the seven vocabularies. */
class TokenizerVocabTest {
  static final List<String> VOCABS = VocabCases.VOCABS;

  @ParameterizedTest(name = "{0}")
  @FieldSource("VOCABS")
  void encodesEveryTestTextLikeLlamaCpp(String vocab) {
    Tokenizer tokenizer = VocabCases.tokenizer(vocab);
    List<VocabCases.Case> cases = VocabCases.cases(vocab);
    List<String> mismatches = new ArrayList<>();
    for (VocabCases.Case c : cases) {
      int[] actual = tokenizer.encode(c.text(), false, false);
      if (!Arrays.equals(actual, c.expected())) {
        mismatches.add(
            "text "
                + quote(c.text())
                + "\n  expected "
                + Arrays.toString(c.expected())
                + "\n  actual   "
                + Arrays.toString(actual));
      }
    }
    int passed = cases.size() - mismatches.size();
    System.out.printf("%s: %d/%d tokenizer cases pass%n", vocab, passed, cases.size());
    assertThat(mismatches)
        .as(
            "%s: %d/%d cases pass; first mismatches:%n%s",
            vocab,
            passed,
            cases.size(),
            String.join("\n", mismatches.subList(0, Math.min(5, mismatches.size()))))
        .isEmpty();
  }

  static String quote(String s) {
    StringBuilder sb = new StringBuilder("\"");
    s.codePoints()
        .forEach(
            cp -> {
              if (cp == '\n') {
                sb.append("\\n");
              } else if (cp == '\t') {
                sb.append("\\t");
              } else if (cp == '\r') {
                sb.append("\\r");
              } else if (cp < 0x20) {
                sb.append(String.format("\\x%02x", cp));
              } else {
                sb.appendCodePoint(cp);
              }
            });
    return sb.append('"').toString();
  }
}
