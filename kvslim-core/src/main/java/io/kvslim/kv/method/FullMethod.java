package io.kvslim.kv.method;

import java.util.List;

/** The uncompressed cache: every token's keys and values in F32, the baseline of every report. */
public final class FullMethod implements KvMethod {
  @Override
  public String name() {
    return "full";
  }

  @Override
  public Family family() {
    return Family.BASELINE;
  }

  @Override
  public String paper() {
    return "none (the baseline)";
  }

  @Override
  public String summary() {
    return "The uncompressed cache (F32 keys and values).";
  }

  @Override
  public List<Knob> knobs() {
    return List.of();
  }

  /** The baseline runs in every report anyway. */
  @Override
  public List<String> benchmarkSpecs() {
    return List.of();
  }
}
