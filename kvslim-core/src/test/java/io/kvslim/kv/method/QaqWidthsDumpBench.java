package io.kvslim.kv.method;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.QaqFormat;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * Writes the bit widths QAQ's policy leaves in every block of a model's cache after a prefill (not
 * a test), for {@link io.kvslim.kv.cache.QaqAttendCpuBench}'s {@code -Dwidths}: the engine's state
 * at depth, without the prefill in every benchmark run. One line a block: {@code layer head block}
 * then the key widths and the value widths as digits ({@code -} for a block not converted, still in
 * the f16 it starts in). Tokens as {@link QaqPolicyCpuBench} makes them.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp target/classes:target/test-classes:$(cat target/jmh.cp) \
 *     io.kvslim.kv.method.QaqWidthsDumpBench /work/prof/s110-16k-mha.gguf 4096 /tmp/qaq-widths.txt [spec]
 * </pre>
 */
public final class QaqWidthsDumpBench {
  private QaqWidthsDumpBench() {}

  public static void main(String[] args) throws IOException {
    Path path = Path.of(args[0]);
    int depth = Integer.parseInt(args[1]);
    Path out = Path.of(args[2]);
    String spec = args.length > 3 ? args[3] : "qaq";
    try (Model model = Model.load(path)) {
      var cfg = model.config();
      int[] toks = new int[depth];
      for (int i = 0; i < toks.length; i++) {
        toks[i] = 3 + (int) ((i * 2654435761L) % (cfg.vocabSize() - 3));
      }
      MethodCall c = KvSpec.parse(spec).rules().get(0).calls().get(0);
      boolean[] all = new boolean[cfg.layers()];
      Arrays.fill(all, true);
      KvCacheFormat[] formats = new KvCacheFormat[cfg.layers()];
      Arrays.fill(formats, c.method().format(c));
      QaqMethod.Policy p =
          (QaqMethod.Policy)
              c.method()
                  .policy(
                      c, new PolicyContext(all, cfg.kvHeads(), cfg.headDim(), 4.0 * cfg.headDim()));
      try (Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
          ManagedKvCache cache =
              new ManagedKvCache(
                  new BlockPool(), cfg.kvHeads(), cfg.headDim(), formats, List.of(p));
          PrintWriter w = new PrintWriter(Files.newBufferedWriter(out))) {
        float[] logits = new float[cfg.vocabSize()];
        engine.prefill(cache, toks, 0, depth, 0, false, logits);
        for (int l = 0; l < cache.layerCount(); l++) {
          for (int g = 0; g < cache.paged(l).kvHeads(); g++) {
            List<KvBlock> blocks = cache.paged(l).head(g).blocks();
            for (int i = 0; i < blocks.size(); i++) {
              KvBlock b = blocks.get(i);
              w.printf(
                  "%d %d %d %s %s%n",
                  l,
                  g,
                  i,
                  widths(b.keyFormat(), b.capacity()),
                  widths(b.valueFormat(), b.capacity()));
            }
          }
        }
        System.out.printf(
            "mean bits k %.4f v %.4f over %d rows%n",
            p.meanKeyBits(), p.meanValueBits(), p.quantizedRows());
      }
    }
  }

  private static String widths(io.kvslim.kv.format.KvFormat f, int capacity) {
    if (!(f instanceof QaqFormat q)) {
      return "-";
    }
    StringBuilder s = new StringBuilder();
    for (int i = 0; i < capacity; i++) {
      s.append(q.bits(i));
    }
    return s.toString();
  }
}
