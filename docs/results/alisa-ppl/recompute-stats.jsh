import io.kvslim.model.Model;
import io.kvslim.engine.*;
import io.kvslim.kv.*;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.*;
import io.kvslim.kv.policy.AlisaPolicy;
import io.kvslim.kv.store.*;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.tokenizer.Tokenizer;
import java.nio.file.*;
import java.util.*;

var model = Model.load(Path.of("models/pycoder-6m-f16.gguf"));
var cfg = model.config();
var engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
var tok = Tokenizer.fromGguf(model.file());
int[] all = tok.encode(Files.readString(Path.of("/tmp/heldout.py")), true, false);
String[] settings = System.getenv("ALISA_SETTINGS").split(";");
int windows = Integer.parseInt(System.getenv().getOrDefault("PPL_WINDOWS", "2"));
int decode = Integer.parseInt(System.getenv().getOrDefault("PPL_DECODE", "64"));
for (String set : settings) {
  String[] kv = set.split(",");
  double ratio = Double.parseDouble(kv[0]), recompute = Double.parseDouble(kv[1]), decay = Double.parseDouble(kv[2]);
  long p1 = 0, p2 = 0, p3 = 0, rec = 0, restored = 0, missed = 0, steps = 0, nanos = 0;
  int next = 0;
  int[] window = new int[1024];
  for (int w = 0; w < windows && next < all.length; w++) {
    int len;
    if (w == 0) { len = Math.min(1024, all.length - next); System.arraycopy(all, next, window, 0, len); next += len; }
    else { len = 1 + Math.min(1023, all.length - next); window[0] = tok.bos(); System.arraycopy(all, next, window, 1, len - 1); next += len - 1; }
    int prefill = len - decode;
    boolean[] layers = new boolean[cfg.layers()]; Arrays.fill(layers, true);
    var policy = new AlisaPolicy(layers, Budget.parse(ratio + ""), 0.5, recompute, decay, 0);
    var formats = new io.kvslim.kv.store.KvCacheFormat[cfg.layers()];
    Arrays.fill(formats, io.kvslim.kv.store.KvCacheFormat.of(KvFormats.Q8_0));
    try (var c = new ManagedKvCache(new BlockPool(), cfg.kvHeads(), cfg.headDim(), formats, List.of(policy))) {
      float[] logits = new float[cfg.vocabSize()];
      engine.prefill(c, window, 0, prefill, 0, false, logits);
      for (int pos = prefill; pos + 1 < len; pos++) engine.decode(c, window[pos], pos, logits);
      var s = policy.stats();
      p1 += s.phase1Steps(); p2 += s.phase2Steps(); p3 += s.phase3Steps(); rec += s.recomputedTokens();
      restored += s.restoredEntries(); missed += s.missedEntries(); nanos += c.policyNanos();
      steps += s.phase1Steps() + s.phase2Steps() + s.phase3Steps();
      System.out.printf("window %d: prompt %d, capacity %d, %s%n", w, prefill, policy.capacity(), s);
    }
  }
  System.out.printf("budget=%s recompute=%s decay=%s: decode steps %d; phase I %d, II %d, III %d; tokens recomputed %d (%.1f per step, %.1f per phase-III step); entries restored %d (%.1f per step); misses left out %d; policy ms/step %.2f%n",
      kv[0], kv[1], kv[2], steps, p1, p2, p3, rec, rec / (double) steps, p3 == 0 ? 0.0 : rec / (double) p3, restored, restored / (double) steps, missed, nanos / 1e6 / steps);
}
/exit
