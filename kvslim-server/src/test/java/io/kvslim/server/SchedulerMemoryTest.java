package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.engine.SamplerConfig;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.server.SequenceEvent.FinishReason;
import io.kvslim.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The scheduler when admission over-commits the pool: sequences end, the limit holds. */
class SchedulerMemoryTest {
  private static SequenceEvent.Done awaitDone(Sequence s) throws InterruptedException {
    long deadline = System.nanoTime() + 60_000_000_000L;
    while (System.nanoTime() < deadline) {
      if (s.poll(100) instanceof SequenceEvent.Done d) {
        return d;
      }
    }
    throw new AssertionError("sequence " + s.id + " did not finish");
  }

  @Test
  void runningOutOfKvMemoryEndsSequencesWithLengthAndTheSchedulerGoesOn() throws Exception {
    try (Model model = TestServer.loadModel();
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      // room for three blocks per (layer, head): one 20-token prompt each for three sequences
      long limit = 3 * 66_624L;
      BlockPool pool = new BlockPool(limit);
      ServerConfig cfg = TestConfigs.tiny(limit);
      try (Scheduler scheduler = new Scheduler(engine, tok, pool, cfg, new ServerMetrics(pool))) {
        KvPlan plan = KvPlan.resolve("full", pool, model.config()).withEstimateScale(0.01);
        List<Sequence> seqs = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
          int[] prompt = new int[20];
          for (int t = 0; t < prompt.length; t++) {
            prompt[t] = 100 + 7 * t + i;
          }
          seqs.add(scheduler.submit(prompt, 16, SamplerConfig.GREEDY, plan, true, List.of()));
        }
        List<SequenceEvent.Done> done = new ArrayList<>();
        for (Sequence s : seqs) {
          done.add(awaitDone(s));
        }
        assertThat(done).allSatisfy(d -> assertThat(d.reason()).isEqualTo(FinishReason.LENGTH));
        assertThat(done.stream().mapToInt(d -> d.usage().completionTokens()).min().getAsInt())
            .as("some sequence was cut short by the pool")
            .isLessThan(16);
        assertThat(pool.peakBytes()).isLessThanOrEqualTo(limit);
        assertThat(pool.usedBytes()).isZero();

        Sequence after =
            scheduler.submit(
                new int[] {1, 200, 300}, 3, SamplerConfig.GREEDY, plan, true, List.of());
        SequenceEvent.Done d = awaitDone(after);
        assertThat(d.reason()).isEqualTo(FinishReason.LENGTH);
        assertThat(d.usage().completionTokens()).isEqualTo(3);
      }
      assertThat(pool.usedBytes()).isZero();
    }
  }
}
