/**
 * Block storage of the KV cache (block pool and paged storage).
 *
 * <p><b>Internal:</b> not part of kvslim's public API, which is {@link io.kvslim.api}; it may
 * change in any release. Applications use {@link io.kvslim.api.KvslimModel} and {@link
 * io.kvslim.api.KvslimSession} instead.
 */
package io.kvslim.kv.store;
