package io.kvslim.calibrate;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.Iterator;

/**
 * KVQuant's calibration tables ({@link KvQuantCalibration}; METHODS.md Q4 step 1, M9), the {@code
 * kvquant} section of a calibration profile:
 *
 * <pre>
 * "kvquant": {"outlier_fraction", "first_tokens", "tokens",
 *   "key_offset": [L][G][d], "key_range": [L][G][d],
 *   "key_centroids": {"uniform"|"act2": {"2"|"3"|"4": [L][2^b]}},
 *   "value_centroids": {same}}
 * </pre>
 *
 * Offsets and ranges normalize each pre-RoPE key channel of each KV head to [−1, 1] between its
 * outlier percentiles; the centroids are the per-layer codebooks of normalized inliers for 2, 3 and
 * 4 bits, fitted unweighted ({@code uniform}) or weighted by the squared activation ({@code act2},
 * this engine's stand-in for the authors' Fisher information, which needs gradients).
 *
 * @param centroids {@code [weighting][kind: 0 keys, 1 values][bits − 2][layer][2^bits]}
 */
public record KvQuantTables(
    double outlierFraction,
    int firstTokens,
    int tokens,
    float[][][] keyOffset,
    float[][][] keyRange,
    float[][][][][] centroids) {

  /** The weightings of the k-means, in the index order of {@link #centroids}. */
  public static final String[] WEIGHTINGS = {"uniform", "act2"};

  public int layers() {
    return keyOffset.length;
  }

  /** The codebook of {@code weighting} for keys ({@code values} false) or values of a layer. */
  public float[] codebook(String weighting, boolean values, int bits, int layer) {
    int w = weighting(weighting);
    if (bits < 2 || bits > 4) {
      throw new IllegalArgumentException("kvquant tables hold 2, 3 and 4 bits, not " + bits);
    }
    return centroids[w][values ? 1 : 0][bits - 2][layer];
  }

  static int weighting(String name) {
    for (int i = 0; i < WEIGHTINGS.length; i++) {
      if (WEIGHTINGS[i].equals(name)) {
        return i;
      }
    }
    throw new IllegalArgumentException(
        "unknown kvquant weighting '" + name + "' (accepted: uniform, act2)");
  }

  ObjectNode toJson(ObjectMapper json) {
    ObjectNode o = json.createObjectNode();
    o.put("outlier_fraction", outlierFraction);
    o.put("first_tokens", firstTokens);
    o.put("tokens", tokens);
    o.set("key_offset", floats3(json, keyOffset));
    o.set("key_range", floats3(json, keyRange));
    String[] kinds = {"key_centroids", "value_centroids"};
    for (int k = 0; k < 2; k++) {
      ObjectNode byWeight = o.putObject(kinds[k]);
      for (int w = 0; w < WEIGHTINGS.length; w++) {
        ObjectNode byBits = byWeight.putObject(WEIGHTINGS[w]);
        for (int b = 2; b <= 4; b++) {
          ArrayNode layers = byBits.putArray(Integer.toString(b));
          for (float[] c : centroids[w][k][b - 2]) {
            layers.add(floats(json, c));
          }
        }
      }
    }
    return o;
  }

  private static ArrayNode floats(ObjectMapper json, float[] v) {
    ArrayNode a = json.createArrayNode();
    for (float x : v) {
      a.add(x);
    }
    return a;
  }

  private static ArrayNode floats3(ObjectMapper json, float[][][] v) {
    ArrayNode a = json.createArrayNode();
    for (float[][] m : v) {
      ArrayNode b = a.addArray();
      for (float[] row : m) {
        b.add(floats(json, row));
      }
    }
    return a;
  }

  /**
   * Reads the section of a profile of {@code layers} layers, {@code kvHeads} KV heads of {@code
   * headDim}.
   *
   * @throws CalibrationProfile.ProfileException one sentence naming the file and the bad field
   */
  static KvQuantTables fromJson(JsonNode o, Path file, int layers, int kvHeads, int headDim) {
    try {
      float[][][] offset = floats3(o.get("key_offset"), layers, kvHeads, headDim);
      float[][][] range = floats3(o.get("key_range"), layers, kvHeads, headDim);
      float[][][][][] centroids = new float[WEIGHTINGS.length][2][3][layers][];
      String[] kinds = {"key_centroids", "value_centroids"};
      for (int k = 0; k < 2; k++) {
        for (int w = 0; w < WEIGHTINGS.length; w++) {
          for (int b = 2; b <= 4; b++) {
            JsonNode perLayer = o.get(kinds[k]).get(WEIGHTINGS[w]).get(Integer.toString(b));
            for (int l = 0; l < layers; l++) {
              centroids[w][k][b - 2][l] = floats(perLayer.get(l), 1 << b);
            }
          }
        }
      }
      return new KvQuantTables(
          o.get("outlier_fraction").asDouble(),
          o.get("first_tokens").asInt(),
          o.get("tokens").asInt(),
          offset,
          range,
          centroids);
    } catch (RuntimeException e) {
      throw new CalibrationProfile.ProfileException(
          "calibration profile "
              + file
              + " has a malformed kvquant section (make it again with 'kvslim calibrate')");
    }
  }

  private static float[] floats(JsonNode a, int n) {
    if (a == null || !a.isArray() || a.size() != n) {
      throw new IllegalArgumentException("expected " + n + " numbers");
    }
    float[] out = new float[n];
    Iterator<JsonNode> it = a.elements();
    for (int i = 0; i < n; i++) {
      JsonNode x = it.next();
      if (!x.isNumber()) {
        throw new IllegalArgumentException("not a number");
      }
      out[i] = (float) x.asDouble();
    }
    return out;
  }

  private static float[][][] floats3(JsonNode a, int l, int g, int d) {
    if (a == null || !a.isArray() || a.size() != l) {
      throw new IllegalArgumentException("expected " + l + " layers");
    }
    float[][][] out = new float[l][g][];
    for (int i = 0; i < l; i++) {
      JsonNode m = a.get(i);
      if (!m.isArray() || m.size() != g) {
        throw new IllegalArgumentException("expected " + g + " heads");
      }
      for (int j = 0; j < g; j++) {
        out[i][j] = floats(m.get(j), d);
      }
    }
    return out;
  }
}
