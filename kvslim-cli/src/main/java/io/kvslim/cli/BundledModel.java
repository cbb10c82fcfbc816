package io.kvslim.cli;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The model shipped in the repository ({@code models/pycoder-6m-f16.gguf}, see {@code
 * models/MODEL_CARD.md}): what commands load when no {@code -m} is given. The launcher passes the
 * repository's folder as the {@code kvslim.home} system property; without it the current folder is
 * used.
 */
public final class BundledModel {
  /** Path of the bundled model relative to the repository root. */
  public static final String RELATIVE_PATH = "models/pycoder-6m-f16.gguf";

  /** SHA-256 of the bundled file, as the model card states. */
  public static final String SHA256 =
      "ddd26bbcc82705d21a3f726e2e27c076675cb1855b8caef6ee163fa6ae917e89";

  private BundledModel() {}

  /** Where the bundled model should be. */
  public static Path path() {
    String home = System.getProperty("kvslim.home");
    return (home == null || home.isBlank() ? Path.of("") : Path.of(home)).resolve(RELATIVE_PATH);
  }

  /** The bundled model, or an error sentence saying to pass {@code -m}. */
  static Path require() {
    Path p = path();
    if (!Files.isRegularFile(p)) {
      throw new IllegalArgumentException(
          "no model given (-m MODEL) and the bundled model " + p + " was not found");
    }
    return p;
  }
}
