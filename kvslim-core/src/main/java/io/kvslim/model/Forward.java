package io.kvslim.model;

import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.AttentionOrder;
import io.kvslim.kv.LayerKv;
import io.kvslim.tensor.MatMul;
import io.kvslim.tensor.Parallel;
import io.kvslim.tensor.WeightMatrix;
import java.util.Arrays;
import java.util.Objects;
import java.util.function.IntFunction;

/**
 * The transformer forward pass over a {@link Batch}: every matmul sees all rows of the batch at
 * once (weights are read once per step), attention runs per sequence against its own cache. Buffers
 * are reused across steps; nothing is allocated per token once they have grown. How matmuls and
 * attention round is the {@link Numerics} it was built with.
 */
public final class Forward {
  private final Model model;
  private final ModelConfig c;
  private final Parallel pool;
  private int capacity;
  private float[] x, xb, q, k, v, att, proj, hb, hb2;
  private float[] cos, sin;
  private boolean anglesReady; // cos and sin hold this step's angles
  // per thread of the pool: copies of one segment's rows (index 0 also for serial calls)
  private SegmentRows[] segmentRows = {new SegmentRows()};
  private float[] normed = new float[0];
  private final WeightMatrix[] qkv = new WeightMatrix[3];
  private final float[][] qkvOut = new float[3][];
  private IntFunction<AttentionObserver> observers; // by layer, null for none
  private ProjectionListener projections; // pre-RoPE queries and keys, null for none
  private final Numerics numerics;
  private final AttentionOrder attentionOrder;
  private final StepRows step = new StepRows(); // the step's rows as the layers see them

  /** A forward pass with kvslim's own numerics ({@link Numerics#DEFAULT}). */
  public Forward(Model model, Parallel pool) {
    this(model, pool, Numerics.DEFAULT);
  }

  public Forward(Model model, Parallel pool, Numerics numerics) {
    this.model = model;
    this.c = model.config();
    this.pool = pool;
    this.numerics = Objects.requireNonNull(numerics, "numerics");
    this.attentionOrder = numerics.attentionOrder();
    this.cos = new float[c.ropeDims() / 2];
    this.sin = new float[c.ropeDims() / 2];
    ensure(1);
  }

  public Model model() {
    return model;
  }

  public Parallel pool() {
    return pool;
  }

  public Numerics numerics() {
    return numerics;
  }

  /** An observer handed to every attention call (null for none); policies install it. */
  public void setObserver(AttentionObserver observer) {
    this.observers = observer == null ? null : layer -> observer;
  }

  /**
   * An observer per layer ({@code observers.apply(layer)}, null for none): tools that profile
   * attention layer by layer install it. Replaces {@link #setObserver}'s.
   */
  public void setLayerObservers(IntFunction<AttentionObserver> observers) {
    this.observers = observers;
  }

  /**
   * Receives each layer's queries and keys after the projections (and their biases), before RoPE:
   * calibration passes that need them ({@code kvslim calibrate}'s DuoAttention scores) read them
   * here instead of recomputing the model.
   */
  @FunctionalInterface
  public interface ProjectionListener {
    /**
     * @param q {@code rows × heads × headDim} queries, row-major (read {@code rows} rows only)
     * @param k {@code rows × kvHeads × headDim} keys
     */
    void onProjections(int layer, int rows, float[] q, float[] k);

    /** The layer's value rows ({@code rows × kvHeads × headDim}), after {@link #onProjections}. */
    default void onValues(int layer, int rows, float[] v) {}
  }

  /** Installs {@code listener} for every layer of every later step (null removes it). */
  public void setProjectionListener(ProjectionListener listener) {
    this.projections = listener;
  }

  private void ensure(int n) {
    if (n <= capacity) {
      return;
    }
    capacity = Math.max(n, capacity * 2);
    x = new float[capacity * c.dim()];
    xb = new float[capacity * c.dim()];
    proj = new float[capacity * c.dim()];
    q = new float[capacity * c.qDim()];
    att = new float[capacity * c.qDim()];
    k = new float[capacity * c.kvDim()];
    v = new float[capacity * c.kvDim()];
    hb = new float[capacity * c.ffnDim()];
    hb2 = new float[capacity * c.ffnDim()];
  }

