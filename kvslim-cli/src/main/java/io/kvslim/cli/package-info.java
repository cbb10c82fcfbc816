/**
 * The {@code kvslim} command line (picocli): one class per command.
 *
 * <p><b>Internal:</b> not a library API (that is {@code io.kvslim.api} in kvslim-core); it may
 * change in any release.
 */
package io.kvslim.cli;
