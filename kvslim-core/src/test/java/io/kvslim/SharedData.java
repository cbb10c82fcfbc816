package io.kvslim;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Locates {@code ../shared} (models, goldens, tokenizers) relative to the project root. Tests that
 * need it call {@link #require()}, which skips the test with a visible reason when it is absent.
 */
public final class SharedData {
  private SharedData() {}

  public static Path root() {
    String override = System.getProperty("kvslim.shared");
    if (override != null) {
      return Path.of(override);
    }
    return Path.of(System.getProperty("user.dir")).resolve("../shared").normalize();
  }

  public static boolean present() {
    return Files.isDirectory(root().resolve("models"));
  }

  /** Skips the calling test (with a message naming the path) when the shared data is missing. */
  public static Path require() {
    Path r = root();
    if (!present()) {
      System.err.println("SKIPPED: shared test data not found at " + r);
    }
    assumeTrue(present(), "shared test data not found at " + r + " (expected ../shared)");
    return r;
  }

  public static Path model(String name) {
    return require().resolve("models").resolve(name);
  }
}
