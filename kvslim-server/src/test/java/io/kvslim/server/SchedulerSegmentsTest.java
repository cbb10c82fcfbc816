package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.chat.ChatTemplate;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.engine.SamplerConfig;
import io.kvslim.kv.PromptSegments;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.tokenizer.Tokenizer;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * A chat's segment labels (system and last user message: priority) go with its sequence to the
 * cache the scheduler makes for it, where a segment-aware policy (LOOK-M) reads them.
 */
class SchedulerSegmentsTest {
  @Test
  void aChatsLabelsReachTheSequencesCache() throws Exception {
    try (Model model = TestServer.loadModel();
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      List<ChatTemplate.Message> messages =
          List.of(
              new ChatTemplate.Message("system", "Be brief."),
              new ChatTemplate.Message("user", "A long document about nothing in particular."),
              new ChatTemplate.Message("assistant", "Read."),
              new ChatTemplate.Message("user", "Summarize it."));
      ChatTemplate.Segmented enc = ChatTemplate.fallback().encodeSegmented(tok, messages);
      assertThat(enc.segments().nonPriority()).isPositive();
      BlockPool pool = new BlockPool(64L << 20);
      try (Scheduler scheduler =
          new Scheduler(engine, tok, pool, TestConfigs.tiny(64L << 20), new ServerMetrics(pool))) {
        KvPlan plan = KvPlan.resolve("lookm:budget=8", pool, model.config());
        Sequence s =
            scheduler.submit(
                enc.tokens(), enc.segments(), 2, SamplerConfig.GREEDY, plan, true, List.of());
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (!(s.poll(100) instanceof SequenceEvent.Done)) {
          assertThat(System.nanoTime()).as("sequence finishes").isLessThan(deadline);
        }
        PromptSegments seen = ((io.kvslim.kv.cache.ManagedKvCache) s.cache).promptSegments();
        assertThat(seen).isSameAs(enc.segments());
      }
    }
  }
}
