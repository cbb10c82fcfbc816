package io.kvslim.model;

import com.fasterxml.jackson.databind.*;
import io.kvslim.tensor.Parallel;
import java.nio.file.*;

public class GoldenSmokeMain {
  public static void main(String[] a) throws Exception {
    Path sh = Path.of("/work/shared");
    JsonNode cases = new ObjectMapper().readTree(sh.resolve("golden/cases.json").toFile());
    for (JsonNode cs : cases) {
      if (!cs.get("kv_type_k").asText().equals("f32")) continue;
      if (a.length > 0 && !cs.get("id").asText().contains(a[0])) continue;
      try (Model m = Model.load(sh.resolve(cs.get("model").asText()));
          Parallel p = new Parallel(2)) {
        int[] toks = new int[cs.get("token_ids").size()];
        for (int i = 0; i < toks.length; i++) toks[i] = cs.get("token_ids").get(i).asInt();
        var c = m.config();
        var kv = new TmpDenseKv(c, toks.length);
        Forward f = new Forward(m, p);
        Batch b = new Batch().add(kv, toks, 0, toks.length, 0, true, true);
        float[] logits = new float[toks.length * c.vocabSize()];
        f.run(b, logits);
        var lines = Files.readAllLines(sh.resolve("golden").resolve(cs.get("nll_file").asText()));
        double maxd = 0;
        for (int i = 0; i < toks.length - 1; i++) {
          double lse = Ops.logSumExp(logits, i * c.vocabSize(), c.vocabSize());
          double nll = lse - logits[i * c.vocabSize() + toks[i + 1]];
          double g = Double.parseDouble(lines.get(i).split(" ")[1]);
          maxd = Math.max(maxd, Math.abs(nll - g));
        }
        System.out.println(cs.get("id").asText() + " maxdNLL=" + maxd);
      } catch (Exception e) {
        System.out.println(cs.get("id").asText() + " ERR " + e);
      }
    }
  }
}
