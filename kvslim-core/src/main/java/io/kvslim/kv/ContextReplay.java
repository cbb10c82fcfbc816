package io.kvslim.kv;

/**
 * What the engine lends a cache after the prompt's last step and before its {@code
 * afterStep(PREFILL)}, for policies that score the prompt by making the model read more text on top
 * of it (KVzip's context reconstruction, METHODS.md N4): the prompt's tokens, the model's tokenizer
 * and extra forward passes whose keys and values go to a cache of the policy's choosing.
 */
public interface ContextReplay {
  /** The prompt's tokens, in order: token {@code i} is at position {@link #firstPosition} + i. */
  int[] prompt();

  /** The position of the prompt's first token. */
  int firstPosition();

  /**
   * The tokens of {@code text} by the model's own tokenizer, without a beginning-of-sequence token
   * and with special-token text left as text.
   *
   * @throws IllegalStateException when the model file has no tokenizer
   */
  int[] encode(String text);

  /**
   * Runs {@code tokens[0..n)} at consecutive positions from {@code firstPosition} through the
   * model, each layer appending its keys and values to {@code cache}'s layer and attending over it;
   * no logits are computed. The engine's scratch buffers are reused, so the prompt's logits must
   * already have been read.
   */
  void forward(KvCache cache, int[] tokens, int n, int firstPosition);
}
