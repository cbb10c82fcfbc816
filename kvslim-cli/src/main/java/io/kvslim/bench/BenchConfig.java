package io.kvslim.bench;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.kvslim.kv.method.KvMethod;
import io.kvslim.kv.method.KvMethods;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * What a quality run covers: models, KV specs, tasks, lengths, depths and task settings. Read from
 * a JSON file ({@code --config}) or a suite preset, overridden by command-line options, and written
 * back into the output folder as {@code config.json} so the run can be repeated exactly.
 */
@JsonIgnoreProperties(ignoreUnknown = false)
public final class BenchConfig {
  public static final Set<String> TASKS =
      Set.of(
          "ppl",
          "passkey",
          "niah",
          "ruler",
          "code",
          "pycode",
          "pycode:assign",
          "pycode:vt",
          "pycode:arg");
  public static final Set<String> RULER_VARIANTS = Set.of("mk", "mv", "vt", "cwe");

  public String suite = "quick";
  public List<String> models = new ArrayList<>();
  public List<String> specs = new ArrayList<>();
  public List<String> tasks =
      new ArrayList<>(List.of("ppl", "passkey", "niah", "ruler", "code", "pycode"));
  public List<Integer> lengths = new ArrayList<>();
  public List<Double> depths = new ArrayList<>();
  public int samples = 1;
  public long seed = 1;
  public Ppl ppl = new Ppl();

  /**
   * UTF-8 text the specs that need a calibration profile and name none are calibrated on, with
   * {@code kvslim calibrate}'s defaults ({@code --calib}); null: the built-in code corpus with the
   * suite's seed.
   */
  @com.fasterxml.jackson.annotation.JsonInclude(
      com.fasterxml.jackson.annotation.JsonInclude.Include.NON_NULL)
  public String calib;

  public Niah niah = new Niah();
  public List<String> rulerVariants = new ArrayList<>(List.of("mk", "mv", "vt", "cwe"));

  /**
   * Prefill once per storage format (specs that store the same formats hold the same tokens until
   * their policies act after the prefill) and run the specs' lockstep decode steps as one batch.
   * The results are the same bit for bit as running every spec alone (tested); false runs them
   * alone.
   */
  public boolean share = true;

  /** ppl: print what each spec's cache holds per layer and KV head after the first window. */
  public transient boolean explain;

  /** Perplexity and KL divergence settings. */
  public static final class Ppl {
    /** Tokens per window (BOS included). */
    public int ctx = 256;

    /** Windows scored (fewer when the text is shorter). */
    public int windows = 2;

    /**
     * Tokens at the end of each window scored by single-token decode steps, after the rest was
     * prefilled: eviction methods compress after the prefill, so only these show their damage.
     */
    public int decode = 64;

    /** UTF-8 text to score; null for the built-in seeded prose. */
    public String text;
  }

  /** Needle-in-a-haystack templates; {key} and {value} are substituted. */
  public static final class Niah {
    public String intro =
        "Secret numbers are hidden in the text below. Read it carefully and remember them.";
    public String needle = "The secret number of the {key} is {value}.";
    public String question =
        "What is the secret number of the {key}? The secret number of the {key} is";

    /** "synthetic" (seeded prose), "repeat" (one repeated paragraph) or a UTF-8 text file. */
    public String haystack = "synthetic";

    /** Digits of the hidden number. */
    public int digits = 7;
  }

  /** Specs of several methods together that the full suite runs after each method's own. */
  public static final List<String> COMPOSITIONS = List.of("snapkv:budget=25%,window=32 + q8_0");

