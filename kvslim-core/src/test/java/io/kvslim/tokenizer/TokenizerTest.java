package io.kvslim.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.gguf.GgufFile;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.FieldSource;

/** Decoding, streaming, special tokens and metadata handling, on the shared vocabularies. */
class TokenizerTest {
  static final List<String> VOCABS = VocabCases.VOCABS;

  @ParameterizedTest(name = "{0}")
  @FieldSource("VOCABS")
  void decodeGivesBackEveryTestText(String vocab) {
    Tokenizer tokenizer = VocabCases.tokenizer(vocab);
    for (VocabCases.Case c : VocabCases.cases(vocab)) {
      int[] ids = tokenizer.encode(c.text(), true, false);
      assertThat(tokenizer.decode(ids))
          .as("%s round trip of %s", vocab, TokenizerVocabTest.quote(c.text()))
          .isEqualTo(c.text());
    }
  }

  @ParameterizedTest(name = "{0}")
  @FieldSource("VOCABS")
  void streamingDecoderHoldsBackSplitCharacters(String vocab) {
    Tokenizer tokenizer = VocabCases.tokenizer(vocab);
    String text = "Llama 🦙 says 你好世界, 🇺🇳 naïve café ∑ 𝔘";
    int[] ids = tokenizer.encode(text, true, false);
    StreamingDecoder decoder = tokenizer.streamingDecoder();
    StringBuilder streamed = new StringBuilder();
    int heldBack = 0;
    for (int id : ids) {
      String part = decoder.feed(id);
      assertThat(part).as("%s: part after token %d", vocab, id).doesNotContain("\uFFFD");
      heldBack += decoder.pendingBytes() > 0 ? 1 : 0;
      streamed.append(part);
    }
    assertThat(decoder.flush()).isEmpty();
    assertThat(streamed.toString()).isEqualTo(text).isEqualTo(tokenizer.decode(ids));
    assertThat(heldBack).as("%s splits some character across tokens", vocab).isPositive();
  }

  @Test
  void byteFallbackTokensOfAnEmojiDecodeOnlyWhenComplete() {
    Tokenizer spm = VocabCases.tokenizer("llama-spm");
    byte[] utf8 = "🦙".getBytes(StandardCharsets.UTF_8);
    int[] ids = new int[utf8.length];
    for (int i = 0; i < utf8.length; i++) {
      ids[i] = spm.tokenId(String.format("<0x%02X>", utf8[i] & 0xFF));
    }
    assertThat(spm.encode("🦙", false, false)).containsExactly(concat(new int[] {29871}, ids));
    StreamingDecoder decoder = spm.streamingDecoder(false);
    assertThat(IntStream.of(ids).mapToObj(decoder::feed).toList())
        .containsExactly("", "", "", "🦙");
    StreamingDecoder truncated = spm.streamingDecoder(false);
    truncated.feed(ids[0]);
    truncated.feed(ids[1]);
    assertThat(truncated.flush()).isEqualTo("\uFFFD");
  }

  @Test
  void streamingContinuationKeepsItsLeadingSpace() {
    Tokenizer spm = VocabCases.tokenizer("llama-spm");
    int[] ids = spm.encode("Hello world", false, false);
    assertThat(spm.decode(ids)).isEqualTo("Hello world");
    StreamingDecoder continuation = spm.streamingDecoder(false);
    StringBuilder sb = new StringBuilder();
    for (int id : ids) {
      sb.append(continuation.feed(id));
    }
    assertThat(sb.toString()).isEqualTo(" Hello world");
  }

  @Test
  void completePrefixStopsBeforeAnUnfinishedCharacter() {
    byte[] euro = "a€".getBytes(StandardCharsets.UTF_8); // 61 E2 82 AC
    assertThat(StreamingDecoder.completePrefix(euro)).isEqualTo(4);
    assertThat(StreamingDecoder.completePrefix(Arrays.copyOf(euro, 3))).isEqualTo(1);
    assertThat(StreamingDecoder.completePrefix(Arrays.copyOf(euro, 2))).isEqualTo(1);
    assertThat(StreamingDecoder.completePrefix(new byte[] {(byte) 0x80})).isEqualTo(1);
    assertThat(StreamingDecoder.completePrefix(new byte[] {(byte) 0xFF})).isEqualTo(1);
  }

