package io.kvslim.calibrate;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * What {@code kvslim calibrate} measured on one model, as read and written in {@code profile.json}:
 * the structure methods ({@code razor}, {@code duo}) classify heads from it, and
 * {@code @profile=FILE} in a KV spec names it. The JSON schema (version 1; every array is indexed
 * {@code [layer][head]}, query heads or KV heads as named):
 *
 * <pre>
 * {
 *   "format": "kvslim-calibration-profile", "version": 1,
 *   "model": {"file", "sha256", "layers", "heads", "kv_heads", "head_dim"},
 *   "calibration": {"text", "text_sha256", "tokens", "windows", "seed",
 *                   "razor_sequence_length", "razor_sequences", "duo_positions"},
 *   "razor": {"echo": [L][H], "induction": [L][H], "kv_echo": [L][G], "kv_induction": [L][G]},
 *   "duo": {"scores": [L][G]},
 *   "attention_mass": {"tokens", "from", "queries", "sink_tokens", "near_tokens", "local_tokens",
 *                      "heads": [L][H] of {"bos", "sink", "near", "local", "rest", "distance"}},
 *   "kvsharer": {"samples", "sample_tokens", "threshold", "distance": [L][L],
 *                "accepted": [[i, j], ...], "similarity": [...]},
 *   "pod": {"measure", "sinks", "window", "windows", "queries", "similarity": [L - 1]},
 *   "cq": {"samples", "iterations", "configs": [{"c", "keys": [L], "values": [L]}]},
 *   "kvquant": {...} (KVQuant's tables, {@link KvQuantTables}),
 *   "lexico": {"samples", "rounds", "sparsity", "atoms", "keys": [L], "values": [L]}
 * }
 * </pre>
 *
 * <ul>
 *   <li>{@code model}: the GGUF file's name and SHA-256 and the attention shape; a profile is
 *       refused for any other model ({@link #checkModel}).
 *   <li>{@code calibration}: the text (name and SHA-256), the tokens read from it in {@code
 *       windows} windows of the model's context, and the settings of the random sequences.
 *   <li>{@code razor}: RazorAttention's echo and induction scores (METHODS.md S1 step 1), the mean
 *       attention of the second copy of a repeated random sequence to the same token in the first
 *       copy (echo) and to the token after it (induction); a KV head's score is the largest of its
 *       query heads'.
 *   <li>{@code duo}: DuoAttention's training-free retrieval score per KV head (METHODS.md S2 step
 *       4b, kvpress's {@code duo_attention_on_the_fly}): high means the head reads far back.
 *   <li>{@code attention_mass}: where each query head looks on the first window ({@link
 *       io.kvslim.calibrate.AttentionProfile}): the mass on the first {@code sink_tokens} tokens,
 *       on the last {@code near_tokens} and {@code local_tokens}, on neither ({@code rest}), and
 *       the mean distance back.
 *   <li>{@code kvsharer}: KVSharer's layer distances and the layer pairs its search accepted, in
 *       order ({@link KvSharer}); absent from profiles written before it existed.
 *   <li>{@code pod}: POD's similarity of distant-token attention between consecutive layers ({@link
 *       Pod}, {@link PodSimilarity}); absent from profiles written before it existed.
 *   <li>{@code cq}: Coupled Quantization's k-means codebooks per layer ({@link CqCodebooks});
 *       absent from profiles written before it existed.
 *   <li>{@code lexico}: Lexico's dictionaries per layer ({@link LexicoDictionaries}); absent from
 *       profiles written before it existed.
 * </ul>
 *
 * The file is written with the keys in this order and numbers as Java prints doubles, so the same
 * model, text and seed give the same bytes.
 *
 * @param source the file it was read from, or null
 */
public record CalibrationProfile(
    ModelInfo model,
    Settings calibration,
    double[][] echo,
    double[][] induction,
    double[][] kvEcho,
    double[][] kvInduction,
    double[][] duo,
    AttentionMass attentionMass,
    KvSharer kvSharer,
    Pod pod,
    CqCodebooks cq,
    KvQuantTables kvQuant,
    LexicoDictionaries lexico,
    Path source) {

  /** A profile without KVQuant's tables. */
  public CalibrationProfile(
      ModelInfo model,
      Settings calibration,
      double[][] echo,
      double[][] induction,
      double[][] kvEcho,
      double[][] kvInduction,
      double[][] duo,
      AttentionMass attentionMass,
      KvSharer kvSharer,
      Pod pod,
      CqCodebooks cq,
      Path source) {
    this(
        model,
        calibration,
        echo,
        induction,
        kvEcho,
        kvInduction,
        duo,
        attentionMass,
        kvSharer,
        pod,
        cq,
        null,
        null,
        source);
  }

  /** A profile without CQ's codebooks and KVQuant's tables. */
  public CalibrationProfile(
      ModelInfo model,
      Settings calibration,
      double[][] echo,
      double[][] induction,
      double[][] kvEcho,
      double[][] kvInduction,
      double[][] duo,
      AttentionMass attentionMass,
      KvSharer kvSharer,
      Pod pod,
      Path source) {
    this(
        model,
        calibration,
        echo,
        induction,
        kvEcho,
        kvInduction,
        duo,
        attentionMass,
        kvSharer,
        pod,
        null,
        null,
        null,
        source);
  }

  public static final String FORMAT = "kvslim-calibration-profile";
  public static final int VERSION = 1;

  /** The model a profile was measured on. */
  public record ModelInfo(
      String file, String sha256, int layers, int heads, int kvHeads, int headDim) {
    public String shape() {
      return ModelIdentity.shape(layers, heads, kvHeads, headDim);
    }
  }

  /** How the profile was measured. */
  public record Settings(
      String text,
      String textSha256,
      int tokens,
      int windows,
      long seed,
      int razorSequenceLength,
      int razorSequences,
      int duoPositions) {}

  /** Attention mass per query head on the first window ({@code heads[layer][head]}). */
  public record AttentionMass(
      int tokens,
      int from,
      int queries,
      int sinkTokens,
      int nearTokens,
      int localTokens,
      io.kvslim.calibrate.AttentionProfile.Head[][] heads) {}

  /**
   * KVSharer's calibration search (METHODS.md S3, {@link KvSharerSearch}): {@code distance[i][j]}
   * (i > j; 0 elsewhere) between layers' mean keys and values over {@code samples} samples of
   * {@code sampleTokens} tokens, and the pairs {@code accepted[k] = {i, j}} (layer i to read layer
   * j's keys and values) in the order the search accepted them, each with the mean cosine {@code
   * similarity[k]} of the final hidden states it kept (above {@code threshold}).
   */
  public record KvSharer(
      int samples,
      int sampleTokens,
      double threshold,
      double[][] distance,
      int[][] accepted,
      double[] similarity) {}

  /**
   * POD's calibration ({@link PodSimilarity}): {@code similarity[l]} is the mean over {@code
   * windows} windows, {@code queries} query positions each and every query head of 1 − the
   * Jensen-Shannon divergence (bits) between layers {@code l} and {@code l + 1}'s attention over
   * the query's distant tokens (positions {@code sinks .. p − window}), each renormalized to 1.
   */
  public record Pod(int sinks, int window, int windows, int queries, double[] similarity) {}

  /** A profile file that cannot be used; the message is one sentence naming the file. */
  public static final class ProfileException extends IllegalArgumentException {
    public ProfileException(String message) {
      super(message);
    }
  }

  /**
   * Refuses this profile for a model other than the one it was measured on: another shape, another
   * file content (SHA-256), or a model not loaded from a file (nothing to compare).
   *
   * @throws ProfileException naming both models and the command that makes a profile
   */
  public void checkModel(ModelIdentity m) {
    String name = source == null ? "the calibration profile" : "calibration profile " + source;
    String remedy =
        "; make one for it with 'kvslim calibrate -m "
            + (m.file() == null ? "MODEL" : m.file())
            + " -f TEXT --out profile.json'";
    if (model.layers() != m.layers()
        || model.heads() != m.heads()
        || model.kvHeads() != m.kvHeads()
        || model.headDim() != m.headDim()) {
      throw new ProfileException(
          name
              + " was measured on "
              + model.file()
              + " ("
              + model.shape()
              + ") but this model is "
              + m.fileName()
              + " ("
              + m.shape()
              + ")"
              + remedy);
    }
    String sha = m.sha256();
    if (sha == null) {
      throw new ProfileException(
          name + " cannot be checked against a model that was not loaded from a GGUF file");
    }
    if (!sha.equals(model.sha256())) {
      throw new ProfileException(
          name
              + " was measured on "
              + model.file()
              + " (sha256 "
              + model.sha256().substring(0, 12)
              + "…) but this model is "
              + m.fileName()
              + " (sha256 "
              + sha.substring(0, 12)
              + "…)"
              + remedy);
    }
  }

  // ---- JSON ------------------------------------------------------------------------------------

  private static final ObjectMapper JSON =
      new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  /** The profile as JSON text (deterministic: same profile, same bytes). */
  public String toJson() {
    ObjectNode root = JSON.createObjectNode();
    root.put("format", FORMAT);
    root.put("version", VERSION);
    ObjectNode m = root.putObject("model");
    m.put("file", model.file());
    m.put("sha256", model.sha256());
    m.put("layers", model.layers());
    m.put("heads", model.heads());
    m.put("kv_heads", model.kvHeads());
    m.put("head_dim", model.headDim());
    ObjectNode c = root.putObject("calibration");
    c.put("text", calibration.text());
    c.put("text_sha256", calibration.textSha256());
    c.put("tokens", calibration.tokens());
    c.put("windows", calibration.windows());
    c.put("seed", calibration.seed());
    c.put("razor_sequence_length", calibration.razorSequenceLength());
    c.put("razor_sequences", calibration.razorSequences());
    c.put("duo_positions", calibration.duoPositions());
    ObjectNode r = root.putObject("razor");
    r.set("echo", matrix(echo));
    r.set("induction", matrix(induction));
    r.set("kv_echo", matrix(kvEcho));
    r.set("kv_induction", matrix(kvInduction));
    root.putObject("duo").set("scores", matrix(duo));
    ObjectNode a = root.putObject("attention_mass");
    a.put("tokens", attentionMass.tokens());
    a.put("from", attentionMass.from());
    a.put("queries", attentionMass.queries());
    a.put("sink_tokens", attentionMass.sinkTokens());
    a.put("near_tokens", attentionMass.nearTokens());
    a.put("local_tokens", attentionMass.localTokens());
    ArrayNode layers = a.putArray("heads");
    for (var layer : attentionMass.heads()) {
      ArrayNode row = layers.addArray();
      for (var h : layer) {
        ObjectNode o = row.addObject();
        o.put("bos", h.bos());
        o.put("sink", h.sink());
        o.put("near", h.near());
        o.put("local", h.local());
        o.put("rest", h.rest());
        o.put("distance", h.distance());
      }
    }
    if (kvSharer != null) {
      ObjectNode k = root.putObject("kvsharer");
      k.put("samples", kvSharer.samples());
      k.put("sample_tokens", kvSharer.sampleTokens());
      k.put("threshold", kvSharer.threshold());
      k.set("distance", matrix(kvSharer.distance()));
      ArrayNode acc = k.putArray("accepted");
      for (int[] pair : kvSharer.accepted()) {
        acc.addArray().add(pair[0]).add(pair[1]);
      }
      ArrayNode sim = k.putArray("similarity");
      for (double v : kvSharer.similarity()) {
        sim.add(v);
      }
    }
    if (pod != null) {
      ObjectNode o = root.putObject("pod");
      o.put("measure", PodSimilarity.MEASURE);
      o.put("sinks", pod.sinks());
      o.put("window", pod.window());
      o.put("windows", pod.windows());
      o.put("queries", pod.queries());
      ArrayNode sim = o.putArray("similarity");
      for (double v : pod.similarity()) {
        sim.add(v);
      }
    }
    if (cq != null) {
      cq.write(root);
    }
    if (kvQuant != null) {
      root.set("kvquant", kvQuant.toJson(JSON));
    }
    if (lexico != null) {
      lexico.write(root);
    }
    try {
      return JSON.writeValueAsString(root) + "\n";
    } catch (JacksonException e) {
      throw new IllegalStateException(e);
    }
  }

  private static ArrayNode matrix(double[][] values) {
    ArrayNode out = JSON.createArrayNode();
    for (double[] row : values) {
      ArrayNode r = out.addArray();
      for (double v : row) {
        r.add(v);
      }
    }
    return out;
  }

  /** Writes the profile to {@code file}. */
  public void write(Path file) {
    try {
      Files.writeString(file, toJson());
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write " + file, e);
    }
  }

  /**
   * Reads and checks a profile file.
   *
   * @throws ProfileException one sentence naming the file: missing, unreadable, not JSON, not a
   *     profile, another version, or a field missing or of the wrong shape
   */
  public static CalibrationProfile read(Path file) {
    JsonNode root;
    try {
      root = JSON.readTree(Files.readString(file));
    } catch (NoSuchFileException e) {
      throw new ProfileException("calibration profile " + file + " does not exist");
    } catch (JacksonException e) {
      throw new ProfileException("calibration profile " + file + " is not JSON");
    } catch (IOException e) {
      throw new ProfileException("calibration profile " + file + " cannot be read");
    }
    Reader r = new Reader(file);
    if (root == null || !FORMAT.equals(root.path("format").asText())) {
      throw new ProfileException(
          file + " is not a kvslim calibration profile (make one with 'kvslim calibrate')");
    }
    if (root.path("version").asInt(-1) != VERSION) {
      throw new ProfileException(
          "calibration profile "
              + file
              + " has version "
              + root.path("version")
              + ", this kvslim reads version "
              + VERSION
              + " (make it again with 'kvslim calibrate')");
    }
    JsonNode m = r.object(root, "model");
    ModelInfo model =
        new ModelInfo(
            r.text(m, "file"),
            r.text(m, "sha256"),
            r.positive(m, "layers"),
            r.positive(m, "heads"),
            r.positive(m, "kv_heads"),
            r.positive(m, "head_dim"));
    if (model.heads() % model.kvHeads() != 0) {
      throw r.bad("model.heads is not a multiple of model.kv_heads");
    }
    JsonNode c = r.object(root, "calibration");
    Settings settings =
        new Settings(
            r.text(c, "text"),
            r.text(c, "text_sha256"),
            r.positive(c, "tokens"),
            r.positive(c, "windows"),
            r.number(c, "seed").asLong(),
            r.positive(c, "razor_sequence_length"),
            r.positive(c, "razor_sequences"),
            r.positive(c, "duo_positions"));
    int layers = model.layers();
    JsonNode razor = r.object(root, "razor");
    double[][] echo = r.matrix(razor, "echo", "razor.echo", layers, model.heads());
    double[][] induction = r.matrix(razor, "induction", "razor.induction", layers, model.heads());
    double[][] kvEcho = r.matrix(razor, "kv_echo", "razor.kv_echo", layers, model.kvHeads());
    double[][] kvInd =
        r.matrix(razor, "kv_induction", "razor.kv_induction", layers, model.kvHeads());
    double[][] duo =
        r.matrix(r.object(root, "duo"), "scores", "duo.scores", layers, model.kvHeads());
    JsonNode a = r.object(root, "attention_mass");
    JsonNode heads = a.path("heads");
    if (!heads.isArray() || heads.size() != layers) {
      throw r.bad("attention_mass.heads is not an array of " + layers + " layers");
    }
    var mass = new io.kvslim.calibrate.AttentionProfile.Head[layers][model.heads()];
    for (int l = 0; l < layers; l++) {
      JsonNode row = heads.get(l);
      if (!row.isArray() || row.size() != model.heads()) {
        throw r.bad("attention_mass.heads[" + l + "] does not have " + model.heads() + " heads");
      }
      for (int h = 0; h < model.heads(); h++) {
        JsonNode o = row.get(h);
        mass[l][h] =
            new io.kvslim.calibrate.AttentionProfile.Head(
                r.finite(o, "bos"),
                r.finite(o, "sink"),
                r.finite(o, "near"),
                r.finite(o, "local"),
                r.finite(o, "rest"),
                r.finite(o, "distance"));
      }
    }
    AttentionMass attention =
        new AttentionMass(
            r.positive(a, "tokens"),
            r.number(a, "from").asInt(),
            r.positive(a, "queries"),
            r.number(a, "sink_tokens").asInt(),
            r.number(a, "near_tokens").asInt(),
            r.number(a, "local_tokens").asInt(),
            mass);
    return new CalibrationProfile(
        model,
        settings,
        echo,
        induction,
        kvEcho,
        kvInd,
        duo,
        attention,
        root.has("kvsharer") ? readKvSharer(r, r.object(root, "kvsharer"), layers) : null,
        root.has("pod") ? readPod(r, r.object(root, "pod"), layers) : null,
        root.has("cq")
            ? CqCodebooks.read(r.object(root, "cq"), layers, model.kvHeads(), model.headDim(), file)
            : null,
        root.has("kvquant")
            ? KvQuantTables.fromJson(
                root.get("kvquant"), file, layers, model.kvHeads(), model.headDim())
            : null,
        root.has("lexico")
            ? LexicoDictionaries.read(r.object(root, "lexico"), layers, model.headDim(), file)
            : null,
        file);
  }

  private static KvSharer readKvSharer(Reader r, JsonNode k, int layers) {
    double[][] distance = r.matrix(k, "distance", "kvsharer.distance", layers, layers);
    JsonNode acc = k.path("accepted");
    JsonNode sim = k.path("similarity");
    if (!acc.isArray() || !sim.isArray() || acc.size() != sim.size()) {
      throw r.bad("kvsharer.accepted and kvsharer.similarity are not arrays of one length");
    }
    int[][] accepted = new int[acc.size()][];
    double[] similarity = new double[acc.size()];
    boolean[] shared = new boolean[layers];
    for (int i = 0; i < accepted.length; i++) {
      JsonNode pair = acc.get(i);
      if (!pair.isArray()
          || pair.size() != 2
          || !pair.get(0).canConvertToInt()
          || !pair.get(1).canConvertToInt()) {
        throw r.bad("kvsharer.accepted[" + i + "] is not a pair of layer indices");
      }
      int a = pair.get(0).asInt();
      int b = pair.get(1).asInt();
      if (b < 0 || a <= b || a >= layers || shared[a]) {
        throw r.bad("kvsharer.accepted[" + i + "] = [" + a + ", " + b + "] is not a valid pair");
      }
      shared[a] = true;
      accepted[i] = new int[] {a, b};
      similarity[i] = r.finite(sim, i);
    }
    return new KvSharer(
        r.positive(k, "samples"),
        r.positive(k, "sample_tokens"),
        r.finite(k, "threshold"),
        distance,
        accepted,
        similarity);
  }

  private static Pod readPod(Reader r, JsonNode o, int layers) {
    JsonNode sim = o.path("similarity");
    if (!sim.isArray() || sim.size() != layers - 1) {
      throw r.bad("pod.similarity is not an array of " + (layers - 1) + " values");
    }
    double[] similarity = new double[layers - 1];
    for (int l = 0; l < similarity.length; l++) {
      similarity[l] = r.finite(sim, l);
    }
    return new Pod(
        r.number(o, "sinks").asInt(),
        r.positive(o, "window"),
        r.number(o, "windows").asInt(),
        r.positive(o, "queries"),
        similarity);
  }

  /** Field access with one-sentence errors naming the file and the field. */
  private record Reader(Path file) {
    ProfileException bad(String what) {
      return new ProfileException("calibration profile " + file + " is damaged: " + what);
    }

    JsonNode object(JsonNode parent, String key) {
      JsonNode n = parent.path(key);
      if (!n.isObject()) {
        throw bad("'" + key + "' is missing or not an object");
      }
      return n;
    }

    String text(JsonNode parent, String key) {
      JsonNode n = parent.path(key);
      if (!n.isTextual()) {
        throw bad("'" + key + "' is missing or not a string");
      }
      return n.asText();
    }

    JsonNode number(JsonNode parent, String key) {
      JsonNode n = parent.path(key);
      if (!n.isNumber()) {
        throw bad("'" + key + "' is missing or not a number");
      }
      return n;
    }

    int positive(JsonNode parent, String key) {
      JsonNode n = number(parent, key);
      if (!n.canConvertToInt() || n.asInt() < 1) {
        throw bad("'" + key + "' is not a positive integer");
      }
      return n.asInt();
    }

    double finite(JsonNode array, int index) {
      JsonNode v = array.get(index);
      if (v == null || !v.isNumber() || !Double.isFinite(v.asDouble())) {
        throw bad("value " + index + " is not a finite number");
      }
      return v.asDouble();
    }

    double finite(JsonNode parent, String key) {
      double v = number(parent, key).asDouble();
      if (!Double.isFinite(v)) {
        throw bad("'" + key + "' is not finite");
      }
      return v;
    }

    double[][] matrix(JsonNode parent, String key, String name, int rows, int cols) {
      JsonNode n = parent.path(key);
      if (!n.isArray() || n.size() != rows) {
        throw bad(name + " is not an array of " + rows + " layers");
      }
      double[][] out = new double[rows][cols];
      for (int i = 0; i < rows; i++) {
        JsonNode row = n.get(i);
        if (!row.isArray() || row.size() != cols) {
          throw bad(name + "[" + i + "] does not have " + cols + " values");
        }
        for (int j = 0; j < cols; j++) {
          JsonNode v = row.get(j);
          if (!v.isNumber() || !Double.isFinite(v.asDouble())) {
            throw bad(name + "[" + i + "][" + j + "] is not a finite number");
          }
          out[i][j] = v.asDouble();
        }
      }
      return out;
    }
  }
}
