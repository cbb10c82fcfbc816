package io.kvslim.bench;

import io.kvslim.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * Builds prompts at the token level so lengths and needle depths are exact: BOS and an intro, then
 * a haystack of filler tokens with needles inserted at the requested depths, then the question.
 * Each piece is tokenized on its own and the token arrays are joined, so a needle always tokenizes
 * the same way wherever it lands.
 */
final class PromptAssembler {
  /** A needle to insert at {@code depth} (0 = start of the haystack, 1 = its end). */
  record Needle(double depth, int[] tokens) {}

  /** The prompt and where each needle landed, in the order the needles were given. */
  record Assembled(int[] tokens, int[] needleStarts, int[] needleLengths) {}

  private final Tokenizer tokenizer;
  private final boolean dummyPrefix;

  PromptAssembler(Tokenizer tokenizer) {
    this.tokenizer = tokenizer;
    // SentencePiece adds the leading space itself; byte-level BPE needs it written
    this.dummyPrefix = tokenizer.model().equals("llama");
  }

  Tokenizer tokenizer() {
    return tokenizer;
  }

  /** Tokens of a piece of text that follows other text (no BOS, a leading word boundary). */
  int[] piece(String text) {
    return tokenizer.encode(dummyPrefix ? text : " " + text, false, false);
  }

  /** BOS (when the model uses one) followed by the intro's tokens. */
  int[] head(String intro) {
    int[] body = intro.isEmpty() ? new int[0] : piece(intro);
    int bos = tokenizer.addsBos() && tokenizer.bos() >= 0 ? tokenizer.bos() : -1;
    if (bos < 0) {
      return body;
    }
    int[] out = new int[body.length + 1];
    out[0] = bos;
    System.arraycopy(body, 0, out, 1, body.length);
    return out;
  }

  /** The first {@code n} tokens of {@code unit} repeated. */
  static int[] tile(int[] unit, int n) {
    if (unit.length == 0 && n > 0) {
      throw new IllegalArgumentException("the haystack text has no tokens");
    }
    int[] out = new int[n];
    for (int i = 0; i < n; i++) {
      out[i] = unit[i % unit.length];
    }
    return out;
  }

  /** Tokens the haystack gets once the head, needles and tail are placed in {@code length}. */
  static int fillerLength(int length, int[] head, List<Needle> needles, int[] tail) {
    int fixed = head.length + tail.length;
    for (Needle n : needles) {
      fixed += n.tokens().length;
    }
    return length - fixed;
  }

  /**
   * A prompt of exactly {@code length} tokens. The haystack is the first tokens of {@code filler};
   * a needle at depth d starts after round(d × haystack tokens) haystack tokens.
   */
  static Assembled assemble(
      String task, int length, int[] head, int[] filler, List<Needle> needles, int[] tail) {
    int fillerLen = fillerLength(length, head, needles, tail);
    if (fillerLen < 0) {
      throw new TaskTooShortException(
          "length "
              + length
              + " is too short for task '"
              + task
              + "': its intro, needles and question take "
              + (length - fillerLen)
              + " tokens");
    }
    if (filler.length < fillerLen) {
      throw new IllegalStateException("haystack has " + filler.length + " < " + fillerLen);
    }
    List<Integer> order = new ArrayList<>();
    for (int i = 0; i < needles.size(); i++) {
      order.add(i);
    }
    order.sort(Comparator.comparingDouble(i -> needles.get(i).depth()));
    int[] out = new int[length];
    int[] starts = new int[needles.size()];
    int[] lengths = new int[needles.size()];
    System.arraycopy(head, 0, out, 0, head.length);
    int at = head.length;
    int taken = 0; // haystack tokens copied so far
    for (int i : order) {
      Needle n = needles.get(i);
      if (n.depth() < 0 || n.depth() > 1) {
        throw new IllegalArgumentException("depth must be in [0, 1], got " + n.depth());
      }
      int offset = (int) Math.round(n.depth() * fillerLen);
      System.arraycopy(filler, taken, out, at, offset - taken);
      at += offset - taken;
      taken = offset;
      starts[i] = at;
      lengths[i] = n.tokens().length;
      System.arraycopy(n.tokens(), 0, out, at, n.tokens().length);
      at += n.tokens().length;
    }
    System.arraycopy(filler, taken, out, at, fillerLen - taken);
    at += fillerLen - taken;
    System.arraycopy(tail, 0, out, at, tail.length);
    return new Assembled(out, starts, lengths);
  }
}
