package io.kvslim.model;

import io.kvslim.tensor.WeightMatrix;

/** Weights of one transformer block. Biases are null for architectures without them. */
public record LayerWeights(
    float[] attnNorm,
    WeightMatrix wq,
    WeightMatrix wk,
    WeightMatrix wv,
    float[] bq,
    float[] bk,
    float[] bv,
    WeightMatrix wo,
    float[] ffnNorm,
    WeightMatrix gate,
    WeightMatrix up,
    WeightMatrix down) {}
