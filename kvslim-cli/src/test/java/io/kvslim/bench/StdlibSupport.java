package io.kvslim.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * For the tests of the code-retrieval tasks: the system's Python standard library (the test is
 * skipped with a visible message when it is missing) and a python3 to check prompts with Python's
 * own parser (likewise skipped without one).
 */
final class StdlibSupport {
  private StdlibSupport() {}

  static PythonHaystack haystack() {
    try {
      return PythonHaystack.system();
    } catch (IllegalArgumentException e) {
      System.err.println("SKIPPED: " + e.getMessage());
      assumeTrue(false, e.getMessage());
      throw e;
    }
  }

  /** Runs {@code python3 -c script args} with {@code stdin}; its standard output is JSON. */
  static JsonNode python(String script, List<String> args, String stdin) throws Exception {
    List<String> cmd = new ArrayList<>(List.of("python3", "-c", script));
    cmd.addAll(args);
    Process p;
    try {
      p = new ProcessBuilder(cmd).start();
    } catch (IOException e) {
      String m = "python3 is not available to check the prompts: " + e.getMessage();
      System.err.println("SKIPPED: " + m);
      assumeTrue(false, m);
      throw e;
    }
    CompletableFuture<String> err =
        CompletableFuture.supplyAsync(
            () -> {
              try {
                return new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
              } catch (IOException e) {
                return e.toString();
              }
            });
    CompletableFuture<String> out =
        CompletableFuture.supplyAsync(
            () -> {
              try {
                return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
              } catch (IOException e) {
                return e.toString();
              }
            });
    try (OutputStream in = p.getOutputStream()) {
      in.write(stdin.getBytes(StandardCharsets.UTF_8));
    }
    int rc = p.waitFor();
    assertThat(rc).as(err.get()).isZero();
    return new ObjectMapper().readTree(out.get());
  }
}