  @Test
  void specialTokensAreParsedOnlyWhenAsked() {
    Tokenizer gpt2 = VocabCases.tokenizer("gpt-2");
    int eot = gpt2.tokenId("<|endoftext|>");
    assertThat(eot).isEqualTo(50256);
    assertThat(gpt2.encode("Hi<|endoftext|>", false, true))
        .containsExactly(concat(gpt2.encode("Hi", false, false), new int[] {eot}));
    int[] plain = gpt2.encode("Hi<|endoftext|>", false, false);
    assertThat(plain).doesNotContain(eot).hasSizeGreaterThan(2);
    assertThat(gpt2.decode(plain)).isEqualTo("Hi<|endoftext|>");
    assertThat(gpt2.isEog(eot)).isTrue();
    assertThat(gpt2.decode(new int[] {eot})).as("control tokens are not rendered").isEmpty();
    assertThat(gpt2.tokenBytes(eot)).isEqualTo("<|endoftext|>".getBytes(StandardCharsets.UTF_8));

    Tokenizer spm = VocabCases.tokenizer("llama-spm");
    assertThat(spm.encode("<s>Hello</s>", false, true))
        .containsExactly(concat(new int[] {1}, spm.encode("Hello", false, false), new int[] {2}));
    assertThat(spm.encode("<s>Hello</s>", false, false)).doesNotContain(1, 2);
  }

  @Test
  void userDefinedTokensMatchEvenWithoutParseSpecial() {
    Tokenizer coder = VocabCases.tokenizer("deepseek-coder");
    int user = coder.tokenId("<|User|>");
    assertThat(coder.tokenType(user)).isEqualTo(TokenType.USER_DEFINED);
    assertThat(coder.encode("<|User|>hi", false, false)[0]).isEqualTo(user);
  }

  @Test
  void phi3SpecialTokensSwallowTheFollowingWhitespace() {
    Tokenizer phi3 = VocabCases.tokenizer("phi-3");
    int user = phi3.tokenId("<|user|>");
    int end = phi3.tokenId("<|end|>");
    assertThat(phi3.encode("<|user|>\nHi<|end|>", false, true))
        .containsExactly(
            concat(new int[] {user}, phi3.encode("Hi", false, false), new int[] {end}));
    assertThat(phi3.isEog(end)).isTrue();
  }

  @Test
  void addSpecialFollowsTheMetadata() {
    Tokenizer spm = VocabCases.tokenizer("llama-spm");
    assertThat(spm.bos()).isEqualTo(1);
    assertThat(spm.eos()).isEqualTo(2);
    assertThat(spm.isEog(2)).isTrue();
    assertThat(spm.isEog(1)).isFalse();
    assertThat(spm.encode("Hello", true, false))
        .containsExactly(concat(new int[] {1}, spm.encode("Hello", false, false)));
    assertThat(spm.encode("", true, false)).containsExactly(1);
    assertThat(spm.encode("", false, false)).isEmpty();

    Tokenizer coder = VocabCases.tokenizer("deepseek-coder");
    assertThat(coder.encode("x", true, false)[0]).isEqualTo(32013);

    Tokenizer gpt2 = VocabCases.tokenizer("gpt-2");
    assertThat(gpt2.encode("x", true, false)).containsExactly(gpt2.encode("x", false, false));
  }

  @Test
  void piecesAndBytesOfTokens() {
    Tokenizer spm = VocabCases.tokenizer("llama-spm");
    int hello = spm.tokenId("\u2581Hello");
    assertThat(spm.piece(hello)).isEqualTo("\u2581Hello");
    assertThat(new String(spm.tokenBytes(hello), StandardCharsets.UTF_8)).isEqualTo(" Hello");
    assertThat(spm.tokenBytes(spm.tokenId("<0x0A>"))).containsExactly('\n');
    assertThat(spm.vocabSize()).isEqualTo(32000);
    assertThat(spm.tokenId("no such piece")).isEqualTo(-1);
    assertThatThrownBy(() -> spm.piece(32000)).isInstanceOf(IllegalArgumentException.class);

    Tokenizer gpt2 = VocabCases.tokenizer("gpt-2");
    int world = gpt2.tokenId("\u0120world");
    assertThat(new String(gpt2.tokenBytes(world), StandardCharsets.UTF_8)).isEqualTo(" world");
  }

  @Test
  void preTokenizersSplitLikeTheirRegexes() {
    assertThat(PreTokenizer.forName("llama-bpe").split("Hello world 12345 don't\n\n  x"))
        .containsExactly("Hello", " world", " ", "123", "45", " don", "'t", "\n\n", " ", " x");
    assertThat(PreTokenizer.forName("qwen2").split("ab 2024年"))
        .containsExactly("ab", " ", "2", "0", "2", "4", "年");
    assertThat(PreTokenizer.forName("gpt-2").split("Hello world's  x"))
        .containsExactly("Hello", " world", "'s", " ", " x");
  }

