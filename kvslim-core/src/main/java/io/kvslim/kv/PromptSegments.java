package io.kvslim.kv;

import java.util.Arrays;

/**
 * Labels of a prompt's tokens by the part of the conversation they come from (LOOK-M's text prior,
 * METHODS.md H4 step 6): a <em>priority</em> token belongs to the instruction or the question (a
 * system message, the last user message, the template's own markers after them), any other to
 * context that may be evicted first (earlier turns, retrieved documents, tool output). Token {@code
 * i} is the one at position {@code i} of the prompt; a token past the labelled ones (generated
 * text) counts as priority, as does every token of a prompt given without labels.
 */
public final class PromptSegments {
  private final boolean[] priority;

  /** Labels {@code priority[i]} for the prompt's token {@code i}. */
  public PromptSegments(boolean[] priority) {
    this.priority = priority.clone();
  }

  /** {@code n} tokens, all priority. */
  public static PromptSegments allPriority(int n) {
    boolean[] p = new boolean[n];
    Arrays.fill(p, true);
    return new PromptSegments(p);
  }

  /** Labelled tokens. */
  public int length() {
    return priority.length;
  }

  /** Whether the token at prompt position {@code position} is priority (true past the labels). */
  public boolean isPriority(int position) {
    return position < 0 || position >= priority.length || priority[position];
  }

  /** How many labelled tokens are not priority. */
  public int nonPriority() {
    int c = 0;
    for (boolean b : priority) {
      c += b ? 0 : 1;
    }
    return c;
  }
}
