package io.kvslim.model;

import io.kvslim.ggml.BlockCodec;
import io.kvslim.ggml.LittleEndian;
import io.kvslim.ggml.Q4_KCodec;
import io.kvslim.gguf.GgmlType;
import io.kvslim.gguf.GgufFile;
import io.kvslim.gguf.GgufFormatException;
import io.kvslim.gguf.SafeText;
import io.kvslim.gguf.TensorInfo;
import io.kvslim.tensor.WeightMatrix;
import java.lang.foreign.MemorySegment;
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
    if (c.layers() > file.tensors().size() / 9) { // each block has at least 9 tensors
      throw new GgufFormatException(
          file.path()
              + ": block_count "
              + c.layers()
              + " is more than the file's "
              + file.tensors().size()
              + " tensors can hold");
    }
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

  /**
   * Loads a model; the file stays mapped until {@link #close()}. Content that loads but will give
   * NaN (a NaN or infinite norm weight or block scale) is reported once per tensor as a warning
   * ({@link GgufFile#warn}) on stderr.
   */
  public static Model load(Path path) {
    return of(GgufFile.open(path));
  }

  /** The model in an opened file, which the model then owns (closed by {@link #close()}). */
  public static Model of(GgufFile f) {
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
    WeightMatrix m;
    try {
      m = WeightMatrix.of(t.type(), file.tensorData(t), rows, cols);
    } catch (UnsupportedOperationException e) {
      throw new GgufFormatException(file.path() + ": tensor '" + name + "': " + e.getMessage(), e);
    }
    checkScales(name, t);
    return m;
  }

  /**
   * Warns once when blocks of a quantized tensor have a NaN or infinite scale ({@code d}, or the
   * minimum's scale {@code m}/{@code dmin}): every value of such a block, and so every output the
   * tensor feeds, is NaN. Reads two bytes per block, once at load.
   */
  private void checkScales(String name, TensorInfo t) {
    BlockCodec c = BlockCodec.of(t.type());
    if (c == null) {
      return;
    }
    MemorySegment data = file.tensorData(t);
    int bytes = c.blockBytes();
    long blocks = data.byteSize() / bytes;
    boolean kMin = t.type() == GgmlType.Q4_K || t.type() == GgmlType.Q5_K;
    long bad = 0;
    for (long b = 0; b < blocks; b++) {
      long off = b * bytes;
      float d = c.d(data, off);
      float m =
          c.hasMinimum()
              ? c.m(data, off)
              : kMin ? LittleEndian.half(data, off + Q4_KCodec.DMIN) : 0;
      if (!Float.isFinite(d) || !Float.isFinite(m)) {
        bad++;
      }
    }
    if (bad > 0) {
      file.warn(
          "tensor '"
              + SafeText.of(name)
              + "' ("
              + t.type()
              + ") has "
              + bad
              + " of "
              + blocks
              + " block scales NaN or infinite; the values of those blocks are NaN");
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
    int bad = 0;
    for (float x : out) {
      if (!Float.isFinite(x)) {
        bad++;
      }
    }
    if (bad > 0) {
      file.warn(
          "tensor '"
              + SafeText.of(name)
              + "' has "
              + bad
              + " of "
              + n
              + " values NaN or infinite; the model's outputs will be NaN");
    }
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

  /**
   * The rotary embedding of the loaded model whose configuration is {@code config} (that very
   * instance, with the file's frequency factors), or, for a configuration no loaded model made, the
   * embedding its RoPE settings describe without factors.
   */
  public static synchronized Rope ropeOf(ModelConfig config) {
    for (var r : LOADED) {
      Model m = r.get();
      if (m != null && m.config == config) {
        return m.rope;
      }
    }
    return new Rope(config, null);
  }
}
