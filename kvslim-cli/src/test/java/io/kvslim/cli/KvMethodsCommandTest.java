package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.kv.method.Knob;
import io.kvslim.kv.method.KvMethod;
import io.kvslim.kv.method.KvMethods;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class KvMethodsCommandTest {
  @Test
  void jsonListsEveryRegisteredMethodWithItsKnobs() throws Exception {
    CliResult r = CliResult.run("kv-methods", "--json");
    assertThat(r.exitCode()).isZero();
    JsonNode array = new ObjectMapper().readTree(r.out());
    assertThat(array.isArray()).isTrue();
    List<String> names = new ArrayList<>();
    array.forEach(m -> names.add(m.get("name").asText()));
    assertThat(names).containsExactlyElementsOf(KvMethods.names());
    for (JsonNode m : array) {
      KvMethod method = KvMethods.get(m.get("name").asText());
      assertThat(m.get("family").asText()).isEqualTo(method.family().label());
      assertThat(m.get("paper").asText()).isEqualTo(method.paper());
      assertThat(m.get("knobs").size()).isEqualTo(method.knobs().size());
      for (int i = 0; i < method.knobs().size(); i++) {
        Knob k = method.knobs().get(i);
        JsonNode j = m.get("knobs").get(i);
        assertThat(j.get("name").asText()).isEqualTo(k.name());
        assertThat(j.get("type").asText()).isEqualTo(k.type().label());
        assertThat(j.has("default")).isTrue();
        assertThat(j.get("default").isNull()).isEqualTo(k.defaultValue() == null);
        assertThat(j.get("description").asText()).isEqualTo(k.description());
      }
    }
    JsonNode h2o = array.get(KvMethods.names().indexOf("h2o"));
    assertThat(h2o.get("needs").get(0).asText()).isEqualTo("attention_probs");
    assertThat(h2o.get("knobs").get(1).get("min").asDouble()).isZero();
    assertThat(h2o.get("knobs").get(1).get("max").asDouble()).isEqualTo(1.0);
  }

  @Test
  void theTextListingNamesEveryMethodAndItsPaper() {
    CliResult r = CliResult.run("kv-methods");
    assertThat(r.exitCode()).isZero();
    for (KvMethod m : KvMethods.all()) {
      assertThat(r.out()).contains(m.name() + " ").contains(m.paper());
    }
    assertThat(r.out())
        .contains("window    = 32     observation window (last prompt tokens) {>= 1}");
  }
}