  /**
   * Runs the batch through the model, appending its keys and values to each segment's cache, and
   * writes the logits of the batch's logit rows to {@code logits} ({@code logitCount × vocab}).
   */
  public void run(Batch b, float[] logits) {
    int n = b.rows();
    if (n == 0) {
      return;
    }
    ensure(n);
    int dim = c.dim();
    for (int r = 0; r < n; r++) {
      int tok = b.token(r);
      if (tok < 0 || tok >= c.vocabSize()) {
        throw new IllegalArgumentException(
            "token id " + tok + " is outside the vocabulary (0.." + (c.vocabSize() - 1) + ")");
      }
      model.tokenEmbedding().dequantizeRow(tok, x, r * dim);
    }
    anglesReady = false;
    step.reset(b, c.layers());
    for (int l = 0; l < c.layers(); l++) {
      step.ran(l, n);
      int selected = layer(l, b, n);
      if (selected != n) {
        n = selected;
        anglesReady = false; // the rows' positions changed
      }
      int kept = l + 1 < c.layers() ? step.thin(l, b, n, x, dim) : n;
      if (kept != n) {
        n = kept;
        anglesReady = false; // the rows' positions changed
      }
    }
    int vocab = c.vocabSize();
    int nl = b.logitCount();
    if (nl == 0) {
      return;
    }
    if (normed.length < nl * dim) {
      normed = new float[nl * dim];
    }
    for (int i = 0; i < nl; i++) {
      int row = b.logitRow(i);
      float[] from = step.hiddenOf(row, x);
      int off = step.hiddenRow(row) * dim;
      Ops.rmsNorm(normed, i * dim, from, off, model.outputNorm(), dim, c.rmsEps());
    }
    if (logits.length < (long) nl * vocab) {
      throw new IllegalArgumentException("logits buffer too small");
    }
    mm(model.output(), normed, nl, logits);
  }

  /**
   * How many rows layer {@code l} ran in the last {@link #run}: the batch's rows, fewer in the
   * layers after a cache thinned them ({@link LayerKv#keptRows}, PyramidInfer).
   */
  public int rowsOfLayer(int l) {
    return step.ranAt(l);
  }

  /**
   * The final hidden states (after the output norm) of rows {@code 0..rows)} of the last {@link
   * #run}, {@code rows × dim} into {@code out}: what KVSharer's calibration compares.
   */
  public void finalHidden(int rows, float[] out) {
    int dim = c.dim();
    for (int r = 0; r < rows; r++) {
      Ops.rmsNorm(out, r * dim, x, r * dim, model.outputNorm(), dim, c.rmsEps());
    }
  }

  /**
   * The rotary angles of every row's position, computed once per step for all layers, when a layer
   * first needs them (none does when every cache applies RoPE itself).
   */
  private void angles(Batch b, int n) {
    if (anglesReady) {
      return;
    }
    int half = c.ropeDims() / 2;
    if (cos.length < n * half) {
      cos = new float[n * half];
      sin = new float[n * half];
    }
    for (int r = 0; r < n; r++) {
      model.rope().angles(step.positions()[r], cos, sin, r * half);
    }
    anglesReady = true;
  }

