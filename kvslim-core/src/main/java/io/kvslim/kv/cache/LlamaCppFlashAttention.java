package io.kvslim.kv.cache;

import io.kvslim.ggml.BlockCodec;
import io.kvslim.ggml.Q8_0Codec;
import io.kvslim.kv.AttentionOrder;
import io.kvslim.kv.format.GgmlBlockFormat;
import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.LayerStore;
import io.kvslim.tensor.LlamaCppMath;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * {@link PagedLayerKv}'s attention in {@link AttentionOrder#LLAMA_CPP} over a KV head whose keys
 * and values are all q8_0 or q4_0 blocks: what llama.cpp's CPU backend computes for such a cache,
 * which it attends to only with flash attention ({@code -fa}, required for a quantized V cache).
 * Its kernel, {@code ggml_compute_forward_flash_attn_ext_f16} (ggml/src/ggml-cpu/ggml-cpu.c of
 * ggerganov/llama.cpp c392e50, lines 12340–12480; {@code ..._one_chunk} in ops.cpp since), for one
 * query row:
 *
 * <ol>
 *   <li>the query is converted to q8_0 with the x86 quantizer ({@link Q8_0Codec#quantizeX86}, the
 *       {@code from_float} of the keys' {@code vec_dot_type});
 *   <li>for each cache cell in order, masked cells skipped: {@code s = vec_dot(k, q)·scale}, the
 *       AVX2 {@code ggml_vec_dot_q8_0_q8_0} / {@code ggml_vec_dot_q4_0_q8_0} (ggml-cpu-quants.c):
 *       per 32-value block {@code d = d_k·d_q}, eight lanes each holding the exact integer sum of
 *       four consecutive products, {@code acc_j = fma(d, lane_j, acc_j)}, then {@link
 *       LlamaCppMath#sum8};
 *   <li>online softmax in F32: on a new maximum {@code M}, {@code ms = expf(M_old − M)} scales the
 *       accumulator, else {@code vs = expf(s − M)}; the value row dequantized ({@code code·d},
 *       exact) is added as {@code acc = fma(v, vs, acc)} ({@code ggml_vec_mad_f32}); {@code S =
 *       S·ms + vs} with two roundings (a fused multiply-add there moves the pycoder goldens' q4_0
 *       cases off by up to 0.06 in NLL; unfused they are matched to the goldens' 6 decimals);
 *   <li>the output is {@code acc · (1/S)}.
 * </ol>
 *
 * <p>{@code expf} is taken as correctly rounded; glibc's is not always (0.502 ULP), which is the
 * suspect for the rare tokens that still differ (pycoder q8_0: mean |ΔNLL| 3e-5 against an effect
 * of the quantization of 3e-3).
 *
 * <p>It reads neither attention probabilities (a call that records them, for a policy, runs in the
 * cache's own order) nor keys stored before RoPE. One per layer; buffers are the tile's.
 */
final class LlamaCppFlashAttention {
  private static final int BLOCK = GgmlBlockFormat.BLOCK_VALUES;

  private final LayerStore store;
  private final int headDim;

  LlamaCppFlashAttention(LayerStore store) {
    this.store = store;
    this.headDim = store.headDim();
  }

  /** Whether every block of {@code head} holds q8_0 or q4_0 keys and values (and nothing else). */
  static boolean handles(HeadStore head) {
    if (head.hasCompensation() || head.weights().any()) {
      return false; // weighted entries: PagedLayerKv's own order adds ln w to their logits
    }
    if (head.blocks().isEmpty()) {
      return false;
    }
    for (KvBlock block : head.blocks()) {
      if (!quantized(block.keyFormat())
          || !quantized(block.valueFormat())
          || block.residualValueFormat() != null) {
        return false;
      }
    }
    return true;
  }

  private static boolean quantized(KvFormat f) {
    return f == KvFormats.Q8_0 || f == KvFormats.Q4_0;
  }

  /**
   * Rows {@code [first, last)} of KV head {@code g}, each written to its place in {@code c.out}.
   */
  void attendTile(AttentionTile tile, int g, int first, int last, PagedLayerKv.Call c) {
    HeadStore head = store.head(g);
    int blocks = headDim / BLOCK;
    tile.ensureFlash(headDim);
    tile.setUpRows(g, first, last, c, headDim);
    float[] qCodes = tile.flashQueryCodes;
    float[] qScales = tile.flashQueryScales;
    float[] kCodes = tile.flashKeyCodes;
    float[] lanes = tile.flashLanes;
    float[] value = tile.flashValue;
    float[] acc = tile.flashAcc;
    MemorySegment q8 = tile.flashQueryBlock;
    Q8_0Codec qCodec = Q8_0Codec.INSTANCE;
    for (int r = 0; r < last - first; r++) {
      int position = tile.rowPositions[r];
      int o = tile.rowOffsets[r];
      for (int b = 0; b < blocks; b++) {
        qCodec.quantizeX86(c.queries, o + b * BLOCK, q8, 0);
        qCodec.codes(q8, 0, qCodes, b * BLOCK);
        qScales[b] = qCodec.d(q8, 0);
      }
      Arrays.fill(acc, 0, headDim, 0f);
      float sum = 0f;
      float max = Float.NEGATIVE_INFINITY;
      for (KvBlock block : head.blocks()) {
        if (block.liveCount() == 0 || block.minPosition() > position) {
          continue;
        }
        GgmlBlockFormat keyFormat = (GgmlBlockFormat) block.keyFormat();
        BlockCodec kCodec = keyFormat.codec();
        int rowBytes = keyFormat.rowBytes(headDim);
        MemorySegment keys = block.keys();
        int filled = block.filled();
        int[] positions = tile.flashPositions(filled);
        block.positions(positions, 0);
        for (int s = 0; s < filled; s++) {
          if (!block.isLive(s) || positions[s] > position) {
            continue;
          }
          Arrays.fill(lanes, 0, 8, 0f);
          long row = (long) s * rowBytes;
          for (int b = 0; b < blocks; b++) {
            long at = row + (long) b * kCodec.blockBytes();
            kCodec.codes(keys, at, kCodes, 0);
            float d = kCodec.d(keys, at) * qScales[b];
            for (int lane = 0; lane < 8; lane++) {
              int j = 4 * lane;
              int q0 = b * BLOCK + j;
              float sumi =
                  kCodes[j] * qCodes[q0]
                      + kCodes[j + 1] * qCodes[q0 + 1]
                      + kCodes[j + 2] * qCodes[q0 + 2]
                      + kCodes[j + 3] * qCodes[q0 + 3]; // integers below 2^24: exact
              lanes[lane] = Math.fma(d, sumi, lanes[lane]);
            }
          }
          float score = LlamaCppMath.sum8(lanes) * c.scale;
          float ms = 1f;
          float vs = 1f;
          if (score > max) {
            float old = max;
            max = score;
            ms = expf(old - max);
            for (int i = 0; i < headDim; i++) {
              acc[i] *= ms;
            }
          } else {
            vs = expf(score - max);
          }
          block.decodeValue(s, value, 0);
          for (int i = 0; i < headDim; i++) {
            acc[i] = Math.fma(value[i], vs, acc[i]);
          }
          sum = sum * ms + vs; // two roundings: the goldens say GCC did not fuse them
        }
      }
      float inverse = sum == 0f ? 0f : 1f / sum;
      for (int i = 0; i < headDim; i++) {
        c.out[o + i] = acc[i] * inverse;
      }
    }
  }

  /** glibc's {@code expf}: correctly rounded but for rare ties of the double result. */
  private static float expf(float x) {
    return (float) Math.exp(x);
  }
}
