package io.kvslim.kv.tier;

import io.kvslim.calibrate.ModelIdentity;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.function.Consumer;

/**
 * A prefix cache across requests and servers over {@link KvTier}s (issue 19, item 2). A prompt's
 * blocks are keyed vLLM-style by a hash chain: {@code h₀ = SHA-256(model identity, KV spec)},
 * {@code hᵢ₊₁ = SHA-256(hᵢ, the token ids of block i)}, so a key names a block's tokens and
 * everything before them. After a prefill, {@link #store} writes the blocks the prefill settled
 * ({@link HeadStore#settled}) to every tier; before the next prefill, {@link #restore} reads the
 * longest chain of them it finds (first tier first; a block found in a later tier is copied into
 * the earlier ones) into the empty cache, and the prompt is prefilled from there.
 *
 * <p>Only caches whose settled blocks depend on their tokens alone take part ({@link
 * ManagedKvCache#prefixReusable}: storage formats, no eviction policy). A restored prefix is a
 * multiple of the format's key window (KIVI's R) and leaves at least one prompt token to prefill
 * (its logits are the first token's). Every block read is checked ({@link TierBlock#decode}); a
 * corrupt, foreign or malformed one ends the chain there and its tokens are prefilled. A tier that
 * cannot be reached is skipped, with one warning line, for {@link #RETRY_NANOS} before it is tried
 * again.
 *
 * <p>Not thread-safe: one sequence at a time (the server's scheduler thread).
 */
public final class PrefixCache implements AutoCloseable {
  /** How long an unreachable tier is skipped before it is tried again. */
  public static final long RETRY_NANOS = 5_000_000_000L;

  private final List<KvTier> tiers;
  private final long[] downUntil;
  private final String model;
  private final TierStats stats;
  private final Consumer<String> warn;

  /**
   * A prefix cache over {@code tiers} (in order, first looked up first) for the model whose
   * identity is {@code model} ({@link #identityOf}); warnings go to {@code warn}.
   */
  public PrefixCache(List<KvTier> tiers, String model, TierStats stats, Consumer<String> warn) {
    this.tiers = List.copyOf(tiers);
    this.downUntil = new long[tiers.size()];
    this.model = model;
    this.stats = stats;
    this.warn = warn;
  }

  /**
   * The identity of a model's KV for the prefix cache: the GGUF file's SHA-256 (or, for a model
   * built in memory, this JVM's object), its attention shape and the numerics (which change the
   * keys and values computed).
   */
  public static String identityOf(ModelConfig config, String numerics) {
    ModelIdentity id =
        new ModelIdentity(
            Model.fileOf(config),
            config.layers(),
            config.heads(),
            config.kvHeads(),
            config.headDim());
    String file =
        id.file() == null
            ? "in-memory@" + ProcessHandle.current().pid() + "/" + System.identityHashCode(config)
            : id.sha256();
    return file + " " + id.shape() + " numerics=" + numerics;
  }

  public TierStats stats() {
    return stats;
  }

  public List<KvTier> tiers() {
    return tiers;
  }

