package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.engine.Engine;
import io.kvslim.engine.Generator;
import io.kvslim.engine.KvSpecs;
import io.kvslim.engine.Sampler;
import io.kvslim.engine.SamplerConfig;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * A method that replays the prompt (KVzip) behind the server: the scheduler, which feeds prompts in
 * chunks of its own, runs the replay after the last one, so a greedy sequence generates what {@link
 * Generator} generates with the same spec, and a compressed one differs from the full cache.
 */
class SchedulerReplayTest {
  static final String SPEC = "kvzip:budget=6,chunk=16";

  @Test
  void theSchedulerReplaysThePromptAsTheGeneratorDoes() throws Exception {
    try (Model model = TestServer.loadModel()) {
      int[] prompt = new Random(5).ints(40, 3, model.config().vocabSize()).toArray();
      prompt[0] = 1;
      int[] expected;
      int[] full;
      try (Engine engine =
          new Engine(model, 2, KvSpecs.factory(KvSpec.parse(SPEC), new BlockPool()))) {
        int[] out =
            new Generator(engine)
                .generate(prompt, 12, new Sampler(SamplerConfig.GREEDY), t -> false, t -> true)
                .tokens();
        expected = Arrays.copyOfRange(out, prompt.length, out.length);
      }
      try (Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
        int[] out =
            new Generator(engine)
                .generate(prompt, 12, new Sampler(SamplerConfig.GREEDY), t -> false, t -> true)
                .tokens();
        full = Arrays.copyOfRange(out, prompt.length, out.length);
        BlockPool pool = new BlockPool();
        Tokenizer tok = Tokenizer.fromGguf(model.file());
        try (Scheduler scheduler =
            new Scheduler(engine, tok, pool, TestConfigs.tiny(1L << 30), new ServerMetrics(pool))) {
          KvPlan plan = KvPlan.resolve(SPEC, pool, model.config());
          Sequence s = scheduler.submit(prompt, 12, SamplerConfig.GREEDY, plan, true, List.of());
          List<Integer> got = new ArrayList<>();
          long deadline = System.nanoTime() + 60_000_000_000L;
          while (System.nanoTime() < deadline) {
            SequenceEvent e = s.poll(100);
            if (e instanceof SequenceEvent.Delta d) {
              got.add(d.token());
            } else if (e instanceof SequenceEvent.Done) {
              break;
            }
          }
          assertThat(got.stream().mapToInt(Integer::intValue).toArray()).isEqualTo(expected);
        }
      }
      assertThat(expected).as("the compressed cache changes the greedy tokens").isNotEqualTo(full);
    }
  }
}
