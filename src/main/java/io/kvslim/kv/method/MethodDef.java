package io.kvslim.kv.method;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * A registered KV method or format: name, family, the paper it implements, its keys with defaults,
 * and a check of the parsed values against each other.
 */
public record MethodDef(
    String name,
    String family,
    String summary,
    List<ParamDef> params,
    Consumer<MethodCall> validator) {

  MethodCall bind(Map<String, String> raw) {
    Map<String, Object> values = new LinkedHashMap<>();
    for (String key : raw.keySet()) {
      if (params.stream().noneMatch(p -> p.name().equals(key))) {
        throw new KvSpecException(
            "unknown key '"
                + key
                + "' for method '"
                + name
                + "' (accepted: "
                + acceptedKeys()
                + ")");
      }
    }
    for (ParamDef p : params) {
      String v = raw.getOrDefault(p.name(), p.defaultValue());
      values.put(p.name(), v == null ? null : p.parse(name, v));
    }
    MethodCall call = new MethodCall(this, values);
    validator.accept(call);
    return call;
  }

  public String acceptedKeys() {
    if (params.isEmpty()) {
      return "none";
    }
    return String.join(", ", params.stream().map(ParamDef::name).toList());
  }
}