  /**
   * Restores the longest stored prefix of {@code tokens[0..length)} into {@code cache}, which must
   * be empty; returns how many tokens it holds now (0 when nothing was restored).
   */
  public int restore(ManagedKvCache cache, String spec, int[] tokens, int length) {
    int block = blockTokens(cache);
    if (block <= 0 || cache.tokens() != 0) {
      return 0;
    }
    int unit = unitTokens(cache);
    int maxBlocks = (length - 1) / unit * unit / block;
    if (maxBlocks == 0) {
      return 0;
    }
    String owner = owner(spec);
    int layers = cache.layerCount();
    int kvHeads = cache.paged(0).kvHeads();
    long[] keyBytes = new long[layers];
    long[] valueBytes = new long[layers];
    for (int l = 0; l < layers; l++) {
      KvCacheFormat f = cache.paged(l).store().format();
      int headDim = cache.paged(l).headDim();
      keyBytes[l] = f.keys().blockBytes(block, headDim);
      valueBytes[l] = f.values().blockBytes(block, headDim);
    }
    List<String> keys = new ArrayList<>(maxBlocks);
    List<byte[]> chains = new ArrayList<>(maxBlocks);
    byte[] chain = root(owner);
    for (int i = 0; i < maxBlocks; i++) {
      chain = next(chain, tokens, i * block, block);
      chains.add(chain);
      keys.add(hex(chain));
    }
    TierBlock.Parts[] parts = new TierBlock.Parts[maxBlocks];
    int run = 0; // blocks [0, run) found
    for (int t = 0; t < tiers.size() && run < maxBlocks; t++) {
      if (!up(t)) {
        continue;
      }
      List<byte[]> data;
      try {
        data = tiers.get(t).getAll(keys.subList(run, maxBlocks));
      } catch (TierUnavailableException e) {
        down(t, e);
        continue;
      }
      List<String> promoteKeys = new ArrayList<>();
      List<byte[]> promoteData = new ArrayList<>();
      for (int k = 0; k < data.size(); k++) {
        int i = run + k;
        byte[] d = data.get(k);
        if (d == null || parts[i] != null) {
          continue;
        }
        stats.bytesRead.addAndGet(d.length);
        try {
          parts[i] =
              TierBlock.decode(
                  d, owner, chains.get(i), i * block, block, kvHeads, keyBytes, valueBytes);
          promoteKeys.add(keys.get(i));
          promoteData.add(d);
        } catch (TierBlock.Rejected e) {
          stats.rejected.incrementAndGet(); // recomputed by the prefill, never used
        }
      }
      for (int u = 0; u < t && !promoteKeys.isEmpty(); u++) {
        putMissing(u, promoteKeys, promoteData); // found in a colder tier: copied up
      }
      while (run < maxBlocks && parts[run] != null) {
        run++;
      }
    }
    stats.lookups.addAndGet(Math.min(maxBlocks, run + 1));
    stats.hits.addAndGet(run);
    stats.misses.addAndGet(run < maxBlocks ? 1 : 0);
    List<TierBlock.Parts> found = java.util.Arrays.asList(parts).subList(0, run);
    int blocks = found.size() * block / unit * unit / block;
    if (blocks == 0 || !fits(cache, blocks)) {
      return 0;
    }
    for (int i = 0; i < blocks; i++) {
      TierBlock.Parts p = found.get(i);
      for (int l = 0; l < layers; l++) {
        PagedLayerKv layer = cache.paged(l);
        for (int g = 0; g < kvHeads; g++) {
          layer.head(g).restoreBlock(i * block, p.keys()[l][g], p.values()[l][g]);
        }
      }
    }
    int restored = blocks * block;
    cache.restoredPrefix(restored);
    stats.restoredTokens.addAndGet(restored);
    stats.restoredSequences.incrementAndGet();
    return restored;
  }