  /** Runs layer {@code l} on {@code n} rows; the rows that go on ({@link LayerKv#queryRows}). */
  private int layer(int l, Batch b, int n) {
    LayerWeights w = model.layer(l);
    int dim = c.dim();
    for (int r = 0; r < n; r++) {
      Ops.rmsNorm(xb, r * dim, x, r * dim, w.attnNorm(), dim, c.rmsEps());
    }
    boolean stores = false;
    for (int s = 0; s < b.segments() && !stores; s++) {
      stores = b.cache(s).layer(l).storesKv();
    }
    if (!stores) {
      // every sequence reads an earlier layer's keys and values (KVSharer): queries only
      mm(w.wq(), xb, n, q);
      if (w.bq() != null) {
        Ops.addBias(q, n, w.bq(), c.qDim());
      }
    } else if (fusable(w.wq(), w.wk(), w.wv())) {
      // the three projections in one dispatch
      qkv[0] = w.wq();
      qkv[1] = w.wk();
      qkv[2] = w.wv();
      qkvOut[0] = q;
      qkvOut[1] = k;
      qkvOut[2] = v;
      if (n == 1) {
        MatMul.matvecs(qkv, xb, qkvOut, pool);
      } else {
        MatMul.matmuls(qkv, xb, n, qkvOut, pool);
      }
    } else {
      mm(w.wq(), xb, n, q);
      mm(w.wk(), xb, n, k);
      mm(w.wv(), xb, n, v);
    }
    if (stores && w.bq() != null) {
      Ops.addBias(q, n, w.bq(), c.qDim());
      Ops.addBias(k, n, w.bk(), c.kvDim());
      Ops.addBias(v, n, w.bv(), c.kvDim());
    }
    if (projections != null && stores) {
      projections.onProjections(l, n, q, k);
      projections.onValues(l, n, v);
    }
    Rope rope = model.rope();
    int half = c.ropeDims() / 2;
    for (int s = 0; s < b.segments(); s++) {
      if (b.cache(s).layer(l).appliesRope(rope)) {
        continue; // the cache stores keys before RoPE and rotates at positions of its own
      }
      angles(b, n);
      for (int r = step.start(s); r < step.end(s); r++) {
        rope.rotate(q, r * c.qDim(), c.heads(), c.headDim(), cos, sin, r * half);
        if (stores) {
          rope.rotate(k, r * c.kvDim(), c.kvHeads(), c.headDim(), cos, sin, r * half);
        }
      }
    }
    querySelected = -1;
    attention(l, b);
    int m = querySelected >= 0 ? querySelected : n; // a cache kept some rows' queries (CacheBlend)
    mm(w.wo(), att, m, proj);
    for (int s = 0; s < b.segments(); s++) {
      LayerKv kv = b.cache(s).layer(l);
      if (step.end(s) - step.start(s) > 1 && kv.wantsAttentionOutput()) {
        int start = step.start(s);
        kv.attentionOutput(step.end(s) - start, dim, x, proj, start * dim);
      }
    }
    Ops.add(x, proj, m * dim);
    for (int r = 0; r < m; r++) {
      Ops.rmsNorm(xb, r * dim, x, r * dim, w.ffnNorm(), dim, c.rmsEps());
    }
    if (fusable(w.gate(), w.up(), w.up())) {
      // gate, up and SwiGLU in one dispatch, each thread on its own rows of every activation row
      // (each row's products are bit-identical whatever the split)
      WeightMatrix gate = w.gate();
      WeightMatrix up = w.up();
      int ffn = c.ffnDim();
      pool.forRange(
          ffn,
          MatMul.ROW_GRAIN,
          (s, e) -> {
            if (m == 1) {
              gate.dotRows(s, e - s, xb, hb);
              up.dotRows(s, e - s, xb, hb2);
            } else {
              gate.matmulRows(s, e - s, xb, m, hb);
              up.matmulRows(s, e - s, xb, m, hb2);
            }
            for (int r = 0; r < m; r++) {
              Ops.swigluRange(hb, hb2, ffn, r * ffn, s, e);
            }
          });
    } else {
      mm(w.gate(), xb, m, hb);
      mm(w.up(), xb, m, hb2);
      Ops.swiglu(hb, hb2, m, c.ffnDim());
    }
    mm(w.down(), hb, m, proj);
    Ops.add(x, proj, m * dim);
    return m;
  }

  private int querySelected = -1; // rows left after a cache's queryRows in this layer, -1: all

  /** Whether the three matmuls are {@link MatMul}'s (one dispatch may run them together). */
  private boolean fusable(WeightMatrix a, WeightMatrix b, WeightMatrix c) {
    return numerics.fusable(a) && numerics.fusable(b) && numerics.fusable(c);
  }

  private void mm(WeightMatrix w, float[] in, int n, float[] out) {
    numerics.matmul(w, in, n, out, pool);
  }

  private void attend(
      int l, LayerKv kv, int n, int[] positions, float[] q, float scale, float[] out) {
    AttentionObserver observer = observers == null ? null : observers.apply(l);
    kv.attend(n, positions, c.heads(), q, scale, out, observer, pool, attentionOrder);
  }

  private void attention(int l, Batch b) {
    float scale = 1.0f / (float) Math.sqrt(c.headDim()); // llama.cpp's 1.0f/sqrtf(n_embd_head)
    int singles = perSequence(b);
    if (singles < 2) {
      for (int s = 0; s < b.segments(); s++) {
        attendSegment(l, b, s, scale, segmentRows[0]);
      }
      return;
    }
    // prompts (segments of several rows) first, each with its heads split over the pool; then
    // the one-row segments, one sequence per thread
    for (int s = 0; s < b.segments(); s++) {
      if (step.end(s) - step.start(s) != 1) {
        attendSegment(l, b, s, scale, segmentRows[0]);
      }
    }
    attentionPerSequence(l, b, scale, singles);
  }

  /**
   * A segment's positions, queries, keys and values copied to index 0 (attention and appends read
   * their rows from there), and its output before it is copied back.
   */
  private static final class SegmentRows {
    int[] positions = new int[16];
    float[] q = new float[0];
    float[] k = new float[0];
    float[] v = new float[0];
    float[] out = new float[0];

