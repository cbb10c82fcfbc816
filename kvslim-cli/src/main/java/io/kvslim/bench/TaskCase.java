package io.kvslim.bench;

import java.util.Map;

/**
 * One scored prompt of a retrieval task: the prompt tokens (BOS first), the expected answer and how
 * it is compared, and where each needle sits (token index of its first token in {@code prompt}).
 *
 * @param setting what identifies the case's group in the results (length, depth, variant)
 * @param sample index of the sample within its group
 * @param needleStarts token index in {@code prompt} of each needle's first token
 * @param needleLengths tokens in each needle
 */
public record TaskCase(
    String task,
    Map<String, Object> setting,
    int sample,
    int[] prompt,
    String answer,
    Metrics.Scoring scoring,
    int maxNewTokens,
    int[] needleStarts,
    int[] needleLengths) {}
