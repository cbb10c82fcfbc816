/**
 * Eviction policies that choose which cached tokens to keep.
 *
 * <p><b>Internal:</b> not part of kvslim's public API, which is {@link io.kvslim.api}; it may
 * change in any release. Applications use {@link io.kvslim.api.KvslimModel} and {@link
 * io.kvslim.api.KvslimSession} instead.
 */
package io.kvslim.kv.policy;
