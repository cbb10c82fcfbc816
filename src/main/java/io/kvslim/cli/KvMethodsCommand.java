package io.kvslim.cli;

import io.kvslim.kv.method.KvMethods;
import io.kvslim.kv.method.MethodDef;
import io.kvslim.kv.method.ParamDef;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;

/** {@code kvslim kv-methods}: every KV method and format with its keys and defaults. */
@Command(
    name = "kv-methods",
    mixinStandardHelpOptions = true,
    description = "List every KV cache method and storage format with its keys and defaults.")
public final class KvMethodsCommand implements Callable<Integer> {
  @Override
  public Integer call() {
    System.out.println("KV spec: METHOD[:key=value,...] [+ METHOD...] [@layers=A-B] [; RULE...]");
    System.out.println("Budgets: tokens per head (512), a ratio of the prompt (0.25 or 25%),");
    System.out.println("         or bytes for the whole cache (64MiB).");
    System.out.println();
    for (MethodDef m : KvMethods.all()) {
      System.out.printf("%-10s [%s] %s%n", m.name(), m.family(), m.summary());
      for (ParamDef p : m.params()) {
        String def = p.defaultValue() == null ? "unset" : p.defaultValue();
        String choices = p.choices().isEmpty() ? "" : " {" + String.join("|", p.choices()) + "}";
        System.out.printf("    %-9s = %-6s %s%s%n", p.name(), def, p.description(), choices);
      }
    }
    return 0;
  }
}
