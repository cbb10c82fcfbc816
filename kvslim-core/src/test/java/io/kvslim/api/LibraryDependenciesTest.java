package io.kvslim.api;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The library carries no CLI or server: kvslim-core's classpath (its dependencies, transitive ones
 * included, as Maven resolved them for these tests) has neither kvslim's CLI and server nor
 * picocli, Javalin, Micrometer, XChart or the progress-bar library.
 */
class LibraryDependenciesTest {
  @Test
  void noCliOrServerClassIsOnTheLibrarysClasspath() {
    List<String> absent =
        List.of(
            "io.kvslim.cli.Main",
            "io.kvslim.server.OpenAiServer",
            "io.kvslim.bench.SpeedBenchmark",
            "picocli.CommandLine",
            "io.javalin.Javalin",
            "io.micrometer.core.instrument.MeterRegistry",
            "org.knowm.xchart.XYChart",
            "me.tongfei.progressbar.ProgressBar",
            "org.slf4j.simple.SimpleLogger");
    for (String name : absent) {
      assertThatThrownBy(() -> Class.forName(name))
          .as(name)
          .isInstanceOf(ClassNotFoundException.class);
    }
    // and the check can fail: what the library does use is there
    assertThat(KvslimModel.class.getName()).isEqualTo("io.kvslim.api.KvslimModel");
    assertThat(com.hubspot.jinjava.Jinjava.class).isNotNull();
  }
}
