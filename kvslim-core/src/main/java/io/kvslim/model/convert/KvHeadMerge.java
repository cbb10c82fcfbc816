package io.kvslim.model.convert;

import io.kvslim.engine.Engine;
import io.kvslim.gguf.GgmlType;
import io.kvslim.gguf.GgufFile;
import io.kvslim.gguf.GgufWriter;
import io.kvslim.gguf.TensorInfo;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import io.kvslim.model.ModelConfig.RopeType;
import io.kvslim.tensor.Quantizer;
import io.kvslim.tensor.WeightMatrix;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.function.LongConsumer;
import org.ejml.data.DMatrixRMaj;
import org.ejml.dense.row.CommonOps_DDRM;
import org.ejml.dense.row.factory.DecompositionFactory_DDRM;
import org.ejml.interfaces.decomposition.SingularValueDecomposition_F64;

/**
 * MHA→GQA by aligning heads before merging them (Jin et al. 2024, "Align Attention Heads Before
 * Merging Them: An Effective Way for Converting MHA to GQA", arXiv:2412.20677 §3; METHODS.md S5),
 * training-free: every {@code factor} consecutive KV heads of a layer become one.
 *
 * <ol>
 *   <li>Calibration: the text runs with an F32 cache; per layer, each KV head's keys and values are
 *       compared with those of the first head of its group (the reference), token by token.
 *   <li>Keys: per RoPE frequency pair (the model's own pairing: adjacent in llama.cpp's normal
 *       mode, half-split in NeoX mode), the proper 2×2 rotation that best maps the head's pair onto
 *       the reference's, {@code θ = atan2(Σ(x₁y₂ − x₂y₁), Σ(x₁y₁ + x₂y₂))} (2-D Procrustes).
 *       Rotating both vectors by the same RoPE angle leaves both sums unchanged, so the cached
 *       (rotated) keys give the same θ as keys before RoPE, and the rotation commutes with RoPE.
 *       Channels past the rotary dimensions keep the identity.
 *   <li>Values: the orthogonal Q minimising {@code ‖V_i Q − V_ref‖} (Procrustes: {@code Q = U Wᵀ}
 *       for {@code V_iᵀ V_ref = U Σ Wᵀ}, by EJML's SVD).
 *   <li>Fold (exact): {@code W_k ← R W_k}, {@code W_q ← R W_q} for the head's query heads ({@code
 *       q·k} unchanged), {@code W_v ← Qᵀ W_v} and {@code W_o[:, h] ← W_o[:, h] Q} for its query
 *       heads (the output unchanged); biases likewise.
 *   <li>Merge: the group's key and value projections (and biases) averaged. The paper instead
 *       switches heads to the shared projection with L0 masks and distils; that training is not
 *       done here, so the merged model loses quality the paper recovers.
 * </ol>
 *
 * Changed tensors keep their type when {@link Quantizer} can write it (F32, F16 and the llama.cpp
 * block types, re-quantized from the new floats), else they are written in F32.
 */
public final class KvHeadMerge {
  private KvHeadMerge() {}

  /**
   * The fitted rotations: angles {@code [layer][kvHead][pair]}, value Q {@code [layer][kvHead]}.
   */
  public record Alignment(double[][][] keyAngles, double[][][] valueQ, int factor, int tokens) {}

  /**
   * Fits the alignment on {@code windows} of token ids (each run from an empty F32 cache), with
   * each KV head aligned to the first of its group of {@code factor}.
   */
  public static Alignment fit(
      Engine engine, List<int[]> windows, int factor, LongConsumer progress) {
    ModelConfig c = engine.config();
    int hd = c.headDim();
    int pairs = c.ropeDims() / 2;
    double[][][] cross = new double[c.layers()][c.kvHeads()][pairs];
    double[][][] dot = new double[c.layers()][c.kvHeads()][pairs];
    double[][][] m = new double[c.layers()][c.kvHeads()][hd * hd];
    KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
    Arrays.fill(formats, KvCacheFormat.of(KvFormats.F32));
    float[] logits = new float[c.vocabSize()];
    float[] x = new float[hd];
    float[] y = new float[hd];
    int tokens = 0;
    for (int[] w : windows) {
      try (ManagedKvCache cache =
          new ManagedKvCache(new BlockPool(), c.kvHeads(), hd, formats, List.of())) {
        engine.prefill(cache, w, 0, w.length, 0, false, logits);
        for (int l = 0; l < c.layers(); l++) {
          for (int g = 0; g < c.kvHeads(); g++) {
            int ref = g - g % factor;
            if (ref == g) {
              continue;
            }
            HeadStore head = cache.paged(l).store().head(g);
            HeadStore refHead = cache.paged(l).store().head(ref);
            for (int t = 0; t < w.length; t++) {
              head.readKey(t, x);
              refHead.readKey(t, y);
              for (int p = 0; p < pairs; p++) {
                int a = pairFirst(c, p);
                int b = pairSecond(c, p);
                cross[l][g][p] += (double) x[a] * y[b] - (double) x[b] * y[a];
                dot[l][g][p] += (double) x[a] * y[a] + (double) x[b] * y[b];
              }
              head.readValue(t, x);
              refHead.readValue(t, y);
              double[] mg = m[l][g];
              for (int i = 0; i < hd; i++) {
                for (int j = 0; j < hd; j++) {
                  mg[i * hd + j] += (double) x[i] * y[j];
                }
              }
            }
          }
        }
      }
      tokens += w.length;
      progress.accept(w.length);
    }
    double[][][] angles = new double[c.layers()][c.kvHeads()][pairs];
    double[][][] q = new double[c.layers()][c.kvHeads()][];
    for (int l = 0; l < c.layers(); l++) {
      for (int g = 0; g < c.kvHeads(); g++) {
        if (g % factor == 0) {
          q[l][g] = identity(hd);
          continue;
        }
        for (int p = 0; p < pairs; p++) {
          angles[l][g][p] = Math.atan2(cross[l][g][p], dot[l][g][p]);
        }
        q[l][g] = procrustes(m[l][g], hd);
      }
    }
    return new Alignment(angles, q, factor, tokens);
  }

