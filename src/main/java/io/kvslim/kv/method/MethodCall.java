package io.kvslim.kv.method;

import java.util.Map;

/** One method in a spec with its parameters, defaults filled in and values parsed. */
public record MethodCall(MethodDef method, Map<String, Object> params) {
  public String name() {
    return method.name();
  }

  public int integer(String key) {
    return (Integer) params.get(key);
  }

  public double number(String key) {
    return (Double) params.get(key);
  }

  public Budget budget(String key) {
    return (Budget) params.get(key);
  }

  public String string(String key) {
    return (String) params.get(key);
  }

  public boolean bool(String key) {
    return (Boolean) params.get(key);
  }

  @Override
  public String toString() {
    StringBuilder b = new StringBuilder(method.name());
    char sep = ':';
    for (var e : params.entrySet()) {
      b.append(sep).append(e.getKey()).append('=').append(e.getValue());
      sep = ',';
    }
    return b.toString();
  }
}
