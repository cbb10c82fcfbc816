package io.kvslim.server;

import io.kvslim.kv.tier.KvTier;
import io.kvslim.kv.tier.TierUnavailableException;
import io.lettuce.core.ClientOptions;
import io.lettuce.core.KeyValue;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisException;
import io.lettuce.core.RedisFuture;
import io.lettuce.core.RedisURI;
import io.lettuce.core.SetArgs;
import io.lettuce.core.SocketOptions;
import io.lettuce.core.TimeoutOptions;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.codec.ByteArrayCodec;
import io.lettuce.core.codec.RedisCodec;
import io.lettuce.core.codec.StringCodec;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A KV tier on a Redis server ({@code --kv-tier redis://HOST:PORT}) through Lettuce: one string
 * value per block under {@code kvslim:kv:KEY}, so servers pointing at one Redis share their prefix
 * blocks; a spilled block's sub-blocks are read with pipelined {@code GETRANGE}s ({@link
 * #getRanges}). Connections are made when first needed and again after a failure (no background
 * reconnects); a command that cannot reach the server within {@link #TIMEOUT} fails with {@link
 * TierUnavailableException}, and the {@link io.kvslim.kv.tier.PrefixCache} skips the tier for a
 * while. Used from one thread at a time.
 */
public final class RedisTier implements KvTier {
  /** Connect and command timeout. */
  public static final Duration TIMEOUT = Duration.ofMillis(1000);

  private static final String PREFIX = "kvslim:kv:";

  private final String name;
  private final RedisClient client;
  private StatefulRedisConnection<String, byte[]> connection;

  /**
   * A tier on the Redis at {@code uri} ({@code redis://HOST:PORT}, optionally {@code /DB}); nothing
   * is connected yet.
   *
   * @throws IllegalArgumentException if the URI is malformed
   */
  public RedisTier(String uri) {
    RedisURI parsed;
    try {
      parsed = RedisURI.create(uri);
    } catch (RuntimeException e) {
      throw new IllegalArgumentException("malformed Redis URI '" + uri + "': " + e.getMessage());
    }
    parsed.setTimeout(TIMEOUT);
    this.name = uri;
    this.client = RedisClient.create(parsed);
    client.setOptions(
        ClientOptions.builder()
            .autoReconnect(false)
            .disconnectedBehavior(ClientOptions.DisconnectedBehavior.REJECT_COMMANDS)
            .socketOptions(SocketOptions.builder().connectTimeout(TIMEOUT).build())
            .timeoutOptions(TimeoutOptions.enabled(TIMEOUT))
            .build());
  }

  @Override
  public String name() {
    return name;
  }

  private StatefulRedisConnection<String, byte[]> connection() {
    if (connection != null && connection.isOpen()) {
      return connection;
    }
    if (connection != null) {
      connection.closeAsync();
      connection = null;
    }
    try {
      connection = client.connect(RedisCodec.of(StringCodec.UTF8, ByteArrayCodec.INSTANCE));
      return connection;
    } catch (RedisException e) {
      throw unavailable(e);
    }
  }

  private TierUnavailableException unavailable(RuntimeException e) {
    String why = e.getMessage();
    Throwable root = e;
    while (root.getCause() != null) {
      root = root.getCause();
    }
    if (root != e && root.getMessage() != null) {
      why = root.getMessage();
    }
    return new TierUnavailableException(why, e);
  }

  @Override
  public byte[] get(String key) {
    try {
      return connection().sync().get(PREFIX + key);
    } catch (RedisException e) {
      throw unavailable(e);
    }
  }

  @Override
  public boolean contains(String key) {
    try {
      return connection().sync().exists(PREFIX + key) > 0;
    } catch (RedisException e) {
      throw unavailable(e);
    }
  }

  @Override
  public void put(String key, byte[] value) {
    try {
      connection().sync().set(PREFIX + key, value);
    } catch (RedisException e) {
      throw unavailable(e);
    }
  }

  /** One {@code MGET}. */
  @Override
  public List<byte[]> getAll(List<String> keys) {
    if (keys.isEmpty()) {
      return List.of();
    }
    String[] prefixed = new String[keys.size()];
    for (int i = 0; i < prefixed.length; i++) {
      prefixed[i] = PREFIX + keys.get(i);
    }
    try {
      List<KeyValue<String, byte[]>> found = connection().sync().mget(prefixed);
      List<byte[]> out = new ArrayList<>(found.size());
      for (KeyValue<String, byte[]> kv : found) {
        out.add(kv.hasValue() ? kv.getValue() : null);
      }
      return out;
    } catch (RedisException e) {
      throw unavailable(e);
    }
  }

  @Override
  public boolean readsRanges() {
    return true;
  }

  /** Every {@code GETRANGE key from from+count-1} pipelined, then awaited. */
  @Override
  public List<byte[]> getRanges(List<String> keys, long[] from, long[] count) {
    if (keys.isEmpty()) {
      return List.of();
    }
    try {
      var async = connection().async();
      List<RedisFuture<byte[]>> parts = new ArrayList<>(keys.size());
      for (int i = 0; i < keys.size(); i++) {
        if (from[i] < 0 || count[i] < 1) {
          throw new IllegalArgumentException(
              "bad byte range " + from[i] + "+" + count[i] + " of " + keys.get(i));
        }
        parts.add(async.getrange(PREFIX + keys.get(i), from[i], from[i] + count[i] - 1));
      }
      List<byte[]> out = new ArrayList<>(parts.size());
      for (RedisFuture<byte[]> f : parts) {
        byte[] v = await(f);
        out.add(v == null ? new byte[0] : v);
      }
      return out;
    } catch (RedisException e) {
      throw unavailable(e);
    }
  }

  /** The {@code EXISTS} of every key pipelined, then one {@code MSET} of the missing ones. */
  @Override
  public boolean[] putMissing(List<String> keys, List<byte[]> values) {
    boolean[] written = new boolean[keys.size()];
    try {
      var async = connection().async();
      List<RedisFuture<Long>> exists = new ArrayList<>(keys.size());
      for (String k : keys) {
        exists.add(async.exists(PREFIX + k));
      }
      Map<String, byte[]> missing = new LinkedHashMap<>();
      for (int i = 0; i < keys.size(); i++) {
        if (await(exists.get(i)) == 0) {
          missing.put(PREFIX + keys.get(i), values.get(i));
          written[i] = true;
        }
      }
      if (!missing.isEmpty()) {
        connection().sync().mset(missing);
      }
      return written;
    } catch (RedisException e) {
      throw unavailable(e);
    }
  }

  /** A pipelined command's reply, within {@link #TIMEOUT}. */
  private static <T> T await(RedisFuture<T> reply) {
    try {
      return reply.get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    } catch (TimeoutException e) {
      throw new TierUnavailableException("timed out after " + TIMEOUT.toMillis() + " ms", e);
    } catch (ExecutionException e) {
      Throwable why = e.getCause() != null ? e.getCause() : e;
      throw new TierUnavailableException(String.valueOf(why.getMessage()), e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new TierUnavailableException("interrupted", e);
    }
  }

  /** Every {@code SET key value PX expiry} pipelined, then awaited. */
  @Override
  public void putAll(List<String> keys, List<byte[]> values, Duration expiry) {
    if (keys.isEmpty()) {
      return;
    }
    SetArgs px = SetArgs.Builder.px(expiry.toMillis());
    try {
      var async = connection().async();
      List<RedisFuture<String>> done = new ArrayList<>(keys.size());
      for (int i = 0; i < keys.size(); i++) {
        done.add(async.set(PREFIX + keys.get(i), values.get(i), px));
      }
      for (RedisFuture<String> f : done) {
        await(f);
      }
    } catch (RedisException e) {
      throw unavailable(e);
    }
  }

  /** {@code DEL} of up to 1,000 keys at a time. */
  @Override
  public void deleteAll(List<String> keys) {
    try {
      for (int from = 0; from < keys.size(); from += 1000) {
        List<String> part = keys.subList(from, Math.min(keys.size(), from + 1000));
        String[] prefixed = new String[part.size()];
        for (int i = 0; i < prefixed.length; i++) {
          prefixed[i] = PREFIX + part.get(i);
        }
        connection().sync().del(prefixed);
      }
    } catch (RedisException e) {
      throw unavailable(e);
    }
  }

  @Override
  public void close() {
    if (connection != null) {
      connection.close();
    }
    client.shutdown(Duration.ZERO, Duration.ofSeconds(2));
  }
}
