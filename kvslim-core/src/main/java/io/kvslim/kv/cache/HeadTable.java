package io.kvslim.kv.cache;

import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * What each (layer, KV head) of a cache holds, as a text table ({@code --explain}): its tokens, its
 * bytes and its tokens per storage format (keys' format; {@code auto} plans both alike), then the
 * totals. For the adaptive controller ({@code auto}) this is its plan as carried out.
 */
public final class HeadTable {
  private HeadTable() {}

  public static String of(ManagedKvCache cache) {
    StringBuilder b = new StringBuilder();
    b.append(
        String.format(
            Locale.ROOT,
            "%-6s %-8s %8s %10s  %s%n",
            "layer",
            "kv head",
            "tokens",
            "bytes",
            "tokens per format"));
    long tokens = 0;
    long bytes = 0;
    int heads = 0;
    for (int l = 0; l < cache.layerCount(); l++) {
      if (cache.shareOf(l) != l) {
        b.append(String.format(Locale.ROOT, "%-6d reads layer %d%n", l, cache.shareOf(l)));
        continue;
      }
      PagedLayerKv layer = cache.paged(l);
      for (int g = 0; g < layer.kvHeads(); g++) {
        HeadStore head = layer.head(g);
        Map<String, Integer> perFormat = new LinkedHashMap<>();
        for (KvBlock block : head.blocks()) {
          String k = block.keyFormat().name();
          String v = block.valueFormat().name();
          perFormat.merge(k.equals(v) ? k : k + "/" + v, block.liveCount(), Integer::sum);
        }
        StringBuilder formats = new StringBuilder();
        perFormat.forEach(
            (name, n) ->
                formats.append(formats.isEmpty() ? "" : " ").append(name).append(':').append(n));
        b.append(
            String.format(
                Locale.ROOT,
                "%-6d %-8d %8d %10d  %s%n",
                l,
                g,
                head.size(),
                layer.bytes(g),
                formats));
        tokens += head.size();
        bytes += layer.bytes(g);
        heads++;
      }
    }
    b.append(
        String.format(
            Locale.ROOT,
            "total: %d KV heads hold %d tokens in %d bytes (the cache holds %d bytes, %d tokens"
                + " seen)%n",
            heads,
            tokens,
            bytes,
            cache.bytes(),
            cache.tokens()));
    return b.toString();
  }
}
