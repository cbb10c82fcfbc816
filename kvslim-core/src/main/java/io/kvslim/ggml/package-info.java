/**
 * One codec per ggml block type ({@link io.kvslim.ggml.Q8_0Codec}, {@link
 * io.kvslim.ggml.Q4_0Codec}, ..., {@link io.kvslim.ggml.Q6_KCodec}, and the activation types {@link
 * io.kvslim.ggml.Q8_1Codec} and {@link io.kvslim.ggml.Q8_KCodec}): the block layout, ggml's
 * reference quantizer and dequantizer, the integer codes, and a scalar dot product, all behind
 * {@link io.kvslim.ggml.BlockCodec}. The weight matrices ({@code io.kvslim.tensor}), llama.cpp's
 * activation conversion ({@code ActivationQuant}), the quantizer that writes GGUF tensors ({@code
 * Quantizer}) and the KV cache's block formats ({@code io.kvslim.kv.format}) read and write blocks
 * only through these classes; their vector kernels take the layout constants from here.
 *
 * <p><b>Internal:</b> not part of kvslim's public API, which is {@link io.kvslim.api}; it may
 * change in any release.
 */
package io.kvslim.ggml;
