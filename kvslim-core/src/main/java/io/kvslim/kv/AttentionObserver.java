package io.kvslim.kv;

/**
 * Receives attention probabilities over retained tokens, for policies that score tokens by
 * attention (H2O, TOVA, SnapKV). Only computed when a policy asks for it.
 */
@FunctionalInterface
public interface AttentionObserver {
  /**
   * @param queryIndex index of the query token within the step
   * @param head query head
   * @param kvHead the KV head it reads
   * @param probs probabilities over the KV head's retained tokens, in retained order ({@code
   *     probs[0..count)})
   */
  void observe(int queryIndex, int head, int kvHead, float[] probs, int count);
}
