package io.kvslim.example;

import io.kvslim.api.GenerateOptions;
import io.kvslim.api.Generation;
import io.kvslim.api.KvConfig;
import io.kvslim.api.KvslimModel;
import io.kvslim.api.KvslimSession;
import io.kvslim.api.StepStats;
import java.nio.file.Path;

/**
 * The README's "Using kvslim as a library" example, in a package of its own so it sees only the
 * public API. {@link ReadmeExampleTest} checks that the README shows exactly the lines between the
 * markers and runs them.
 */
final class ReadmeExample {
  private ReadmeExample() {}

  static void run() {
    // README example begins
    try (KvslimModel model = KvslimModel.load(Path.of("models/pycoder-6m-f16.gguf"));
        KvslimSession session = model.newSession(KvConfig.parse("snapkv:budget=64 + q8_0"))) {
      GenerateOptions options =
          GenerateOptions.builder().maxTokens(48).temperature(0.7).seed(7).stop("\n\n").build();
      Generation g =
          session.generate(
              "def read_config(path):\n",
              options,
              (token, text) -> {
                System.out.print(text); // each token's text as it is generated
                return true; // false stops the generation
              });
      StepStats last = g.steps().getLast();
      System.out.printf(
          "%n%d tokens (%s); KV cache %d bytes, peak %d; last step %d us%n",
          g.generatedTokens(),
          g.stopReason(),
          session.kvBytes(),
          g.kvBytesPeak(),
          last.nanos() / 1000);
    } // closing the session frees the KV cache and its threads; closing the model unmaps the file
    // README example ends
  }
}
