/**
 * KV tiers below RAM and the prefix cache over them (issue 19, items 1 and 2): {@link KvTier} is a
 * store of blocks in their compressed format ({@link DiskTier}: memory-mapped files; the server
 * module adds Redis), {@link TierBlock} the checked layout of one stored block, and {@link
 * PrefixCache} restores a prompt's prefix from the tiers by a hash chain of its tokens instead of
 * prefilling it, and stores what a prefill settled.
 */
package io.kvslim.kv.tier;