  /**
   * Stores the blocks of {@code tokens[0..length)} that {@code cache} holds settled, from block
   * {@code fromToken / blockTokens} on (blocks before it came from the tiers), in every reachable
   * tier that lacks them. Returns the blocks written to at least one tier.
   */
  public int store(ManagedKvCache cache, String spec, int[] tokens, int length, int fromToken) {
    int block = blockTokens(cache);
    if (block <= 0) {
      return 0;
    }
    String owner = owner(spec);
    int layers = cache.layerCount();
    int kvHeads = cache.paged(0).kvHeads();
    int count = Math.min(length, cache.tokens()) / block;
    byte[] chain = root(owner);
    List<String> keys = new ArrayList<>();
    List<byte[]> data = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      chain = next(chain, tokens, i * block, block);
      if (i * block < fromToken) {
        continue;
      }
      MemorySegment[][] keyParts = new MemorySegment[layers][kvHeads];
      MemorySegment[][] valueParts = new MemorySegment[layers][kvHeads];
      boolean settled = true;
      for (int l = 0; l < layers && settled; l++) {
        PagedLayerKv layer = cache.paged(l);
        for (int g = 0; g < kvHeads && settled; g++) {
          HeadStore h = layer.head(g);
          settled = h.blocks().size() > i && h.settled(i, i * block);
          if (settled) {
            keyParts[l][g] = h.blocks().get(i).keys();
            valueParts[l][g] = h.blocks().get(i).values();
          }
        }
      }
      if (!settled) {
        break; // this block and the ones after it are not settled yet
      }
      keys.add(hex(chain));
      data.add(TierBlock.encode(owner, chain, i * block, block, keyParts, valueParts));
    }
    boolean[] any = new boolean[keys.size()];
    for (int t = 0; t < tiers.size() && !keys.isEmpty(); t++) {
      boolean[] w = putMissing(t, keys, data);
      for (int i = 0; i < any.length; i++) {
        any[i] |= w[i];
      }
    }
    int written = 0;
    for (boolean b : any) {
      written += b ? 1 : 0;
    }
    stats.stored.addAndGet(written);
    return written;
  }

  /** {@link KvTier#putMissing} on tier {@code t} if it is up, counted; none written if down. */
  private boolean[] putMissing(int t, List<String> keys, List<byte[]> data) {
    boolean[] none = new boolean[keys.size()];
    if (!up(t)) {
      return none;
    }
    try {
      boolean[] w = tiers.get(t).putMissing(keys, data);
      for (int i = 0; i < w.length; i++) {
        if (w[i]) {
          stats.bytesWritten.addAndGet(data.get(i).length);
        }
      }
      return w;
    } catch (TierUnavailableException e) {
      down(t, e);
      return none;
    }
  }

  /** The key of block {@code index} of {@code tokens} (blocks of {@code blockTokens}) for spec. */
  String keyOf(String spec, int[] tokens, int blockTokens, int index) {
    byte[] chain = root(owner(spec));
    for (int i = 0; i <= index; i++) {
      chain = next(chain, tokens, i * blockTokens, blockTokens);
    }
    return hex(chain);
  }

  private boolean up(int t) {
    return downUntil[t] == 0 || System.nanoTime() - downUntil[t] >= 0;
  }

  private void down(int t, TierUnavailableException e) {
    boolean wasUp = downUntil[t] == 0;
    downUntil[t] = System.nanoTime() + RETRY_NANOS;
    if (downUntil[t] == 0) {
      downUntil[t] = 1;
    }
    stats.unavailable(tiers.get(t).name()).incrementAndGet();
    if (wasUp) {
      warn.accept(
          "kvslim: warning: KV tier "
              + tiers.get(t).name()
              + " is unreachable ("
              + e.getMessage()
              + "); skipping it, requests prefill what it would have held");
    }
  }

  /** Whether the pool has room for {@code blocks} restored blocks in every layer and head. */
  private static boolean fits(ManagedKvCache cache, int blocks) {
    long need = 0;
    for (int l = 0; l < cache.layerCount(); l++) {
      PagedLayerKv layer = cache.paged(l);
      for (int g = 0; g < layer.kvHeads(); g++) {
        need += blocks * layer.head(g).settledBlockBytes();
      }
    }
    return need <= cache.pool().limitBytes() - cache.pool().usedBytes();
  }

  /** Tokens per block, the same in every layer; 0 if the cache cannot take part. */
  private static int blockTokens(ManagedKvCache cache) {
    if (!cache.prefixReusable() || cache.layerCount() == 0) {
      return 0;
    }
    int block = cache.paged(0).store().format().blockTokens();
    for (int l = 1; l < cache.layerCount(); l++) {
      if (cache.paged(l).store().format().blockTokens() != block) {
        return 0;
      }
    }
    return block;
  }

  /** A restored prefix's granularity: the largest key window over the layers (KIVI's R). */
  private static int unitTokens(ManagedKvCache cache) {
    int unit = 1;
    for (int l = 0; l < cache.layerCount(); l++) {
      KvCacheFormat f = cache.paged(l).store().format();
      int u = f.hasResidual() ? f.keyFlushTokens() : f.blockTokens();
      unit = lcm(unit, u);
    }
    return unit;
  }

  private static int lcm(int a, int b) {
    int x = a;
    int y = b;
    while (y != 0) {
      int r = x % y;
      x = y;
      y = r;
    }
    return a / x * b;
  }

  private String owner(String spec) {
    return model + "\nkv=" + spec;
  }

  private static byte[] root(String owner) {
    MessageDigest md = sha256();
    md.update("kvslim-prefix-v1\n".getBytes(StandardCharsets.UTF_8));
    md.update(owner.getBytes(StandardCharsets.UTF_8));
    return md.digest();
  }

  /** {@code SHA-256(parent, tokens[from..from+n) as little-endian int32)}. */
  static byte[] next(byte[] parent, int[] tokens, int from, int n) {
    MessageDigest md = sha256();
    md.update(parent);
    ByteBuffer b = ByteBuffer.allocate(4 * n).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < n; i++) {
      b.putInt(tokens[from + i]);
    }
    md.update(b.array());
    return md.digest();
  }

  private static String hex(byte[] chain) {
    return HexFormat.of().formatHex(chain);
  }

  private static MessageDigest sha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  @Override
  public void close() {
    for (KvTier t : tiers) {
      t.close();
    }
  }
}
