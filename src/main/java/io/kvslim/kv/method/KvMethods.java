package io.kvslim.kv.method;

import static io.kvslim.kv.method.ParamDef.budget;
import static io.kvslim.kv.method.ParamDef.choice;
import static io.kvslim.kv.method.ParamDef.integer;
import static io.kvslim.kv.method.ParamDef.number;

import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The registry of KV methods and formats with their keys and defaults, in one place (defaults from
 * docs/METHODS.md; each policy's Javadoc cites its paper).
 */
public final class KvMethods {
  /** Storage formats a block of keys or values can take. */
  public static final String[] FORMATS = {
    "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"
  };

  private static final Map<String, MethodDef> METHODS = new LinkedHashMap<>();

  static {
    add("full", "baseline", "The uncompressed cache (F32 keys and values).", List.of(), c -> {});
    add(
        "streaming",
        "eviction",
        "StreamingLLM (Xiao et al. 2023): attention sinks plus a window of recent tokens.",
        List.of(
            integer("sinks", "4", "first tokens always kept"),
            integer("window", "1020", "recent tokens kept"),
            budget("budget", null, "total kept per head (sinks + window); overrides window"),
            choice(
                "positions",
                "rolling",
                "RoPE positions: rolling = index in the cache (the paper), original = in the text",
                "rolling",
                "original")),
        c -> {
          nonNegative(c, "sinks");
          positive(c, "window");
          budgetAboveSinks(c, c.integer("sinks"));
        });
    add(
        "h2o",
        "eviction",
        "H2O (Zhang et al. 2023): heavy hitters by accumulated attention plus recent tokens,"
            + " evicting during decode.",
        List.of(
            budget("budget", "20%", "tokens kept per head (heavy + recent)"),
            number("recent", "0.5", "share of the budget kept as the recent window"),
            integer("sinks", "0", "first tokens always kept")),
        c -> {
          nonNegative(c, "sinks");
          unitInterval(c, "recent");
          budgetAboveSinks(c, c.integer("sinks"));
        });
    add(
        "tova",
        "eviction",
        "TOVA (Oren et al. 2024): evict the token the current query attends to least, per layer.",
        List.of(budget("budget", "25%", "tokens kept per head")),
        c -> {});
    add(
        "snapkv",
        "eviction",
        "SnapKV (Li et al. 2024): window queries vote, pooled, once after prefill.",
        List.of(
            budget("budget", "2048", "tokens kept per head, window included"),
            integer("window", "32", "observation window (last prompt tokens)"),
            integer("kernel", "5", "pooling kernel"),
            choice("pool", "avg", "pooling", "avg", "max")),
        KvMethods::windowed);
    add(
        "pyramidkv",
        "eviction",
        "PyramidKV (Cai et al. 2024): SnapKV with linearly decreasing per-layer budgets.",
        List.of(
            budget("budget", "320", "average tokens kept per head, window included"),
            integer("window", "64", "observation window"),
            integer("kernel", "5", "pooling kernel"),
            choice("pool", "avg", "pooling", "avg", "max"),
            number("beta", "20", "pyramid steepness (1 = uniform)")),
        c -> {
          windowed(c);
          if (c.number("beta") < 1) {
            throw new KvSpecException("pyramidkv:beta must be >= 1, got " + c.number("beta"));
          }
        });
    add(
        "adakv",
        "eviction",
        "Ada-KV (Feng et al. 2024): SnapKV scores, head-wise budgets by a global top-k in a layer.",
        List.of(
            budget("budget", "2048", "average tokens kept per head, window included"),
            integer("window", "32", "observation window"),
            integer("kernel", "7", "pooling kernel"),
            choice("pool", "max", "pooling", "avg", "max"),
            number("alpha", "0.2", "floor: share of the base budget every head keeps")),
        c -> {
          windowed(c);
          unitInterval(c, "alpha");
        });
    add(
        "kivi",
        "quantization",
        "KIVI (Liu et al. 2024): keys per channel, values per token, asymmetric, fp residual.",
        List.of(
            choice("kbits", "2", "key bits", "2", "4", "8"),
            choice("vbits", "2", "value bits", "2", "4", "8"),
            integer("group", "32", "tokens per key group and channels per value group"),
            integer("residual", "128", "recent tokens kept in full precision"),
            choice(
                "rformat",
                "f16",
                "format of the residual window: the paper's fp16; f32 keeps it exact; q8_0 is a"
                    + " deviation from the paper that makes the window 1.9x smaller",
                "f16",
                "f32",
                "q8_0")),
        c -> {
          positive(c, "group");
          nonNegative(c, "residual");
          if (c.integer("residual") % c.integer("group") != 0) {
            throw new KvSpecException(
                "kivi:residual="
                    + c.integer("residual")
                    + " must be a multiple of group="
                    + c.integer("group"));
          }
        });
    for (String f : FORMATS) {
      add(
          f,
          "format",
          "Keys and values stored as "
              + f
              + (f.startsWith("q") ? " (llama.cpp block layout)." : "."),
          List.of(),
          c -> {});
    }
    add(
        "format",
        "format",
        "Separate storage formats for keys and values.",
        List.of(
            choice("k", "f32", "key format", FORMATS), choice("v", "f32", "value format", FORMATS)),
        c -> {});
  }

  private KvMethods() {}

  private static void add(
      String name, String family, String summary, List<ParamDef> params, Consumer<MethodCall> v) {
    METHODS.put(name, new MethodDef(name, family, summary, params, v));
  }

  public static MethodDef get(String name) {
    return METHODS.get(name);
  }

  public static List<String> names() {
    return new ArrayList<>(METHODS.keySet());
  }

  public static Collection<MethodDef> all() {
    return METHODS.values();
  }

  private static void windowed(MethodCall c) {
    positive(c, "window");
    positive(c, "kernel");
    if (c.integer("kernel") % 2 == 0) {
      throw new KvSpecException(c.name() + ":kernel must be odd, got " + c.integer("kernel"));
    }
    Budget b = c.budget("budget");
    if (b.kind() == Budget.Kind.TOKENS && b.value() <= c.integer("window")) {
      throw new KvSpecException(
          c.name() + ":budget=" + b + " must exceed the window (" + c.integer("window") + ")");
    }
  }

  private static void positive(MethodCall c, String key) {
    if (c.integer(key) < 1) {
      throw new KvSpecException(c.name() + ":" + key + " must be >= 1, got " + c.integer(key));
    }
  }

  private static void nonNegative(MethodCall c, String key) {
    if (c.integer(key) < 0) {
      throw new KvSpecException(c.name() + ":" + key + " must be >= 0, got " + c.integer(key));
    }
  }

  private static void unitInterval(MethodCall c, String key) {
    double v = c.number(key);
    if (!(v >= 0 && v <= 1)) {
      throw new KvSpecException(c.name() + ":" + key + " must be in [0, 1], got " + v);
    }
  }

  private static void budgetAboveSinks(MethodCall c, int sinks) {
    Budget b = c.budget("budget");
    if (b != null && b.kind() == Budget.Kind.TOKENS && b.value() <= sinks) {
      throw new KvSpecException(
          c.name() + ":budget=" + b + " must exceed the sink count (" + sinks + ")");
    }
  }
}
