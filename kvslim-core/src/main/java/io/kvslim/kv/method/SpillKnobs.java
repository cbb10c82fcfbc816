package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.bool;
import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.kv.policy.ColdSpill;
import java.util.ArrayList;
import java.util.List;

/**
 * The knobs the spill-and-recall methods (quest, shadowkv, pqcache) share: {@code spill=true} holds
 * the blocks outside the method's resident part in a memory-mapped spill file instead of RAM
 * ({@link ColdSpill}), {@code spill_cache=N} keeps each head's N most recently fetched blocks in
 * RAM.
 */
final class SpillKnobs {
  private SpillKnobs() {}

  /** {@code knobs} followed by {@code spill} and {@code spill_cache}. */
  static List<Knob> with(List<Knob> knobs) {
    List<Knob> all = new ArrayList<>(knobs);
    all.add(bool("spill", "false", "hold blocks outside the resident part in a spill file"));
    all.add(
        integer("spill_cache", "0", "fetched blocks a head keeps in RAM (LRU), with spill")
            .atLeast(0));
    return List.copyOf(all);
  }

  /** The cold tier {@code c} asks for, or null without {@code spill=true}. */
  static ColdSpill of(MethodCall c) {
    return c.bool("spill") ? new ColdSpill(c.integer("spill_cache")) : null;
  }
}
