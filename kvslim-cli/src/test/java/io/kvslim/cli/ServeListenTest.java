package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code kvslim serve}'s address and API key: every way listening can fail is one {@code kvslim:}
 * sentence before the model loads, a server open to the network without a key is warned about, and
 * the key can come from a file or the environment instead of the process list.
 */
class ServeListenTest {
  private static String tiny() {
    return SharedData.model("llama-spm-f32.gguf").toString();
  }

  private static CliResult serve(String... args) {
    String[] all = new String[args.length + 3];
    all[0] = "serve";
    all[1] = "-m";
    all[2] = tiny();
    System.arraycopy(args, 0, all, 3, args.length);
    return CliResult.run(all);
  }

  /** One line {@code kvslim: ...}, exit code 1, none of Javalin's words. */
  private static void assertOneSentence(CliResult r, String start) {
    assertThat(r.exitCode()).as(r.err()).isEqualTo(1);
    assertThat(r.err()).startsWith(start).endsWith("\n").doesNotContain("\tat ");
    assertThat(r.err().strip().lines().count()).as(r.err()).isEqualTo(1);
  }

  @Test
  void badHostsAreRefusedWithTheirOwnReason() {
    CliResult space = serve("--host", "bogus host", "--port", "0");
    assertOneSentence(space, "kvslim: --host 'bogus host' is not a host name or an IP address");
    CliResult octet = serve("--host", "256.1.1.1", "--port", "0");
    assertOneSentence(octet, "kvslim: --host '256.1.1.1' is not a valid IP address");
    CliResult v6 = serve("--host", "::g", "--port", "0");
    assertOneSentence(v6, "kvslim: --host '::g' is not a valid IPv6 address");
    // TEST-NET-1 (RFC 5737): never an address of this machine
    CliResult foreign = serve("--host", "192.0.2.1", "--port", "0");
    assertOneSentence(foreign, "kvslim: cannot listen on 192.0.2.1:0: the address is not one of");
    for (CliResult r : new CliResult[] {space, octet, v6, foreign}) {
      assertThat(r.err()).doesNotContainIgnoringCase("already in use");
    }
  }

  @Test
  void aPortInUseIsSaidSo() throws Exception {
    try (ServerSocket taken = new ServerSocket()) {
      taken.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
      int port = taken.getLocalPort();
      CliResult r = serve("--host", "127.0.0.1", "--port", String.valueOf(port));
      assertOneSentence(
          r,
          "kvslim: cannot listen on 127.0.0.1:"
              + port
              + ": the port is already in use (choose another --port, or 0 for any free port)");
    }
  }

  @Test
  void listeningBeyondLoopbackWithoutAKeyIsWarnedAbout(@TempDir Path dir) throws Exception {
    // not a GGUF file: serve stops when it loads the model, after its checks and the warning
    String bad = Files.writeString(dir.resolve("bad.gguf"), "not a model").toString();
    CliResult open = CliResult.run("serve", "-m", bad, "--host", "0.0.0.0", "--port", "0");
    assertThat(open.exitCode()).isEqualTo(1);
    List<String> lines = open.err().lines().toList();
    assertThat(lines).as(open.err()).hasSize(2);
    assertThat(lines.get(0))
        .startsWith("kvslim: warning: listening on 0.0.0.0 without an API key")
        .contains("--api-key-file")
        .contains("KVSLIM_API_KEY");
    assertThat(lines.get(1)).startsWith("kvslim: ").contains("bad.gguf");

    Path keyFile = Files.writeString(dir.resolve("key"), "s3cret\n");
    CliResult keyed =
        CliResult.run(
            "serve",
            "-m",
            bad,
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--api-key-file",
            keyFile.toString());
    assertThat(keyed.err()).doesNotContain("warning").contains("bad.gguf");
    CliResult loopback = CliResult.run("serve", "-m", bad, "--host", "localhost", "--port", "0");
    assertThat(loopback.err()).doesNotContain("warning").contains("bad.gguf");
  }

  @Test
  void badApiKeyFilesAreRefused(@TempDir Path dir) throws Exception {
    Path missing = dir.resolve("missing");
    assertOneSentence(
        serve("--api-key-file", missing.toString()),
        "kvslim: --api-key-file " + missing + ": no such file");
    Path empty = Files.writeString(dir.resolve("empty"), " \n");
    assertOneSentence(
        serve("--api-key-file", empty.toString()), "kvslim: --api-key-file " + empty + " is empty");
    Path two = Files.writeString(dir.resolve("two"), "a\nb\n");
    assertOneSentence(
        serve("--api-key-file", two.toString()),
        "kvslim: --api-key-file " + two + " holds more than one line");
    assertOneSentence(
        serve("--api-key-file", dir.toString()),
        "kvslim: --api-key-file " + dir + " is a directory");
    assertOneSentence(
        serve("--api-key", "k", "--api-key-file", empty.toString()),
        "kvslim: give one of --api-key and --api-key-file");
    assertOneSentence(serve("--idle-timeout", "0"), "kvslim: --idle-timeout must be at least 1");
    assertOneSentence(serve("--port", "65536"), "kvslim: --port must be 0..65535, got 65536");
  }

  @Test
  void theKeyComesFromTheOptionTheFileOrTheEnvironment(@TempDir Path dir) throws Exception {
    Path file = Files.writeString(dir.resolve("key"), "  from-file \n");
    Map<String, String> env = Map.of(ServeCommand.API_KEY_ENV, "from-env");
    assertThat(ServeCommand.apiKey("opt", null, env)).isEqualTo("opt");
    assertThat(ServeCommand.apiKey(null, file, env)).isEqualTo("from-file");
    assertThat(ServeCommand.apiKey(null, null, env)).isEqualTo("from-env");
    assertThat(ServeCommand.apiKey(null, null, Map.of())).isNull();
    assertThatThrownBy(() -> ServeCommand.apiKey(null, null, Map.of(ServeCommand.API_KEY_ENV, " ")))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageStartingWith("KVSLIM_API_KEY is set but empty");
  }
}
