package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import org.junit.jupiter.api.Test;

class BundledModelTest {
  @Test
  void theBundledModelIsTheFileTheModelCardDescribes() throws Exception {
    Path p = Path.of(BundledModel.RELATIVE_PATH);
    assertThat(p).isRegularFile();
    MessageDigest sha = MessageDigest.getInstance("SHA-256");
    try (InputStream in = Files.newInputStream(p)) {
      byte[] buf = new byte[1 << 16];
      for (int n; (n = in.read(buf)) > 0; ) {
        sha.update(buf, 0, n);
      }
    }
    assertThat(HexFormat.of().formatHex(sha.digest())).isEqualTo(BundledModel.SHA256);
    assertThat(Files.readString(Path.of("models/MODEL_CARD.md"))).contains(BundledModel.SHA256);
  }

  @Test
  void commandsWithoutAModelUseTheBundledOne() {
    CliResult r = CliResult.run("tokenize", "-p", "def f(x):\n    return x", "--ids");
    assertThat(r.exitCode()).as(r.err()).isZero();
    assertThat(r.out().trim()).isNotEmpty();
    CliResult g = CliResult.run("generate", "-p", "import os\n", "-n", "4", "--temp", "0");
    assertThat(g.exitCode()).as(g.err()).isZero();
  }
}
