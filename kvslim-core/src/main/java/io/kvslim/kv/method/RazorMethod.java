package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.integer;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.policy.KvPolicy;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Comparator;
import java.util.List;
import java.util.Set;

/**
 * RazorAttention (Tang et al. 2024, "RazorAttention: Efficient KV Cache Compression Through
 * Retrieval Heads", arXiv:2407.15891, Algorithm 1; METHODS.md S1). The authors published no code;
 * this follows the paper's Algorithm 1 and equations 4–5.
 *
 * <ul>
 *   <li><b>Retrieval heads</b> keep every token: the KV heads with the highest induction scores
 *       (the fraction {@code induction}, 14% in the paper) and those with the highest echo scores
 *       (the fraction {@code echo}, 1%), from the profile's {@code razor.kv_induction} and {@code
 *       razor.kv_echo} (a KV head scores as its best query head, METHODS.md S1 step 1), ranked over
 *       the layers the rule covers; {@code round(fraction × heads)} of each (half to even), ties to
 *       the earlier layer and head.
 *   <li><b>The other heads</b>, once the prompt is in (Algorithm 1, after prefill): with N tokens,
 *       a buffer {@code L = max(S0, ⌈N / C⌉)} ({@code buffer} = S0, {@code compression} = C); the
 *       first {@code sinks} tokens (N0) and the last L stay, the rest D are folded into one
 *       compensation entry, {@code k̂ = mean k_D}, {@code v̂ = mean v_D} (eq. 4), weighted |D| in
 *       the softmax (eq. 5, METHODS.md M2; {@link io.kvslim.kv.store.HeadStore#fold}). In decode
 *       the buffer keeps its length: each step folds the token leaving it into the entry
 *       (METHODS.md S1 step 4, our extension; the paper compresses after prefill only). So a
 *       compressed head holds N0 + L tokens plus the entry, |D| + kept = the tokens seen.
 * </ul>
 *
 * C and S0 are not given in the paper's text we could read (unverified); the defaults, C = 5 and S0
 * = 64, give about the paper's 70% reduction with 15% retrieval heads on long prompts, and a 64
 * token floor sized to the bundled model's 1,024-token context.
 */
public final class RazorMethod implements KvMethod {
  @Override
  public String name() {
    return "razor";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Tang et al. 2024, RazorAttention: Efficient KV Cache Compression Through Retrieval"
        + " Heads, arXiv:2407.15891 Alg. 1";
  }

  @Override
  public String summary() {
    return "RazorAttention: retrieval heads keep everything, the rest sinks + buffer + a"
        + " compensation token.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        number("induction", "0.14", "fraction of KV heads kept whole for their induction score")
            .between(0, 1),
        number("echo", "0.01", "fraction of KV heads kept whole for their echo score")
            .between(0, 1),
        integer("sinks", "4", "first tokens every compressed head keeps (N0)").atLeast(0),
        integer("buffer", "64", "least recent tokens a compressed head keeps (S0)").atLeast(1),
        number("compression", "5", "C: a compressed head keeps max(buffer, N/C) recent tokens")
            .atLeast(1));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.CALIBRATION);
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    CalibrationProfile p = c.profileFor(ctx);
    boolean[][] retrieval =
        retrievalHeads(
            p.kvInduction(), p.kvEcho(), ctx.layers(), c.number("induction"), c.number("echo"));
    return new Policy(
        ctx.layers(), retrieval, c.integer("sinks"), c.integer("buffer"), c.number("compression"));
  }

  /**
   * The retrieval KV heads of the covered layers ({@code [layer][kvHead]}): the top {@code
   * round(inductionShare × heads)} by induction score, and the top {@code round(echoShare × heads)}
   * by echo score.
   */
  static boolean[][] retrievalHeads(
      double[][] induction,
      double[][] echo,
      boolean[] layers,
      double inductionShare,
      double echoShare) {
    boolean[][] out = new boolean[layers.length][induction[0].length];
    List<int[]> heads = new ArrayList<>();
    for (int l = 0; l < layers.length; l++) {
      for (int g = 0; layers[l] && g < induction[l].length; g++) {
        heads.add(new int[] {l, g});
      }
    }
    markTop(heads, induction, (int) Math.rint(heads.size() * inductionShare), out);
    markTop(heads, echo, (int) Math.rint(heads.size() * echoShare), out);
    return out;
  }

  private static void markTop(List<int[]> heads, double[][] scores, int k, boolean[][] out) {
    List<int[]> sorted = new ArrayList<>(heads); // stable: ties to the earlier head
    sorted.sort(Comparator.comparingDouble((int[] h) -> -scores[h[0]][h[1]]));
    for (int i = 0; i < k; i++) {
      out[sorted.get(i)[0]][sorted.get(i)[1]] = true;
    }
  }

  /** Sinks + a buffer + a compensation entry in every covered head that is not retrieval. */
  static final class Policy implements KvPolicy {
    private final boolean[] layers;
    private final boolean[][] retrieval;
    private final int sinks;
    private final int minBuffer;
    private final double compression;
    private final int[][] buffer; // L_h, 0 until the prompt is in
    private final BitSet scratch = new BitSet();

    Policy(boolean[] layers, boolean[][] retrieval, int sinks, int minBuffer, double compression) {
      this.layers = layers;
      this.retrieval = retrieval;
      this.sinks = sinks;
      this.minBuffer = minBuffer;
      this.compression = compression;
      this.buffer = new int[layers.length][retrieval[0].length];
    }

    /**
     * After the prompt, fixes each compressed head's buffer {@code L = max(S0, ⌈N/C⌉)}; after every
     * step, folds the tokens between the sinks and the last L into the compensation entry.
     */
    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      for (int l = 0; l < layers.length; l++) {
        if (!layers[l]) {
          continue;
        }
        PagedLayerKv layer = cache.paged(l);
        for (int g = 0; g < layer.kvHeads(); g++) {
          if (retrieval[l][g]) {
            continue;
          }
          int n = layer.size(g);
          if (buffer[l][g] == 0) {
            buffer[l][g] = Math.max(minBuffer, (int) Math.ceil(n / compression));
          }
          int keep = buffer[l][g];
          if (n > sinks + keep) {
            scratch.clear();
            scratch.set(sinks, n - keep);
            layer.fold(g, scratch);
          }
        }
      }
    }
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("razor", "razor:compression=10,buffer=32");
  }

  @Override
  public String specKeeping(int tokens) {
    return "razor:induction=1";
  }

  @Override
  public String specCompressing(int tokens) {
    return "razor:induction=0.25,buffer=" + Math.max(1, tokens / 8) + ",compression=16";
  }
}
