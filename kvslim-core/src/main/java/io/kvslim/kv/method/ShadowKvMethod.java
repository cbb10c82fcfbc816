package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.QuestPages;
import io.kvslim.kv.policy.RecallPolicy;
import io.kvslim.kv.policy.Selection;
import io.kvslim.kv.store.HeadStore;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.Set;

/**
 * ShadowKV's sparse recall (Sun et al. 2024, "ShadowKV: KV Cache in Shadows for High-Throughput
 * Long-Context LLM Inference", arXiv:2410.21465; METHODS.md N8) in its exact-keys form (METHODS.md
 * N8 "Composes": {@code exact_keys=true}, keys read instead of rebuilt from the rank-R factor).
 * Followed in bytedance/ShadowKV {@code models/kv_cache.py}, class {@code ShadowKVCache}:
 *
 * <ul>
 *   <li>After the prompt of {@code n} tokens (here at the first decode step, per layer and KV
 *       head): {@code chunks = n / chunk − local} chunks of {@code chunk} tokens from the start;
 *       the last {@code n − chunks·chunk} tokens (the local chunks and the remainder) stay exact in
 *       RAM ({@code prefill_kv_cache}, lines 232-241).
 *   <li>Landmark of a chunk: the mean of its post-RoPE keys; the {@code outliers} chunks with the
 *       lowest minimum cosine similarity between landmark and key are kept exact in RAM, the others
 *       keep only their landmark (lines 243-275).
 *   <li>Decode, per KV head: chunk score = the softmax over the landmarks of {@code q·L/√d} per
 *       query head, the max over the group's query heads; the top {@code budget/chunk} chunks are
 *       recalled (the values from the cold tier; {@code get_retrieval_position_ids}, lines
 *       277-296). The reference divides by √128 whatever the head size; here by √d, the model's.
 *   <li>Attention: exact over local + outlier + selected chunks + every generated token (lines
 *       298-336).
 * </ul>
 *
 * <p>Not done: the low-rank key factor (rank-R SVD of the layer's pre-RoPE prompt keys, keys
 * rebuilt and re-rotated for the selected chunks); keys are read exact, so selection by landmarks
 * is the only approximation. On the bundled model (2 KV heads × 64 = 128 key columns) the
 * reference's rank 160 would rebuild the keys exactly anyway. The KV stays in RAM: the policy
 * counts what a cold tier would send each step ({@link Policy#bytesRead}: keys and values of the
 * selected chunks) and what is attended ({@link Policy#decodeBytesAttended}).
 */
public final class ShadowKvMethod implements KvMethod {
  @Override
  public String name() {
    return "shadowkv";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Sun et al. 2024, ShadowKV: KV Cache in Shadows for High-Throughput Long-Context LLM"
        + " Inference, arXiv:2410.21465";
  }

  @Override
  public String summary() {
    return "ShadowKV: decode recalls the chunks whose mean key scores highest, plus outlier"
        + " chunks and a local window kept exact.";
  }

