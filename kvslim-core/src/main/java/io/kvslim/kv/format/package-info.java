/**
 * Storage formats of cached keys and values (F16, BF16, Q8_0, Q4_0, KIVI, TurboQuant, ...).
 *
 * <p><b>Internal:</b> not part of kvslim's public API, which is {@link io.kvslim.api}; it may
 * change in any release. Applications use {@link io.kvslim.api.KvslimModel} and {@link
 * io.kvslim.api.KvslimSession} instead.
 */
package io.kvslim.kv.format;
