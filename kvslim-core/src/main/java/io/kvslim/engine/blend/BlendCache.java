package io.kvslim.engine.blend;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.LayerKv;
import java.util.Arrays;

/**
 * The view of a sequence's cache that one blended prefill runs through (METHODS.md H1 steps 3–4).
 * The step's rows are the whole prompt at positions {@code 0..n)}; its first {@code cached} rows
 * are the chunks, whose stored keys and values (already re-rotated to these positions) are {@code
 * keys[l]} and {@code values[l]}.
 *
 * <ul>
 *   <li>Layers before the check layer take every row's fresh keys and values.
 *   <li>The check layer takes them too, and selects the {@code recompute} chunk rows whose fresh
 *       values deviate most from the stored ones, plus every suffix row: only those rows' queries
 *       attend and go on ({@link LayerKv#queryRows}).
 *   <li>The deeper layers receive the selected rows' fresh keys and values and hand the cache all
 *       {@code n} rows in position order: the stored ones with the selected rows overwritten.
 * </ul>
 *
 * <p>As in the authors' code (YaoJiayi/CacheBlend, {@code
 * vllm_blend/vllm/attention/backends/xformers.py} lines 204–221: status 1 ranks by the squared
 * value difference summed over heads, takes {@code int(chunk_tokens × recomp_ratio)}, sorts the
 * indices and appends the suffix; lines 240–246: status 2 writes the recomputed rows over the old
 * KV; {@code vllm_blend/vllm/model_executor/models/llama.py} lines 264–265 and 373–376: the
 * residual and positions narrow to the selected rows after the check layer). Unlike that code the
 * selected rows attend causally by their own positions (it uses a bottom-right mask).
 */
final class BlendCache implements KvCache {
  private final KvCache inner;
  private final LayerKv[] layers;
  private final int rows;
  private final int cached;
  private final int recompute;
  private final int[] positions;
  private int[] selected; // ascending, from the check layer

  /**
   * @param recompute how many of the {@code cached} chunk rows are recomputed
   */
  BlendCache(
      KvCache inner,
      int checkLayer,
      int rows,
      int cached,
      int recompute,
      float[][] keys,
      float[][] values) {
    this.inner = inner;
    this.rows = rows;
    this.cached = cached;
    this.recompute = recompute;
    this.positions = new int[rows];
    for (int i = 0; i < rows; i++) {
      positions[i] = i;
    }
    this.layers = new LayerKv[inner.layerCount()];
    for (int l = 0; l < layers.length; l++) {
      LayerKv layer = inner.layer(l);
      if (l < checkLayer) {
        layers[l] = layer;
      } else if (l == checkLayer) {
        layers[l] = new CheckLayer(layer, values[l]);
      } else {
        layers[l] = new FusedLayer(layer, keys[l], values[l]);
      }
    }
  }

  /** The rows selected at the check layer (ascending), null before it ran. */
  int[] selected() {
    return selected;
  }

  /**
   * The {@code k} rows of {@code rows} whose {@code fresh} vectors ({@code width} floats each) are
   * farthest from {@code stored} in squared L2 distance, ascending; ties go to the lower row.
   */
  static int[] mostDeviating(float[] fresh, float[] stored, int rows, int width, int k) {
    double[] d = new double[rows];
    Integer[] order = new Integer[rows];
    for (int r = 0; r < rows; r++) {
      double s = 0;
      for (int j = r * width, e = j + width; j < e; j++) {
        double diff = (double) fresh[j] - stored[j];
        s += diff * diff;
      }
      d[r] = s;
      order[r] = r;
    }
    Arrays.sort(order, (a, b) -> d[a] != d[b] ? Double.compare(d[b], d[a]) : Integer.compare(a, b));
    int[] top = new int[k];
    for (int i = 0; i < k; i++) {
      top[i] = order[i];
    }
    Arrays.sort(top);
    return top;
  }

  @Override
  public int layerCount() {
    return layers.length;
  }

  @Override
  public LayerKv layer(int layer) {
    return layers[layer];
  }

  @Override
  public long bytes() {
    return inner.bytes();
  }

  @Override
  public void close() {
    // the sequence's cache stays open: this is only a view of it for one prefill
  }

  private void checkRows(int n, int[] at) {
    if (n != rows) {
      throw new IllegalStateException("a blended prefill runs its " + rows + " rows at once");
    }
    for (int i = 0; i < n; i++) {
      if (at[i] != i) {
        throw new IllegalStateException("a blended prefill starts at position 0");
      }
    }
  }

  private final class CheckLayer extends ForwardingLayer {
    private final float[] stored;

    CheckLayer(LayerKv inner, float[] stored) {
      super(inner);
      this.stored = stored;
    }

    @Override
    public void append(int n, int[] at, float[] k, float[] v) {
      checkRows(n, at);
      inner.append(n, at, k, v);
      int[] top = mostDeviating(v, stored, cached, inner.kvHeads() * inner.headDim(), recompute);
      int[] keep = Arrays.copyOf(top, recompute + rows - cached);
      for (int i = cached; i < rows; i++) {
        keep[recompute + i - cached] = i; // the suffix is always computed
      }
      selected = keep;
    }

    @Override
    public int[] queryRows(int n) {
      return selected.length == n ? null : selected;
    }
  }

  private final class FusedLayer extends ForwardingLayer {
    private final float[] keys;
    private final float[] values;

    FusedLayer(LayerKv inner, float[] keys, float[] values) {
      super(inner);
      this.keys = keys;
      this.values = values;
    }

    @Override
    public void append(int n, int[] at, float[] k, float[] v) {
      int width = inner.kvHeads() * inner.headDim();
      if (n != selected.length) {
        throw new IllegalStateException(
            "a fused layer expects the " + selected.length + " selected rows, got " + n);
      }
      float[] allK = Arrays.copyOf(keys, rows * width);
      float[] allV = Arrays.copyOf(values, rows * width);
      for (int i = 0; i < n; i++) {
        int p = at[i];
        if (p != selected[i]) {
          throw new IllegalStateException("row " + i + " is at " + p + ", not " + selected[i]);
        }
        System.arraycopy(k, i * width, allK, p * width, width);
        System.arraycopy(v, i * width, allV, p * width, width);
      }
      inner.append(rows, positions, allK, allV);
    }
  }
}
