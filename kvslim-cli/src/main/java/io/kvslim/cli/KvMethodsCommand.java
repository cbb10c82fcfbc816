package io.kvslim.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.kvslim.kv.method.Knob;
import io.kvslim.kv.method.KvMethod;
import io.kvslim.kv.method.KvMethods;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code kvslim kv-methods}: every registered KV method and format with its knobs. */
@Command(
    name = "kv-methods",
    mixinStandardHelpOptions = true,
    description = "List every KV cache method and storage format with its keys and defaults.")
public final class KvMethodsCommand implements Callable<Integer> {
  @Option(
      names = "--json",
      description =
          "Print a JSON array, one object per method: name, family, paper, summary, needs, knobs"
              + " (name, type, default, description, range).")
  boolean json;

  @Spec CommandSpec spec;

  @Override
  public Integer call() throws Exception {
    java.io.PrintWriter out = spec.commandLine().getOut();
    if (json) {
      ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
      out.println(mapper.writeValueAsString(toJson(mapper)));
      out.flush();
      return 0;
    }
    out.println("KV spec: METHOD[:key=value,...] [+ METHOD...] [@layers=A-B] [; RULE...]");
    out.println("Budgets: tokens per head (512), a ratio of the prompt (0.25 or 25%),");
    out.println("         or bytes for the whole cache (64MiB).");
    out.println();
    for (KvMethod m : KvMethods.all()) {
      out.printf("%-10s [%s] %s%n", m.name(), m.family().label(), m.summary());
      out.printf("    paper: %s%n", m.paper());
      if (!m.needs().isEmpty()) {
        out.printf(
            "    needs: %s%n",
            String.join(", ", m.needs().stream().map(KvMethod.Need::label).sorted().toList()));
      }
      for (Knob k : m.knobs()) {
        String def = k.defaultValue() == null ? "unset" : k.defaultValue();
        String range = k.range().isEmpty() ? "" : " {" + k.range() + "}";
        out.printf("    %-9s = %-6s %s%s%n", k.name(), def, k.description(), range);
      }
    }
    out.flush();
    return 0;
  }

  /** The registry as JSON: what {@code --json} prints. */
  static ArrayNode toJson(ObjectMapper mapper) {
    ArrayNode out = mapper.createArrayNode();
    for (KvMethod m : KvMethods.all()) {
      ObjectNode o = out.addObject();
      o.put("name", m.name());
      o.put("family", m.family().label());
      o.put("paper", m.paper());
      o.put("summary", m.summary());
      ArrayNode needs = o.putArray("needs");
      m.needs().stream().map(KvMethod.Need::label).sorted().forEach(needs::add);
      ArrayNode knobs = o.putArray("knobs");
      for (Knob k : m.knobs()) {
        ObjectNode ko = knobs.addObject();
        ko.put("name", k.name());
        ko.put("type", k.type().label());
        ko.put("default", k.defaultValue());
        ko.put("description", k.description());
        if (!k.choices().isEmpty()) {
          ArrayNode choices = ko.putArray("choices");
          k.choices().forEach(choices::add);
        }
        if (k.min() != null) {
          ko.put("min", k.min());
        }
        if (k.max() != null) {
          ko.put("max", k.max());
        }
      }
    }
    return out;
  }
}
