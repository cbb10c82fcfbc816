package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.choice;

import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.ArrayList;
import java.util.List;

/**
 * A storage format for keys and values: one of {@link #FORMATS} for both (the q types in
 * llama.cpp's block layouts, ggml-common.h), or {@code format:k=..,v=..} for separate ones.
 */
public final class StorageFormatMethod implements KvMethod {
  /** Storage formats a block of keys or values can take. */
  public static final String[] FORMATS = {
    "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"
  };

  private final String name;

  private StorageFormatMethod(String name) {
    this.name = name;
  }

  /** One method per format name, then {@code format} with separate key and value formats. */
  public static List<KvMethod> all() {
    List<KvMethod> out = new ArrayList<>();
    for (String f : FORMATS) {
      out.add(new StorageFormatMethod(f));
    }
    out.add(new StorageFormatMethod("format"));
    return out;
  }

  private boolean split() {
    return name.equals("format");
  }

  @Override
  public String name() {
    return name;
  }

  @Override
  public Family family() {
    return Family.FORMAT;
  }

  @Override
  public String paper() {
    return name.startsWith("q")
        ? "llama.cpp block layout (ggml-common.h block_" + name + ")"
        : "IEEE 754 / bfloat16 element format";
  }

  @Override
  public String summary() {
    if (split()) {
      return "Separate storage formats for keys and values.";
    }
    return "Keys and values stored as "
        + name
        + (name.startsWith("q") ? " (llama.cpp layout)." : ".");
  }

  @Override
  public List<Knob> knobs() {
    if (!split()) {
      return List.of();
    }
    return List.of(
        choice("k", "f32", "key format", FORMATS), choice("v", "f32", "value format", FORMATS));
  }

  @Override
  public KvCacheFormat format(MethodCall c) {
    return split()
        ? KvCacheFormat.of(KvFormats.byName(c.string("k")), KvFormats.byName(c.string("v")))
        : KvCacheFormat.of(KvFormats.byName(name));
  }

  /** F32 is the full cache; the other formats as themselves, {@code format} as q8_0 keys. */
  @Override
  public List<String> benchmarkSpecs() {
    return name.equals("f32") ? List.of() : List.of(split() ? "format:k=q8_0,v=q4_0" : name);
  }

  @Override
  public String specKeeping(int tokens) {
    return name.equals("f32") ? "f32" : split() ? "format:k=f32,v=f32" : null;
  }

  @Override
  public String specCompressing(int tokens) {
    return split() ? "format:k=q8_0,v=q4_0" : name;
  }
}
