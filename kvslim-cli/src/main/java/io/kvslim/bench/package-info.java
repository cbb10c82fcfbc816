/**
 * The benchmarks behind {@code kvslim bench}: speed, quality, throughput, reports and charts.
 *
 * <p><b>Internal:</b> not a library API (that is {@code io.kvslim.api} in kvslim-core); it may
 * change in any release.
 */
package io.kvslim.bench;