  /** The preset of a suite: "quick" (minutes on a tiny model) or "full". */
  public static BenchConfig suite(String name) {
    BenchConfig c = new BenchConfig();
    c.suite = name;
    switch (name) {
      case "quick" -> {
        c.specs =
            new ArrayList<>(
                List.of(
                    "streaming:sinks=4,window=60",
                    "h2o:budget=25%",
                    "snapkv:budget=25%,window=16",
                    "q8_0",
                    "kivi:kbits=2,vbits=2,group=32,residual=32"));
        c.lengths = new ArrayList<>(List.of(256, 512));
        c.depths = new ArrayList<>(List.of(0.1, 0.5, 0.9));
        c.samples = 1;
        c.ppl.ctx = 256;
        c.ppl.windows = 2;
        c.ppl.decode = 64;
      }
      case "full" -> {
        // every registered method's benchmark specs, then compositions
        c.specs = new ArrayList<>();
        for (KvMethod m : KvMethods.all()) {
          c.specs.addAll(m.benchmarkSpecs());
        }
        c.specs.addAll(COMPOSITIONS);
        c.lengths = new ArrayList<>(List.of(512, 1024, 2000));
        c.depths = new ArrayList<>(List.of(0.0, 0.25, 0.5, 0.75, 1.0));
        c.samples = 3;
        c.ppl.ctx = 1024;
        c.ppl.windows = 4;
        c.ppl.decode = 256;
      }
      default ->
          throw new IllegalArgumentException(
              "unknown suite '" + name + "' (expected quick or full)");
    }
    return c;
  }

  private static ObjectMapper mapper() {
    return new ObjectMapper()
        .enable(SerializationFeature.INDENT_OUTPUT)
        .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES);
  }

  /** Reads a JSON config; a missing, unreadable or malformed file is a one-line user error. */
  public static BenchConfig read(Path file) {
    if (!Files.isRegularFile(file) || !Files.isReadable(file)) {
      throw new IllegalArgumentException(
          "config file " + file + " does not exist or is unreadable");
    }
    try {
      BenchConfig c = mapper().readValue(file.toFile(), BenchConfig.class);
      if (c == null) {
        throw new IllegalArgumentException("config file " + file + " is empty");
      }
      return c;
    } catch (IOException e) {
      String m = e.getMessage() == null ? e.toString() : e.getMessage().lines().findFirst().get();
      throw new IllegalArgumentException("config file " + file + " is not a valid config: " + m);
    }
  }

  public void write(Path file) throws IOException {
    mapper().writeValue(file.toFile(), this);
  }

  /** Checks everything a user can get wrong, with one sentence per problem. */
  public void validate() {
    if (models.isEmpty()) {
      throw new IllegalArgumentException("no model given (use -m MODEL or 'models' in the config)");
    }
    for (String t : tasks) {
      if (!TASKS.contains(t)) {
        throw new IllegalArgumentException(
            "unknown task '"
                + t
                + "' (known: ppl, passkey, niah, ruler, code, pycode, pycode:assign, pycode:vt,"
                + " pycode:arg)");
      }
      if (t.startsWith("pycode")) {
        PythonHaystack.locate(PythonHaystack.SYSTEM_ROOT); // its one error sentence when missing
      }
    }
    for (String v : rulerVariants) {
      if (!RULER_VARIANTS.contains(v)) {
        throw new IllegalArgumentException(
            "unknown RULER variant '" + v + "' (known: mk, mv, vt, cwe)");
      }
    }
    for (int l : lengths) {
      if (l < 16) {
        throw new IllegalArgumentException("length " + l + " is too small (at least 16 tokens)");
      }
    }
    for (double d : depths) {
      if (!(d >= 0 && d <= 1)) {
        throw new IllegalArgumentException("depth " + d + " is outside [0, 1]");
      }
    }
    if (calib != null && !java.nio.file.Files.isRegularFile(java.nio.file.Path.of(calib))) {
      throw new IllegalArgumentException(
          "--calib text " + calib + " does not exist or is not a file");
    }
    if (samples < 1) {
      throw new IllegalArgumentException("samples must be at least 1, got " + samples);
    }
    if (ppl.ctx < 4 || ppl.decode < 0 || ppl.decode >= ppl.ctx - 1 || ppl.windows < 1) {
      throw new IllegalArgumentException(
          "ppl settings need ctx >= 4, windows >= 1 and 0 <= decode < ctx - 1");
    }
    if (niah.digits < 1 || niah.digits > 18) {
      throw new IllegalArgumentException("niah.digits must be in 1..18, got " + niah.digits);
    }
  }
}