  /** No alignment: every rotation the identity (heads merged by a plain mean). */
  public static Alignment none(ModelConfig c, int factor) {
    double[][][] q = new double[c.layers()][c.kvHeads()][];
    for (double[][] layer : q) {
      Arrays.setAll(layer, g -> identity(c.headDim()));
    }
    return new Alignment(new double[c.layers()][c.kvHeads()][c.ropeDims() / 2], q, factor, 0);
  }

  /** The first channel of RoPE pair {@code p} in the model's pairing. */
  static int pairFirst(ModelConfig c, int p) {
    return c.ropeType() == RopeType.NEOX ? p : 2 * p;
  }

  static int pairSecond(ModelConfig c, int p) {
    return c.ropeType() == RopeType.NEOX ? p + c.ropeDims() / 2 : 2 * p + 1;
  }

  static double[] identity(int n) {
    double[] out = new double[n * n];
    for (int i = 0; i < n; i++) {
      out[i * n + i] = 1;
    }
    return out;
  }

  /** The orthogonal Q minimising ‖A Q − B‖ given {@code m = Aᵀ B} (row-major n × n): U Wᵀ. */
  static double[] procrustes(double[] m, int n) {
    DMatrixRMaj a = new DMatrixRMaj(n, n, true, m);
    SingularValueDecomposition_F64<DMatrixRMaj> svd =
        DecompositionFactory_DDRM.svd(n, n, true, true, false);
    if (!svd.decompose(a)) {
      throw new IllegalStateException("the SVD of a value cross-covariance did not converge");
    }
    DMatrixRMaj u = svd.getU(null, false);
    DMatrixRMaj vt = svd.getV(null, true);
    DMatrixRMaj out = new DMatrixRMaj(n, n);
    CommonOps_DDRM.mult(u, vt, out);
    return out.data;
  }

  /**
   * Writes {@code model}'s file with the alignment folded in and, when {@code merge}, each group's
   * key and value projections averaged into one head ({@code head_count_kv} divided by the factor).
   */
  public static void write(Model model, Alignment a, boolean merge, Path out) {
    ModelConfig c = model.config();
    GgufFile file = model.file();
    int factor = a.factor();
    int newKv = merge ? c.kvHeads() / factor : c.kvHeads();
    GgufWriter w = new GgufWriter().version(file.version()).alignment(file.alignment());
    w.putAll(file.metadata());
    w.putUInt32(c.architecture() + ".attention.head_count_kv", newKv);
    for (TensorInfo t : file.tensors()) {
      float[] changed = changedTensor(model, a, merge, t.name());
      if (changed == null) {
        w.addTensor(t.name(), t.type(), t.dims(), file.tensorData(t));
        continue;
      }
      long[] dims = t.dims().clone();
      if (merge && (t.name().endsWith("attn_k.weight") || t.name().endsWith("attn_v.weight"))) {
        dims[1] = (long) newKv * c.headDim();
      } else if (merge && (t.name().endsWith("attn_k.bias") || t.name().endsWith("attn_v.bias"))) {
        dims[0] = (long) newKv * c.headDim();
      }
      GgmlType type = Quantizer.supports(t.type()) ? t.type() : GgmlType.F32;
      if (type.blockSize() > 1 && dims[0] % type.blockSize() != 0) {
        type = GgmlType.F32;
      }
      w.addTensor(t.name(), type, dims, Quantizer.quantize(type, changed));
    }
    w.write(out);
  }

  /** The new floats of tensor {@code name} (row-major, GGUF order), or null when unchanged. */
  private static float[] changedTensor(Model model, Alignment a, boolean merge, String name) {
    if (!name.startsWith("blk.")) {
      return null;
    }
    int dot = name.indexOf('.', 4);
    int l = Integer.parseInt(name.substring(4, dot));
    String rest = name.substring(dot + 1);
    var lw = model.layer(l);
    ModelConfig c = model.config();
    return switch (rest) {
      case "attn_q.weight" -> HeadFold.queries(c, a, l, rows(lw.wq()));
      case "attn_k.weight" -> HeadFold.keys(c, a, l, rows(lw.wk()), lw.wk().cols(), merge);
      case "attn_v.weight" -> HeadFold.values(c, a, l, rows(lw.wv()), lw.wv().cols(), merge);
      case "attn_output.weight" -> HeadFold.output(c, a, l, rows(lw.wo()));
      case "attn_q.bias" -> HeadFold.queries(c, a, l, lw.bq().clone());
      case "attn_k.bias" -> HeadFold.keys(c, a, l, lw.bk().clone(), 1, merge);
      case "attn_v.bias" -> HeadFold.values(c, a, l, lw.bv().clone(), 1, merge);
      default -> null;
    };
  }

  /** A weight matrix as floats, row by row. */
  static float[] rows(WeightMatrix m) {
    float[] out = new float[m.rows() * m.cols()];
    for (int r = 0; r < m.rows(); r++) {
      m.dequantizeRow(r, out, r * m.cols());
    }
    return out;
  }
}
