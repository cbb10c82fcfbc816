/**
 * CacheBlend (METHODS.md H1): a store of chunks' KV computed on their own, and a prefill that fuses
 * the stored KV of a prompt's chunks, re-rotated to their new positions, recomputing only the
 * tokens whose KV deviates most.
 *
 * <p><b>Internal:</b> not part of kvslim's public API, which is {@link io.kvslim.api}; it may
 * change in any release.
 */
package io.kvslim.engine.blend;
