package io.kvslim.cli;

import io.kvslim.bench.ProfileRun;
import io.kvslim.engine.KvCacheFactory;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** The {@code --kv SPEC} option shared by commands that run the model. */
public final class KvOptions {
  @Option(
      names = "--kv",
      paramLabel = "SPEC",
      description =
          "KV cache method(s), e.g. 'snapkv:budget=512 + q8_0' (default: ${DEFAULT-VALUE}); see"
              + " 'kvslim kv-methods'.")
  String spec = "full";

  @Option(
      names = "--calib",
      paramLabel = "TEXT",
      description =
          "UTF-8 text to calibrate the model on when the --kv spec needs a calibration profile"
              + " and names none (@profile=): the profile 'kvslim calibrate -f TEXT' would write,"
              + " made before the run into a temporary file.")
  Path calib;

  private KvSpec parsed;

  /**
   * With {@code --calib} and a spec that needs a calibration profile and names none: calibrates the
   * model on the text ({@link ProfileRun#onTheFly}, the same pass as {@code kvslim calibrate}) and
   * adds the profile to the spec. Does nothing otherwise. Call before {@link #parsed}: such a spec
   * is parsed once the profile exists.
   */
  void calibrate(ModelOptions modelOptions) {
    if (calib == null || !KvSpec.lacksProfile(spec)) {
      return;
    }
    ModelOptions.requireFile(calib, "--calib text");
    try (Model model = modelOptions.load()) {
      Path profile =
          ProfileRun.onTheFly(model, modelOptions.modelPath(), modelOptions.threads, calib);
      spec = KvSpec.withProfile(spec, profile);
      parsed = null;
    }
  }

  /** The parsed spec; a bad spec fails here, before any model is loaded. */
  public KvSpec parsed() {
    if (parsed == null) {
      parsed = KvSpec.parse(spec);
    }
    return parsed;
  }

  public String spec() {
    return parsed().text();
  }

  public KvCacheFactory factory() {
    return KvSpecs.factory(parsed(), new BlockPool());
  }
}