    void ensure(int rows, int qd, int kd) {
      if (positions.length < rows) {
        positions = new int[rows];
      }
      if (q.length < rows * qd) {
        q = new float[rows * qd];
        out = new float[rows * qd];
      }
      if (k.length < rows * kd) {
        k = new float[rows * kd];
        v = new float[rows * kd];
      }
    }
  }

  /**
   * Appends segment {@code s}'s keys and values to its cache and attends over it; a segment after
   * the first goes through the copies in {@code rows}.
   */
  private void attendSegment(int l, Batch b, int s, float scale, SegmentRows rows) {
    int qd = c.qDim();
    int kd = c.kvDim();
    int start = step.start(s);
    int cnt = step.end(s) - start;
    LayerKv kv = b.cache(s).layer(l);
    if (start == 0) {
      kv.append(cnt, step.positions(), k, v);
      int[] only = b.segments() == 1 && cnt > 1 ? kv.queryRows(cnt) : null;
      if (only != null) {
        cnt = step.select(only, b, cnt, x, c.dim());
        for (int i = 0; i < cnt; i++) {
          System.arraycopy(q, only[i] * qd, q, i * qd, qd);
        }
        querySelected = cnt;
      }
      attend(l, kv, cnt, step.positions(), q, scale, att);
      return;
    }
    rows.ensure(cnt, qd, kd);
    System.arraycopy(step.positions(), start, rows.positions, 0, cnt);
    System.arraycopy(q, start * qd, rows.q, 0, cnt * qd);
    System.arraycopy(k, start * kd, rows.k, 0, cnt * kd);
    System.arraycopy(v, start * kd, rows.v, 0, cnt * kd);
    kv.append(cnt, rows.positions, rows.k, rows.v);
    Arrays.fill(rows.out, 0, cnt * qd, 0f);
    attend(l, kv, cnt, rows.positions, rows.q, scale, rows.out);
    System.arraycopy(rows.out, 0, att, start * qd, cnt * qd);
  }

  /**
   * How many of the step's segments are single rows whose attention can run one sequence per thread
   * (a decode step of several sequences, or decode rows next to a prompt chunk), 0 when that does
   * not apply: no pool to share, or an engine-wide observer. Each sequence appends to and attends
   * over its own cache, so sequences are independent; a sequence's attention then runs on one
   * thread instead of its heads being split across the pool, which saves one dispatch per sequence
   * and layer and runs the appends (quantization, for compressed caches) in parallel too. Results
   * are the same as sequence by sequence: each sequence's arithmetic does not depend on the thread
   * it runs on. Lists those segments in {@link #singleSegments}.
   */
  private int perSequence(Batch b) {
    int segments = b.segments();
    if (segments < 2 || pool.threads() < 2 || observers != null) {
      return 0;
    }
    if (singleSegments.length < segments) {
      singleSegments = new int[Math.max(segments, 2 * singleSegments.length)];
    }
    int n = 0;
    for (int s = 0; s < segments; s++) {
      if (step.end(s) - step.start(s) == 1) {
        singleSegments[n++] = s;
      }
    }
    return n;
  }

  private int[] singleSegments = new int[16];

  // the current per-sequence call, read by perSequenceTask (no lambda allocated per layer)
  private final java.util.concurrent.atomic.AtomicInteger nextSequence =
      new java.util.concurrent.atomic.AtomicInteger();
  private int callLayer;
  private Batch callBatch;
  private float callScale;
  private int callCount;
  private final Parallel.ChunkTask perSequenceTask = this::runPerSequence;

  /** The one-row segments {@code singleSegments[0..count)}: threads claim them one at a time. */
  private void attentionPerSequence(int l, Batch b, float scale, int count) {
    int threads = pool.threads();
    if (segmentRows.length < threads) {
      SegmentRows[] grown = Arrays.copyOf(segmentRows, threads);
      for (int i = segmentRows.length; i < threads; i++) {
        grown[i] = new SegmentRows();
      }
      segmentRows = grown;
    }
    callLayer = l;
    callBatch = b;
    callScale = scale;
    callCount = count;
    nextSequence.set(0);
    try {
      pool.forChunks(Math.min(threads, count), 1, perSequenceTask);
    } finally {
      callBatch = null;
    }
  }

  private void runPerSequence(int chunk, int start, int end) {
    SegmentRows rows = segmentRows[chunk];
    for (int i; (i = nextSequence.getAndIncrement()) < callCount; ) {
      attendSegment(callLayer, callBatch, singleSegments[i], callScale, rows);
    }
  }
}
