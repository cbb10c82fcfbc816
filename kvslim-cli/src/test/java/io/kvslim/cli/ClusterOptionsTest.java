package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/**
 * {@code --cluster} on serve and generate: a bad address or spec is one sentence, before loading.
 */
class ClusterOptionsTest {
  private static void assertOneLineError(CliResult r, String... words) {
    assertThat(r.exitCode()).as(r.err()).isEqualTo(1);
    assertThat(r.err()).startsWith("kvslim: ").endsWith("\n");
    assertThat(r.err().strip()).doesNotContain("\n").doesNotContain("Exception");
    for (String w : words) {
      assertThat(r.err()).contains(w);
    }
  }

  @Test
  void badClusterAddressesAreOneSentence() {
    assertOneLineError(
        CliResult.run("serve", "--cluster", "127.0.0.1", "--port", "0"),
        "--cluster address '127.0.0.1' is not host:port");
    assertOneLineError(
        CliResult.run("serve", "--cluster", "127.0.0.1:0", "--port", "0"),
        "--cluster address '127.0.0.1:0' has no port in 1..65535");
    assertOneLineError(
        CliResult.run("generate", "--cluster", "192.0.2.1:5701", "-p", "x"),
        "none of the --cluster addresses",
        "is an address of this machine");
    assertOneLineError(
        CliResult.run("generate", "--cluster", "127.0.0.1:5701", "--kv", "q8_0", "-p", "x"),
        "--kv must be 'full', got 'q8_0'");
    assertOneLineError(
        CliResult.run("serve", "--cluster", "127.0.0.1:5701", "--cluster-block", "0"),
        "--cluster-block must be >= 1 token, got 0");
  }
}
