package io.kvslim.server;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A {@code redis-server} of the tests' own on a free loopback port, without persistence; {@link
 * #close} stops it. Tests that need one are skipped, with the reason, where the binary is absent
 * ({@code .ci/run} installs Debian's package).
 */
final class RedisProcess implements AutoCloseable {
  final int port;
  private final Process process;

  private RedisProcess(int port, Process process) {
    this.port = port;
    this.process = process;
  }

  static String binary() {
    for (String d : (System.getenv().getOrDefault("PATH", "") + ":/usr/bin:/usr/sbin").split(":")) {
      Path p = Path.of(d.isEmpty() ? "." : d, "redis-server");
      if (Files.isExecutable(p)) {
        return p.toString();
      }
    }
    return null;
  }

  static RedisProcess start() throws IOException, InterruptedException {
    String bin = binary();
    assumeTrue(bin != null, "SKIPPED: redis-server not found (apt-get install redis-server)");
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    Process p =
        new ProcessBuilder(
                bin,
                "--port",
                Integer.toString(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes")
            .redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
            .start();
    RedisProcess r = new RedisProcess(port, p);
    long deadline = System.nanoTime() + 10_000_000_000L;
    while (!r.pings()) {
      if (!p.isAlive() || System.nanoTime() > deadline) {
        r.close();
        throw new IOException("redis-server did not start on port " + port);
      }
      Thread.sleep(20);
    }
    return r;
  }

  String uri() {
    return "redis://127.0.0.1:" + port;
  }

  /** Whether the server answers PING. */
  boolean pings() {
    try (Socket s = new Socket("127.0.0.1", port)) {
      OutputStream out = s.getOutputStream();
      out.write("PING\r\n".getBytes(StandardCharsets.US_ASCII));
      out.flush();
      InputStream in = s.getInputStream();
      byte[] b = new byte[7];
      int n = in.readNBytes(b, 0, 7);
      return n == 7 && new String(b, StandardCharsets.US_ASCII).equals("+PONG\r\n");
    } catch (IOException e) {
      return false;
    }
  }

  /**
   * Stops ({@code SIGSTOP}) or continues ({@code SIGCONT}) the server: a stopped one keeps its
   * connections open but answers nothing, so commands time out.
   */
  void signal(String sig) throws IOException, InterruptedException {
    Process k = new ProcessBuilder("kill", "-" + sig, Long.toString(process.pid())).start();
    if (k.waitFor() != 0) {
      throw new IOException("kill -" + sig + " " + process.pid() + " failed");
    }
  }

  /** Kills the server at once (as a crash would) and waits for it to be gone. */
  @Override
  public void close() {
    process.destroyForcibly();
    try {
      process.waitFor();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
