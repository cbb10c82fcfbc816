import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.*;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import io.kvslim.tokenizer.Tokenizer;
import java.nio.file.*;
import java.util.*;

/** Bytes read per decode step by AlignedKV's kernels on the held-out text: 4 windows of 1024, prefill 768, decode 256. */
public class ReadBytes {
  public static void main(String[] a) throws Exception {
    Model model = Model.load(Path.of("models/pycoder-6m-f16.gguf"));
    Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    int[] toks = Tokenizer.fromGguf(model.file()).encode(Files.readString(Path.of(a[0])), false, false);
    var c = model.config();
    float[] lg = new float[c.vocabSize()];
    for (String spec : new String[] {"alignedkv", "alignedkv:t1=2,t2=4,t3=8"}) {
      MethodCall call = KvSpec.parse(spec).rules().get(0).calls().get(0);
      double read = 0, full = 0; long steps = 0, held = 0;
      for (int w = 0; w < 4; w++) {
        boolean[] layers = new boolean[c.layers()];
        Arrays.fill(layers, true);
        KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
        for (int l = 0; l < formats.length; l++) formats[l] = call.method().format(call, l, c.layers());
        var p = (AlignedKvMethod.Policy) call.method().policy(call, new PolicyContext(layers, c.kvHeads(), c.headDim(), 4.0 * c.headDim()));
        try (ManagedKvCache cache = new ManagedKvCache(new BlockPool(), c.kvHeads(), c.headDim(), formats, List.of(p))) {
          int off = w * 1024;
          engine.prefill(cache, toks, off, off + 768, 0, false, lg);
          for (int s = 0; s < 256; s++) engine.decode(cache, toks[off + 768 + s], 768 + s, lg);
          read += p.bytesRead(); full += p.fullBytes(); steps += p.decodeSteps(); held = cache.bytes();
        }
      }
      System.out.printf("%s: decode steps %d, bytes read/step %.1f, full fp16 read/step %.1f (%.3f), bytes held at 1024 tokens %d%n",
          spec, steps, read / steps, full / steps, read / full, held);
    }
    try (ManagedKvCache f16 = KvSpecs.caches(KvSpec.parse("f16"), new BlockPool(), c).create()) {
      engine.prefill(f16, toks, 0, 1024, 0, false, lg);
      System.out.printf("f16: bytes held at 1024 tokens %d%n", f16.bytes());
    }
    engine.close();
    model.close();
  }
}
