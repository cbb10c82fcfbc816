package io.kvslim.tensor;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The kernels at narrower vector widths than this machine's: a child JVM with {@code
 * -XX:MaxVectorSize} set picks a smaller preferred species, and runs {@link VectorWidthCheck}.
 */
class VectorWidthTest {

  @ParameterizedTest(name = "MaxVectorSize={0}")
  @CsvSource({"16, 4", "32, 8"})
  void kernelsMatchScalarAtNarrowerWidths(int maxVectorBytes, int floatLanes)
      throws IOException, InterruptedException {
    Path java = Path.of(System.getProperty("java.home"), "bin", "java");
    Process p =
        new ProcessBuilder(
                java.toString(),
                "-XX:MaxVectorSize=" + maxVectorBytes,
                // C2 early and synchronously, so the check's later rounds run every kernel as C2
                // compiled it, with its vector intrinsics at this width.
                "-XX:-TieredCompilation",
                "-XX:CompileThreshold=100",
                "-Xbatch",
                "--add-modules",
                "jdk.incubator.vector",
                "--enable-native-access=ALL-UNNAMED",
                "-cp",
                System.getProperty("java.class.path"),
                VectorWidthCheck.class.getName())
            .redirectErrorStream(true)
            .start();
    String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(output).contains("float lanes " + floatLanes + ",");
    assertThat(p.exitValue()).as(output).isZero();
  }
}