  @Test
  void mergeQueuePopsHighestScoreThenLeftmost() {
    MergeQueue queue = new MergeQueue();
    float[] scores = {-1f, 0f, -0.5f, 3f, -1f, -1000f, -0f};
    for (int left = 0; left < scores.length; left++) {
      queue.add(MergeQueue.key(MergeQueue.descending(scores[left]), left), left * 10L);
    }
    List<Integer> order = new ArrayList<>();
    while (!queue.isEmpty()) {
      order.add((int) queue.poll());
      assertThat(queue.lastPayload()).isEqualTo(order.getLast() * 10L);
    }
    assertThat(order).containsExactly(3, 1, 6, 2, 0, 4, 5);
  }

  // ---- metadata errors ------------------------------------------------------------------------

  @Test
  void unknownTokenizerModelIsOneClearError(@TempDir Path dir) throws IOException {
    Path file =
        new TinyGguf()
            .put("tokenizer.ggml.model", "bert")
            .put("tokenizer.ggml.tokens", new String[] {"a"})
            .write(dir, "bert.gguf");
    assertThatThrownBy(() -> load(file))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("unsupported tokenizer model 'bert'")
        .hasMessageContaining("llama, gpt2");
  }

  @Test
  void missingMetadataIsNamed(@TempDir Path dir) throws IOException {
    Path noModel = new TinyGguf().put("general.name", "x").write(dir, "none.gguf");
    assertThatThrownBy(() -> load(noModel)).hasMessageContaining("'tokenizer.ggml.model'");

    Path noTokens = new TinyGguf().put("tokenizer.ggml.model", "llama").write(dir, "notok.gguf");
    assertThatThrownBy(() -> load(noTokens))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("'tokenizer.ggml.tokens'")
        .hasMessageContaining("notok.gguf");

    Path noMerges =
        new TinyGguf()
            .put("tokenizer.ggml.model", "gpt2")
            .put("tokenizer.ggml.pre", "gpt-2")
            .put("tokenizer.ggml.tokens", new String[] {"a", "b"})
            .write(dir, "nomerges.gguf");
    assertThatThrownBy(() -> load(noMerges)).hasMessageContaining("'tokenizer.ggml.merges'");
  }

  @Test
  void unknownPreTokenizerListsTheSupportedOnes(@TempDir Path dir) throws IOException {
    Path file =
        new TinyGguf()
            .put("tokenizer.ggml.model", "gpt2")
            .put("tokenizer.ggml.pre", "mystery")
            .put("tokenizer.ggml.tokens", new String[] {"a", "b", "ab"})
            .put("tokenizer.ggml.merges", new String[] {"a b"})
            .write(dir, "mystery.gguf");
    assertThatThrownBy(() -> load(file))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("'mystery'")
        .hasMessageContaining("gpt-2")
        .hasMessageContaining("llama-bpe")
        .hasMessageContaining("qwen2")
        .hasMessageContaining("deepseek-llm");
  }

  @Test
  void tinySentencePieceVocabMergesByScore(@TempDir Path dir) throws IOException {
    // "▁ab" can form as ▁a+b or ▁+ab; the higher-scored intermediate wins the first merge.
    List<String> pieces = new ArrayList<>(List.of("<unk>", "<s>", "</s>"));
    for (int b = 0; b < 256; b++) {
      pieces.add(String.format("<0x%02X>", b));
    }
    pieces.addAll(List.of("\u2581", "a", "b", "\u2581a", "ab", "\u2581ab"));
    float[] scores = new float[pieces.size()];
    int[] types = new int[pieces.size()];
    Arrays.fill(types, 1);
    types[0] = 2;
    types[1] = 3;
    types[2] = 3;
    for (int b = 0; b < 256; b++) {
      types[3 + b] = 6;
    }
    int base = 3 + 256;
    scores[base + 3] = -5; // ▁a
    scores[base + 4] = -1; // ab
    scores[base + 5] = -2; // ▁ab
    Path file =
        new TinyGguf()
            .put("tokenizer.ggml.model", "llama")
            .put("tokenizer.ggml.tokens", pieces.toArray(String[]::new))
            .put("tokenizer.ggml.scores", scores)
            .put("tokenizer.ggml.token_type", types)
            .write(dir, "tiny.gguf");
    try (GgufFile gguf = GgufFile.open(file)) {
      Tokenizer t = Tokenizer.fromGguf(gguf);
      assertThat(t.encode("ab", false, false)).containsExactly(base + 5);
      assertThat(t.encode("ba", false, false)).containsExactly(base, base + 2, base + 1);
      // 'c' is not in the vocabulary: its byte token stands in.
      assertThat(t.encode("c", false, false)).containsExactly(base, 3 + 'c');
      assertThat(t.decode(t.encode("abc", true, false))).isEqualTo("abc");
    }
  }

  private static void load(Path file) {
    try (GgufFile gguf = GgufFile.open(file)) {
      Tokenizer.fromGguf(gguf);
    }
  }

  private static int[] concat(int[]... parts) {
    return Arrays.stream(parts).flatMapToInt(Arrays::stream).toArray();
  }
}