  @Override
  public List<Knob> knobs() {
    return SpillKnobs.with(
        List.of(
            budget("budget", "2048", "tokens recalled per KV head and step (sparse_budget)"),
            integer("chunk", "8", "tokens a chunk (chunk_size)").between(1, 1024),
            integer("local", "4", "last prompt chunks kept exact (local_chunk)").atLeast(0),
            integer("outliers", "48", "chunks with the least uniform keys kept exact").atLeast(0)));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.QUERIES);
  }

  @Override
  public void validate(MethodCall c) {
    if (c.budget("budget").kind() == Budget.Kind.BYTES) {
      throw new KvSpecException(
          "shadowkv's budget is tokens or a ratio of the prompt, not bytes: it evicts nothing");
    }
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    return new Policy(c, ctx);
  }

  /** Nothing is evicted: the cache holds every token. */
  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    return (long) prompt + maxNew;
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("shadowkv:budget=10%,outliers=2", "shadowkv:budget=20%,outliers=2");
  }

  @Override
  public String specKeeping(int tokens) {
    return "shadowkv:budget=" + tokens;
  }

  @Override
  public String specCompressing(int tokens) {
    return "shadowkv:budget=" + Math.max(4, tokens / 4) + ",chunk=4,local=2,outliers=1";
  }

  /** Per (layer, KV head): landmarks of the recallable chunks and the exact chunks. */
  private static final class HeadState {
    int seen = -1; // tokens (with the current one) at the last step; -1 before the first
    int chunks; // prompt chunks (recallable and outliers); tokens from chunks·chunk on are exact
    int[] recallable = new int[0]; // chunk indices with a landmark
    float[] landmarks = new float[0]; // recallable.length × dim
    final BitSet outlier = new BitSet();
    int select; // chunks recalled a step
  }

  /** Per sequence: every (layer, KV head)'s landmarks and each decode step's recall. */
  public static final class Policy extends RecallPolicy<HeadState> {
    private final Budget budget;
    private final int chunk;
    private final int local;
    private final int outliers;
    private final BitSet chosen = new BitSet();
    private BitSet[] selections = new BitSet[0]; // per KV head: attention reads it after the loop
    private final BitSet recalled = new BitSet();
    private final BitSet resident = new BitSet();
    private float[] score = new float[0];
    private float[] head = new float[0];
    private float[] keys = new float[0];

    Policy(MethodCall c, PolicyContext ctx) {
      super(ctx.layers(), ctx.headDim(), HeadState::new, SpillKnobs.of(c));
      this.budget = c.budget("budget");
      this.chunk = c.integer("chunk");
      this.local = c.integer("local");
      this.outliers = c.integer("outliers");
    }

    @Override
    protected void recall(
        PagedLayerKv paged, int g, HeadState st, float[] q, int head0, int group, float scale) {
      if (selections.length <= g) {
        selections = java.util.Arrays.copyOf(selections, g + 1);
      }
      if (selections[g] == null) {
        selections[g] = new BitSet();
      }
      BitSet tokens = selections[g];
      HeadStore store = paged.head(g);
      int total = paged.size(g); // with the current token
      if (st.seen < 0 || total != st.seen + 1) {
        start(store, st, total - 1);
      }
      st.seen = total;
      int landmarks = st.recallable.length;
      if (st.select >= landmarks) {
        count(0, QuestPages.bytes(store, null));
        return; // every chunk fits the budget: attend over everything
      }
      if (score.length < landmarks) {
        score = new float[Math.max(landmarks, 2 * score.length)];
        head = new float[score.length];
      }
      Arrays.fill(score, 0, landmarks, Float.NEGATIVE_INFINITY);
      for (int h = head0; h < head0 + group; h++) {
        for (int i = 0; i < landmarks; i++) {
          float s = 0f;
          for (int j = 0; j < dim; j++) {
            s += q[h * dim + j] * st.landmarks[i * dim + j];
          }
          head[i] = s * scale;
        }
        poolSoftmax(head, landmarks, score, true);
      }
      chosen.clear();
      Selection.highest(score, 0, landmarks, st.select, chosen);
      tokens.clear();
      recalled.clear();
      for (int i = chosen.nextSetBit(0); i >= 0; i = chosen.nextSetBit(i + 1)) {
        int c = st.recallable[i];
        recalled.set(c * chunk, (c + 1) * chunk);
      }
      tokens.or(recalled);
      for (int c = st.outlier.nextSetBit(0); c >= 0; c = st.outlier.nextSetBit(c + 1)) {
        tokens.set(c * chunk, (c + 1) * chunk);
      }
      tokens.set(st.chunks * chunk, total);
      paged.restrictNextAttention(g, tokens);
      count(QuestPages.bytes(store, recalled), QuestPages.bytes(store, tokens));
    }

    /** Bytes of the landmarks (and their chunk indices) of every (layer, KV head). */
    @Override
    public long indexBytes() {
      long b = 0;
      for (HeadState st : states()) {
        b += 4L * st.landmarks.length + 4L * st.recallable.length;
      }
      return b;
    }

    /** The exact part: the outlier chunks and the tokens after the prompt's chunks. */
    @Override
    protected BitSet resident(HeadState st, int total) {
      resident.clear();
      for (int c = st.outlier.nextSetBit(0); c >= 0; c = st.outlier.nextSetBit(c + 1)) {
        resident.set(c * chunk, (c + 1) * chunk);
      }
      resident.set(Math.min(st.chunks * chunk, total), total);
      return resident;
    }

    @Override
    protected boolean readsAll(HeadState st, int total) {
      return st.seen < 0 || total != st.seen + 1;
    }

    /** Chunks, landmarks and outliers of the prompt's {@code n} tokens. */
    private void start(HeadStore store, HeadState st, int n) {
      double tokensRecalled =
          budget.kind() == Budget.Kind.RATIO ? n * budget.value() : budget.value();
      st.select = (int) (tokensRecalled / chunk);
      st.chunks = Math.max(0, n / chunk - local);
      st.outlier.clear();
      int size = store.size();
      if (keys.length < size * dim) {
        keys = new float[size * dim];
      }
      store.readKeys(keys);
      float[] means = new float[st.chunks * dim];
      float[] minCos = new float[st.chunks];
      for (int c = 0; c < st.chunks; c++) {
        for (int t = c * chunk; t < (c + 1) * chunk; t++) {
          for (int j = 0; j < dim; j++) {
            means[c * dim + j] += keys[t * dim + j];
          }
        }
        for (int j = 0; j < dim; j++) {
          means[c * dim + j] /= chunk;
        }
        float least = Float.POSITIVE_INFINITY;
        for (int t = c * chunk; t < (c + 1) * chunk; t++) {
          least = Math.min(least, cosine(means, c * dim, keys, t * dim, dim));
        }
        minCos[c] = -least; // the highest of these are the least uniform chunks
      }
      Selection.highest(minCos, 0, st.chunks, Math.min(outliers, st.chunks), st.outlier);
      int rest = st.chunks - st.outlier.cardinality();
      st.recallable = new int[rest];
      st.landmarks = new float[rest * dim];
      for (int c = 0, i = 0; c < st.chunks; c++) {
        if (!st.outlier.get(c)) {
          st.recallable[i] = c;
          System.arraycopy(means, c * dim, st.landmarks, i * dim, dim);
          i++;
        }
      }
    }

    /** Cosine similarity as torch's {@code cosine_similarity} (norms floored at 1e-8). */
    private static float cosine(float[] a, int aOff, float[] b, int bOff, int d) {
      double dot = 0;
      double na = 0;
      double nb = 0;
      for (int j = 0; j < d; j++) {
        dot += (double) a[aOff + j] * b[bOff + j];
        na += (double) a[aOff + j] * a[aOff + j];
        nb += (double) b[bOff + j] * b[bOff + j];
      }
      return (float) (dot / (Math.max(Math.sqrt(na), 1e-8) * Math.max(Math.sqrt(nb), 1e-8)));
    }

    /** Chunks kept exact as outliers in (layer, KV head), or -1 before the first decode step. */
    public int outlierChunks(int layer, int kvHead) {
      HeadState st = state(layer, kvHead);
      return st == null ? -1 : st.outlier.cardinality();
    }
  }
}
