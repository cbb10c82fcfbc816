package io.kvslim.model;

import io.kvslim.gguf.GgmlType;
import io.kvslim.gguf.GgufFile;
import io.kvslim.gguf.GgufFormatException;
import io.kvslim.gguf.TensorInfo;
import io.kvslim.tensor.WeightMatrix;
import java.nio.file.Path;

/**
 * A loaded Llama-family model: configuration and weights, memory-mapped from a GGUF file. The
 * forward pass lives in {@link Forward}; this class only owns the weights.
 */
public final class Model implements AutoCloseable {
  private final GgufFile file;
  private final ModelConfig config;
  private final WeightMatrix tokenEmbedding;
  private final WeightMatrix output;
  private final float[] outputNorm;
  private final LayerWeights[] layers;
  private final Rope rope;

  private Model(GgufFile file) {
    this.file = file;
    this.config = ModelConfig.from(file);
    ModelConfig c = config;
    this.tokenEmbedding = matrix("token_embd.weight", c.vocabSize(), c.dim());
    this.output =
        file.hasTensor("output.weight")
            ? matrix("output.weight", c.vocabSize(), c.dim())
            : tokenEmbedding; // tied embeddings
    this.outputNorm = vector("output_norm.weight", c.dim());
    this.layers = new LayerWeights[c.layers()];
    for (int l = 0; l < c.layers(); l++) {
      String p = "blk." + l + ".";
      layers[l] =
          new LayerWeights(
              vector(p + "attn_norm.weight", c.dim()),
              matrix(p + "attn_q.weight", c.qDim(), c.dim()),
              matrix(p + "attn_k.weight", c.kvDim(), c.dim()),
              matrix(p + "attn_v.weight", c.kvDim(), c.dim()),
              c.qkvBias() ? vector(p + "attn_q.bias", c.qDim()) : null,
              c.qkvBias() ? vector(p + "attn_k.bias", c.kvDim()) : null,
              c.qkvBias() ? vector(p + "attn_v.bias", c.kvDim()) : null,
              matrix(p + "attn_output.weight", c.dim(), c.qDim()),
              vector(p + "ffn_norm.weight", c.dim()),
              matrix(p + "ffn_gate.weight", c.ffnDim(), c.dim()),
              matrix(p + "ffn_up.weight", c.ffnDim(), c.dim()),
              matrix(p + "ffn_down.weight", c.dim(), c.ffnDim()));
    }
    float[] factors =
        file.hasTensor("rope_freqs.weight") ? vector("rope_freqs.weight", c.ropeDims() / 2) : null;
    this.rope = new Rope(c, factors);
  }

  /** Loads a model; the file stays mapped until {@link #close()}. */
  public static Model load(Path path) {
    GgufFile f = GgufFile.open(path);
    try {
      Model m = new Model(f);
      register(m);
      return m;
    } catch (RuntimeException e) {
      f.close();
      throw e;
    }
  }

  private WeightMatrix matrix(String name, int rows, int cols) {
    TensorInfo t = file.requireTensor(name);
    if (t.dims().length != 2 || t.dims()[0] != cols || t.dims()[1] != rows) {
      throw new GgufFormatException(
          file.path()
              + ": tensor '"
              + name
              + "' has shape "
              + java.util.Arrays.toString(t.dims())
              + ", expected ["
              + cols
              + ", "
              + rows
              + "]");
    }
    try {
      return WeightMatrix.of(t.type(), file.tensorData(t), rows, cols);
    } catch (UnsupportedOperationException e) {
      throw new GgufFormatException(file.path() + ": tensor '" + name + "': " + e.getMessage(), e);
    }
  }

  private float[] vector(String name, int n) {
    TensorInfo t = file.requireTensor(name);
    if (t.elementCount() != n) {
      throw new GgufFormatException(
          file.path()
              + ": tensor '"
              + name
              + "' has "
              + t.elementCount()
              + " elements, expected "
              + n);
    }
    if (t.type() != GgmlType.F32 && t.type() != GgmlType.F16 && t.type() != GgmlType.BF16) {
      throw new GgufFormatException(
          file.path() + ": tensor '" + name + "' has type " + t.type() + ", expected F32");
    }
    float[] out = new float[n];
    WeightMatrix.of(t.type(), file.tensorData(t), 1, n).dequantizeRow(0, out, 0);
    return out;
  }

  public ModelConfig config() {
    return config;
  }

  public GgufFile file() {
    return file;
  }

  public WeightMatrix tokenEmbedding() {
    return tokenEmbedding;
  }

  public WeightMatrix output() {
    return output;
  }

  public float[] outputNorm() {
    return outputNorm;
  }

  public LayerWeights layer(int l) {
    return layers[l];
  }

  public Rope rope() {
    return rope;
  }

  /** Bytes of weights read by one forward step of one token (all matrices, one embedding row). */
  public long weightBytesPerToken() {
    long b = output.byteSize() + tokenEmbedding.byteSize() / config.vocabSize();
    for (LayerWeights l : layers) {
      b += l.wq().byteSize() + l.wk().byteSize() + l.wv().byteSize() + l.wo().byteSize();
      b += l.gate().byteSize() + l.up().byteSize() + l.down().byteSize();
    }
    return b;
  }

  @Override
  public void close() {
    file.close();
  }

  // the loaded models, so that a configuration (the instance a model made) leads back to its file
  private static final java.util.List<java.lang.ref.WeakReference<Model>> LOADED =
      new java.util.ArrayList<>();

  private static synchronized void register(Model m) {
    LOADED.removeIf(r -> r.get() == null);
    LOADED.add(new java.lang.ref.WeakReference<>(m));
  }

  /**
   * The GGUF file of the loaded model whose configuration is {@code config} (that very instance:
   * two files of the same shape have equal but distinct configurations), or null. Calibration
   * profiles are checked against it ({@link io.kvslim.engine.KvSpecs#caches}), where only the
   * configuration is at hand.
   */
  public static synchronized Path fileOf(ModelConfig config) {
    for (var r : LOADED) {
      Model m = r.get();
      if (m != null && m.config == config) {
        return m.file.path();
      }
    }
    return null;
  }
}
