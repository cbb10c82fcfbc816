package io.kvslim.kv.method;

import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The registry: every KV method the spec language accepts, in listing order. Adding a method is one
 * class implementing {@link KvMethod} and one line here; the parser, {@code kvslim kv-methods}, the
 * server's admission and the generic method tests pick it up.
 */
public final class KvMethods {
  private static final Map<String, KvMethod> METHODS = new LinkedHashMap<>();

  static {
    register(new FullMethod());
    register(new StreamingMethod());
    register(new H2oMethod());
    register(new AlisaMethod());
    register(new KeyformerMethod());
    register(new NaclMethod());
    register(new EmsMethod());
    register(new LookmMethod());
    register(new TovaMethod());
    register(new SnapKvMethod());
    register(new PyramidKvMethod());
    register(new PyramidInferMethod());
    register(new AdaKvMethod());
    register(new ZigZagKvMethod());
    register(new SqueezeAttentionMethod());
    register(new XkvMethod());
    register(new KeyDiffMethod());
    register(new QuestMethod());
    register(new PqCacheMethod());
    register(new ShadowKvMethod());
    register(new KvCompressMethod());
    register(new ExpectedMethod());
    register(new KvzipMethod());
    register(new DuoMethod());
    register(new RazorMethod());
    register(new KvSharerMethod());
    register(new PodMethod());
    register(new KiviMethod());
    register(new AsymKvMethod());
    register(new TurboQuantMethod());
    register(new GearMethod());
    register(new CqMethod());
    register(new QaqMethod());
    register(new AlignedKvMethod());
    register(new KvQuantMethod());
    register(new AutoMethod());
    register(new LexicoMethod());
    StorageFormatMethod.all().forEach(KvMethods::register);
  }

  private KvMethods() {}

  private static void register(KvMethod m) {
    if (METHODS.put(m.name(), m) != null) {
      throw new IllegalStateException("two KV methods named " + m.name());
    }
  }

  /** The method named {@code name}, or {@code null}. */
  public static KvMethod get(String name) {
    return METHODS.get(name);
  }

  public static List<String> names() {
    return new ArrayList<>(METHODS.keySet());
  }

  public static Collection<KvMethod> all() {
    return METHODS.values();
  }
}
