package io.kvslim.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.kvslim.gguf.GgmlType;
import io.kvslim.gguf.GgufFile;
import io.kvslim.gguf.GgufValue;
import io.kvslim.gguf.GgufValueType;
import io.kvslim.gguf.SafeText;
import io.kvslim.gguf.TensorInfo;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code kvslim inspect MODEL}: prints a GGUF file's header, metadata and tensor table. */
@Command(
    name = "inspect",
    mixinStandardHelpOptions = true,
    description = "Print a GGUF file's version, metadata and tensors.")
public final class InspectCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Parameters(index = "0", paramLabel = "MODEL", description = "the GGUF file")
  Path model;

  @Option(names = "--json", description = "print JSON instead of text")
  boolean json;

  @Option(
      names = "--items",
      paramLabel = "N",
      defaultValue = "8",
      description = "array items shown per metadata array (-1: all; default ${DEFAULT-VALUE})")
  int items;

  @Override
  public Integer call() {
    PrintWriter out = spec.commandLine().getOut();
    try (GgufFile f = GgufFile.open(model)) {
      if (json) {
        printJson(f, out);
      } else {
        printText(f, out);
      }
    }
    out.flush();
    return 0;
  }

  // ---- text ----------------------------------------------------------------------------------

  private void printText(GgufFile f, PrintWriter out) {
    out.printf("file:      %s%n", f.path());
    out.printf(
        "format:    GGUF v%d, alignment %d, data at byte %d, %,d bytes%n",
        f.version(), f.alignment(), f.dataOffset(), f.fileSize());
    out.printf("metadata:  %d entries%n", f.metadata().size());
    // keys and tensor names are file content: printed escaped (SafeText), like quoted strings
    int keyWidth =
        f.metadata().keySet().stream().mapToInt(k -> SafeText.of(k).length()).max().orElse(0);
    for (Map.Entry<String, GgufValue> e : f.metadata().entrySet()) {
      GgufValue v = e.getValue();
      out.printf(
          "  %-" + keyWidth + "s  %-14s %s%n",
          SafeText.of(e.getKey()),
          typeName(v),
          formatValue(v, items));
    }
    out.printf("tensors:   %d%n", f.tensors().size());
    int nameWidth = 4;
    for (TensorInfo t : f.tensors()) {
      nameWidth = Math.max(nameWidth, SafeText.of(t.name()).length());
    }
    out.printf("  %-" + nameWidth + "s  %-5s %-22s %15s%n", "name", "type", "shape", "bytes");
    Totals totals = totals(f);
    for (TensorInfo t : f.tensors()) {
      out.printf(
          "  %-" + nameWidth + "s  %-5s %-22s %,15d%n",
          SafeText.of(t.name()),
          t.type(),
          Arrays.toString(t.dims()),
          t.byteSize());
    }
    StringBuilder byType = new StringBuilder();
    for (Map.Entry<GgmlType, long[]> e : totals.byType.entrySet()) {
      if (!byType.isEmpty()) {
        byType.append(", ");
      }
      byType.append(e.getValue()[0]).append(' ').append(e.getKey());
    }
    out.printf(
        "total:     %d tensors (%s), %,d parameters, %,d bytes of tensor data (%.1f MiB)%n",
        f.tensors().size(),
        byType,
        totals.elements,
        totals.bytes,
        totals.bytes / (1024.0 * 1024.0));
  }

  private static String typeName(GgufValue v) {
    return v.isArray() ? "ARRAY[" + v.elementType() + "]" : v.type().toString();
  }

  /** A value for humans: strings quoted, arrays as their first items and their count. */
  static String formatValue(GgufValue v, int items) {
    if (!v.isArray()) {
      return formatScalar(v.type(), v.value());
    }
    int n = v.length();
    int shown = items < 0 ? n : Math.min(n, items);
    StringBuilder sb = new StringBuilder("[");
    for (int i = 0; i < shown; i++) {
      if (i > 0) {
        sb.append(", ");
      }
      Object x = v.element(i);
      sb.append(
          x instanceof GgufValue g ? formatValue(g, items) : formatScalar(v.elementType(), x));
    }
    if (shown < n) {
      sb.append(shown > 0 ? ", ..." : "...");
    }
    sb.append(']');
    if (shown < n) {
      sb.append(" (").append(n).append(" items)");
    }
    return sb.toString();
  }

  private static String formatScalar(GgufValueType type, Object value) {
    return switch (value) {
      case String s -> quote(s);
      case Long l when type == GgufValueType.UINT64 && l < 0 -> Long.toUnsignedString(l);
      case Double d when type == GgufValueType.FLOAT32 -> Float.toString((float) (double) d);
      default -> String.valueOf(value);
    };
  }

  private static String quote(String s) {
    StringBuilder sb = new StringBuilder("\"");
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> sb.append("\\\"");
        case '\\' -> sb.append("\\\\");
        case '\n' -> sb.append("\\n");
        case '\t' -> sb.append("\\t");
        case '\r' -> sb.append("\\r");
        default -> {
          if (c < 0x20) {
            sb.append(String.format("\\u%04x", (int) c));
          } else {
            sb.append(c);
          }
        }
      }
      if (sb.length() > 200) {
        return sb.append("...\" (").append(s.length()).append(" chars)").toString();
      }
    }
    return sb.append('"').toString();
  }

  // ---- JSON ----------------------------------------------------------------------------------

  private void printJson(GgufFile f, PrintWriter out) {
    Map<String, Object> root = new LinkedHashMap<>();
    root.put("file", f.path().toString());
    root.put("version", f.version());
    root.put("alignment", f.alignment());
    root.put("data_offset", f.dataOffset());
    root.put("file_size", f.fileSize());
    Map<String, Object> meta = new LinkedHashMap<>();
    f.metadata().forEach((k, v) -> meta.put(k, jsonValue(v)));
    root.put("metadata", meta);
    List<Object> tensors = new ArrayList<>();
    for (TensorInfo t : f.tensors()) {
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("name", t.name());
      m.put("type", t.type().toString());
      m.put("shape", t.dims());
      m.put("elements", t.elementCount());
      m.put("bytes", t.byteSize());
      m.put("offset", t.offset());
      tensors.add(m);
    }
    root.put("tensors", tensors);
    Totals totals = totals(f);
    Map<String, Object> tot = new LinkedHashMap<>();
    tot.put("tensors", f.tensors().size());
    tot.put("elements", totals.elements);
    tot.put("bytes", totals.bytes);
    Map<String, Object> byType = new LinkedHashMap<>();
    totals.byType.forEach(
        (type, counts) ->
            byType.put(type.toString(), Map.of("tensors", counts[0], "bytes", counts[1])));
    tot.put("by_type", byType);
    root.put("totals", tot);
    try {
      out.println(
          new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(root));
    } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
      throw new UncheckedIOException(e);
    }
  }

  private Object jsonValue(GgufValue v) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("type", v.type().toString());
    if (!v.isArray()) {
      m.put("value", jsonScalar(v.type(), v.value()));
      return m;
    }
    m.put("element_type", v.elementType().toString());
    int n = v.length();
    int shown = items < 0 ? n : Math.min(n, items);
    m.put("count", n);
    List<Object> values = new ArrayList<>(shown);
    for (int i = 0; i < shown; i++) {
      Object x = v.element(i);
      values.add(x instanceof GgufValue g ? jsonValue(g) : jsonScalar(v.elementType(), x));
    }
    m.put("values", values);
    m.put("truncated", shown < n);
    return m;
  }

  private static Object jsonScalar(GgufValueType type, Object value) {
    if (value instanceof Long l && type == GgufValueType.UINT64 && l < 0) {
      return new BigInteger(Long.toUnsignedString(l));
    }
    if (value instanceof Double d && type == GgufValueType.FLOAT32) {
      return (float) (double) d; // prints 1.0E-5 rather than 9.999999747378752E-6
    }
    return value;
  }

  // ---- totals --------------------------------------------------------------------------------

  private record Totals(long elements, long bytes, Map<GgmlType, long[]> byType) {}

  private static Totals totals(GgufFile f) {
    long elements = 0;
    long bytes = 0;
    Map<GgmlType, long[]> byType = new EnumMap<>(GgmlType.class);
    for (TensorInfo t : f.tensors()) {
      elements += t.elementCount();
      bytes += t.byteSize();
      long[] c = byType.computeIfAbsent(t.type(), k -> new long[2]);
      c[0]++;
      c[1] += t.byteSize();
    }
    return new Totals(elements, bytes, byType);
  }
}
