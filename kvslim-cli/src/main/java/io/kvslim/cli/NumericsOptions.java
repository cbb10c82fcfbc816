package io.kvslim.cli;

import io.kvslim.model.Numerics;
import picocli.CommandLine.Option;

/** The {@code --numerics} option of the commands that run the model. */
public final class NumericsOptions {
  @Option(
      names = "--numerics",
      paramLabel = "NAME",
      description =
          "How matmuls and attention round: 'default' (F32 activations, the cache's own attention"
              + " order) or 'llamacpp' (llama.cpp's CPU backend bit for bit over an F32 KV cache:"
              + " 8-bit/F16 activations for quantized/F16 weights, its attention order); default"
              + " ${DEFAULT-VALUE}.")
  String name = "default";

  private Numerics parsed;

  /** The chosen numerics; an unknown name fails here, before any model is loaded. */
  public Numerics numerics() {
    if (parsed == null) {
      parsed = Numerics.parse(name);
    }
    return parsed;
  }
}
