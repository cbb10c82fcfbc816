package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The {@code kvslim} launcher script's stderr handling, with a stand-in {@code java} (a shell
 * script) so that no build runs: the JVM's incubator warning is dropped, and every other byte
 * reaches stderr while the program runs, NUL bytes included, even when stderr is a file.
 */
class LauncherTest {
  @TempDir Path dir;

  private static final String FAKE_JAVA =
      """
      #!/bin/sh
      if [ "$1" = -version ]; then echo 'openjdk version "25" 2025-09-16' >&2; exit 0; fi
      printf 'WARNING: Using incubator modules: jdk.incubator.vector\\n' >&2
      printf 'first line\\n' >&2
      printf 'a NUL\\000byte\\n' >&2
      printf 'after the NUL\\n' >&2
      while [ ! -f "$KVSLIM_TEST_GO" ]; do sleep 0.05; done
      printf 'last line\\n' >&2
      exit 3
      """;

  @Test
  @Timeout(value = 60, unit = TimeUnit.SECONDS)
  void stderrIsPassedOnAsItComesWithoutTheIncubatorWarning() throws Exception {
    Path bash = Path.of("/bin/bash");
    Path launcher = Path.of(System.getProperty("user.dir"), "kvslim");
    assumeTrue(Files.isExecutable(bash) && Files.isRegularFile(launcher), "needs bash");
    // the launcher beside a jar newer than any source (there is no src/main here): no build runs
    Path home = Files.createDirectories(dir.resolve("home"));
    Files.copy(launcher, home.resolve("kvslim"));
    Files.createDirectories(home.resolve("kvslim-cli/target"));
    Files.createFile(home.resolve("kvslim-cli/target/kvslim-0.1.0-SNAPSHOT.jar"));
    Path java = Files.createDirectories(dir.resolve("jdk/bin")).resolve("java");
    Files.writeString(java, FAKE_JAVA);
    Files.setPosixFilePermissions(java, PosixFilePermissions.fromString("rwxr-xr-x"));
    Path go = dir.resolve("go");

    Path log = dir.resolve("stderr.log"); // a file, as under systemd, docker or nohup
    ProcessBuilder pb = new ProcessBuilder(bash.toString(), home.resolve("kvslim").toString());
    pb.environment().put("JAVA_HOME", dir.resolve("jdk").toString());
    pb.environment().put("KVSLIM_TEST_GO", go.toString());
    pb.redirectOutput(ProcessBuilder.Redirect.DISCARD);
    pb.redirectError(log.toFile());
    Process p = pb.start();
    String whileRunning = "first line\na NUL\0byte\nafter the NUL\n";
    String seen = waitFor(log, whileRunning);
    assertThat(p.isAlive()).as("the program is still running").isTrue();
    assertThat(seen)
        .as("stderr so far reached the file while the program runs")
        .isEqualTo(whileRunning);
    Files.createFile(go);
    assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
    assertThat(p.exitValue()).isEqualTo(3);
    // the filter may still be copying when the program has exited
    assertThat(waitFor(log, whileRunning + "last line\n"))
        .isEqualTo(whileRunning + "last line\n")
        .doesNotContain("incubator");
  }

  /** The file's content once it is {@code expected} long, or after 30 s. */
  private static String waitFor(Path file, String expected) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    String s = "";
    while (System.nanoTime() < deadline) {
      s = new String(Files.readAllBytes(file), StandardCharsets.ISO_8859_1);
      if (s.length() >= expected.length()) {
        break;
      }
      Thread.sleep(10);
    }
    return s;
  }
}
