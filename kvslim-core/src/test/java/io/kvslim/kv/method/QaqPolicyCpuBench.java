package io.kvslim.kv.method;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * CPU time of QAQ's policy on a model (not a test): one engine thread, so every step runs on the
 * calling thread, timed with {@link ThreadMXBean#getCurrentThreadCpuTime}. Prefills {@code depth}
 * tokens, then decodes {@code steps}; reports the thread's CPU time of the prefill and of a decode
 * step with {@code qaq} and with the f16 cache QAQ starts from, and the policy's own share (its
 * {@code afterStep}, which quantizes the judged blocks, and per decode step its {@code onQueries}
 * and {@code observe}). Also prints a digest of every block's bit widths and of the logits, to
 * compare runs before and after a change.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp target/classes:target/test-classes:$(cat target/jmh.cp) \
 *     io.kvslim.kv.method.QaqPolicyCpuBench /tmp/h18-110m.gguf 4096 32
 * </pre>
 */
public final class QaqPolicyCpuBench {
  private static final ThreadMXBean CPU = ManagementFactory.getThreadMXBean();

  /** Delegates to QAQ's policy and sums the CPU time of its calls. */
  static final class Timed implements KvPolicy {
    final QaqMethod.Policy p;
    long afterStep;
    long observe;
    boolean timeObserve;

    Timed(QaqMethod.Policy p) {
      this.p = p;
    }

    @Override
    public boolean observes(int layer) {
      return p.observes(layer);
    }

    @Override
    public boolean wantsQueries(int layer) {
      return p.wantsQueries(layer);
    }

    @Override
    public void onQueries(
        ManagedKvCache cache,
        int layer,
        int rowsNow,
        int[] positions,
        int heads,
        float[] q,
        float scale) {
      long t0 = timeObserve ? CPU.getCurrentThreadCpuTime() : 0;
      p.onQueries(cache, layer, rowsNow, positions, heads, q, scale);
      if (timeObserve) {
        observe += CPU.getCurrentThreadCpuTime() - t0;
      }
    }

    @Override
    public void observe(
        ManagedKvCache cache,
        int layer,
        int queryIndex,
        int head,
        int kvHead,
        float[] probs,
        int count) {
      long t0 = timeObserve ? CPU.getCurrentThreadCpuTime() : 0;
      p.observe(cache, layer, queryIndex, head, kvHead, probs, count);
      if (timeObserve) {
        observe += CPU.getCurrentThreadCpuTime() - t0;
      }
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      long t0 = CPU.getCurrentThreadCpuTime();
      p.afterStep(cache, kind);
      afterStep += CPU.getCurrentThreadCpuTime() - t0;
    }
  }

  public static void main(String[] args) {
    Path path = Path.of(args[0]);
    int depth = Integer.parseInt(args[1]);
    int steps = Integer.parseInt(args[2]);
    int rounds = args.length > 3 ? Integer.parseInt(args[3]) : 2;
    String spec = args.length > 4 ? args[4] : "qaq";
    try (Model model = Model.load(path)) {
      var cfg = model.config();
      int[] toks = new int[depth + steps];
      for (int i = 0; i < toks.length; i++) {
        toks[i] = 3 + (int) ((i * 2654435761L) % (cfg.vocabSize() - 3));
      }
      MethodCall c = KvSpec.parse(spec).rules().get(0).calls().get(0);
      boolean[] all = new boolean[cfg.layers()];
      Arrays.fill(all, true);
      KvCacheFormat[] formats = new KvCacheFormat[cfg.layers()];
      Arrays.fill(formats, c.method().format(c));
      KvCacheFormat[] f16 = new KvCacheFormat[cfg.layers()];
      Arrays.fill(f16, KvCacheFormat.of(KvFormats.F16).withBlockTokens(formats[0].blockTokens()));
      KvCacheFormat[] f32 = new KvCacheFormat[cfg.layers()];
      Arrays.fill(f32, KvCacheFormat.of(KvFormats.F32).withBlockTokens(formats[0].blockTokens()));
      String[] modes = System.getProperty("modes", "f16,f32,qaq").split(",");
      try (Engine engine = new Engine(model, 1, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
        float[] logits = new float[cfg.vocabSize()];
        for (int round = 0; round < rounds; round++) {
          for (String mode : modes) {
            boolean qaq = mode.equals("qaq");
            Timed t = null;
            List<KvPolicy> policies = List.of();
            if (qaq) {
              QaqMethod.Policy p =
                  (QaqMethod.Policy)
                      c.method()
                          .policy(
                              c,
                              new PolicyContext(
                                  all, cfg.kvHeads(), cfg.headDim(), 4.0 * cfg.headDim()));
              t = new Timed(p);
              policies = List.of(t);
            }
            try (ManagedKvCache cache =
                new ManagedKvCache(
                    new BlockPool(),
                    cfg.kvHeads(),
                    cfg.headDim(),
                    qaq ? formats : mode.equals("f32") ? f32 : f16,
                    policies)) {
              long t0 = CPU.getCurrentThreadCpuTime();
              engine.prefill(cache, toks, 0, depth, 0, false, logits);
              long prefill = CPU.getCurrentThreadCpuTime() - t0;
              long prefillPolicy = t == null ? 0 : t.afterStep;
              if (t != null) {
                t.afterStep = 0;
                t.timeObserve = true;
              }
              long digest = Arrays.hashCode(logits);
              long t1 = CPU.getCurrentThreadCpuTime();
              for (int i = 0; i < steps; i++) {
                engine.decode(cache, toks[depth + i], depth + i, logits);
                digest = digest * 31 + Arrays.hashCode(logits);
              }
              long decode = CPU.getCurrentThreadCpuTime() - t1;
              long widths = 0;
              if (qaq) {
                for (int l = 0; l < cache.layerCount(); l++) {
                  for (int g = 0; g < cache.paged(l).kvHeads(); g++) {
                    for (var b : cache.paged(l).head(g).blocks()) {
                      widths = widths * 31 + b.keyFormat().hashCode();
                      widths = widths * 31 + b.valueFormat().hashCode();
                    }
                  }
                }
              }
              System.out.printf(
                  "round %d %-4s prefill %.0f ms CPU (policy afterStep %.0f ms)  decode %.2f"
                      + " ms/step CPU (policy afterStep %.3f, onQueries+observe %.3f ms/step)"
                      + "  logits %016x widths %016x%s%n",
                  round,
                  qaq ? spec : mode,
                  prefill / 1e6,
                  prefillPolicy / 1e6,
                  decode / 1e6 / steps,
                  t == null ? 0 : t.afterStep / 1e6 / steps,
                  t == null ? 0 : t.observe / 1e6 / steps,
                  digest,
                  widths,
                  t == null
                      ? ""
                      : String.format(
                          "  mean bits k %.4f v %.4f", t.p.meanKeyBits(), t.p.meanValueBits()));
            }
          }
        }
      }
    }
  }
}
