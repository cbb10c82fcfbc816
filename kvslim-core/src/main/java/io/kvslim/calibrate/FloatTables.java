package io.kvslim.calibrate;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Base64;

/**
 * The profile's f32 tables (CQ codebooks, Lexico dictionaries) as base64 of little-endian floats,
 * written and read with one-sentence errors naming the file and the table.
 */
final class FloatTables {
  private FloatTables() {}

  static String encode(float[] values) {
    ByteBuffer b = ByteBuffer.allocate(4 * values.length).order(ByteOrder.LITTLE_ENDIAN);
    b.asFloatBuffer().put(values);
    return Base64.getEncoder().encodeToString(b.array());
  }

  /**
   * The {@code floats} finite values stored in {@code node}.
   *
   * @param what the table, as the error names it (e.g. {@code cq codebook of layer 3})
   * @throws CalibrationProfile.ProfileException if it is not base64, has another length, or holds a
   *     value that is not finite
   */
  static float[] decode(JsonNode node, int floats, Path file, String what) {
    byte[] bytes;
    try {
      bytes = Base64.getDecoder().decode(node.asText(""));
    } catch (IllegalArgumentException e) {
      throw damaged(file, what + " is not base64");
    }
    if (bytes.length != 4 * floats) {
      throw damaged(file, what + " does not have " + floats + " values");
    }
    float[] out = new float[floats];
    ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
    for (float f : out) {
      if (!Float.isFinite(f)) {
        throw damaged(file, what + " has a value that is not finite");
      }
    }
    return out;
  }

  static CalibrationProfile.ProfileException damaged(Path file, String what) {
    return new CalibrationProfile.ProfileException(
        "calibration profile " + file + " is damaged: " + what);
  }
}
