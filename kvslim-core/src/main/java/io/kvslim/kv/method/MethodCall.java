package io.kvslim.kv.method;

import io.kvslim.calibrate.CalibrationProfile;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One method in a spec with its knobs' values, defaults filled in and values parsed, and the
 * calibration profile its rule names ({@code @profile=FILE}), or null.
 */
public record MethodCall(KvMethod method, Map<String, Object> params, CalibrationProfile profile) {
  public MethodCall(KvMethod method, Map<String, Object> params) {
    this(method, params, null);
  }

  /** This call with {@code p} as its profile. */
  MethodCall withProfile(CalibrationProfile p) {
    return new MethodCall(method, params, p);
  }

  /**
   * The profile, checked against the model the policy is built for.
   *
   * @throws KvSpecException when there is none, or it was measured on another model
   */
  public CalibrationProfile profileFor(PolicyContext context) {
    if (profile == null) {
      throw new KvSpecException(KvSpec.missingProfile(method));
    }
    if (context.model() == null) {
      throw new KvSpecException(
          method.name()
              + " cannot check its calibration profile against a model of unknown origin");
    }
    try {
      profile.checkModel(context.model());
    } catch (CalibrationProfile.ProfileException e) {
      throw new KvSpecException(e.getMessage());
    }
    return profile;
  }

  /**
   * Binds the raw {@code key=value} strings of a spec to {@code method}'s knobs: unknown keys are
   * refused naming the accepted ones, absent keys take their default, every value is parsed and
   * range-checked, then the method checks the values against each other.
   */
  static MethodCall bind(KvMethod method, Map<String, String> raw) {
    for (String key : raw.keySet()) {
      if (method.knobs().stream().noneMatch(k -> k.name().equals(key))) {
        throw new KvSpecException(
            "unknown key '"
                + key
                + "' for method '"
                + method.name()
                + "' (accepted: "
                + acceptedKeys(method)
                + ")");
      }
    }
    Map<String, Object> values = new LinkedHashMap<>();
    for (Knob k : method.knobs()) {
      String v = raw.getOrDefault(k.name(), k.defaultValue());
      values.put(k.name(), v == null ? null : k.parse(method.name(), v));
    }
    MethodCall call = new MethodCall(method, values);
    method.validate(call);
    return call;
  }

  /** The method's keys, comma-separated, or "none". */
  public static String acceptedKeys(KvMethod method) {
    if (method.knobs().isEmpty()) {
      return "none";
    }
    return String.join(", ", method.knobs().stream().map(Knob::name).toList());
  }

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

  /**
   * Tokens per head {@code key}'s budget gives for a prompt, or {@code Integer.MAX_VALUE} unset.
   */
  public int budgetTokens(String key, int promptTokens, double bytesPerToken) {
    Budget b = budget(key);
    return b == null ? Integer.MAX_VALUE : b.tokens(promptTokens, bytesPerToken);
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
