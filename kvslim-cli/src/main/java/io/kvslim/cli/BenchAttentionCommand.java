package io.kvslim.cli;

import io.kvslim.bench.AttentionProfileReport;
import io.kvslim.bench.Progress;
import io.kvslim.calibrate.AttentionProfile;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code kvslim bench attention}: where the model's heads look, per layer and head. */
@Command(
    name = "attention",
    mixinStandardHelpOptions = true,
    description = {
      "Run a text through the model with the full cache and report, per layer and head, the"
          + " attention mass on the first 4 tokens (attention sinks), on the last 16 and 64"
          + " tokens (locality), on neither, and the mean distance back; writes attention.json,"
          + " attention.md and heat maps into --out."
    })
public final class BenchAttentionCommand implements Callable<Integer> {
  @Mixin ModelOptions modelOptions;

  @Option(
      names = {"-f", "--file"},
      required = true,
      paramLabel = "TEXT",
      description = "UTF-8 text to read (BOS is added).")
  Path file;

  @Option(
      names = "--tokens",
      paramLabel = "N",
      description = "Tokens to read (default: the model's context, or the whole text if shorter).")
  Integer tokens;

  @Option(
      names = "--from",
      paramLabel = "P",
      description = "First query position profiled (default ${DEFAULT-VALUE}).")
  int from = 128;

  @Option(names = "--out", required = true, paramLabel = "DIR", description = "Output folder.")
  Path out;

  @Override
  public Integer call() throws IOException {
    ModelOptions.requireFile(file, "text file");
    if (tokens != null && tokens < 2) {
      throw new IllegalArgumentException("--tokens must be at least 2, got " + tokens);
    }
    String text = readUtf8(file);
    try (Model model = modelOptions.load();
        Engine engine = modelOptions.engine(model, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      int[] ids = tok.encode(text, true, false);
      int n = Math.min(ids.length, tokens != null ? tokens : model.config().contextLength());
      if (tokens != null && tokens > model.config().contextLength()) {
        throw new IllegalArgumentException(
            "--tokens "
                + tokens
                + " is more than the model's context of "
                + model.config().contextLength());
      }
      if (from >= n) {
        throw new IllegalArgumentException(
            "--from " + from + " is not before the end of the text's " + n + " tokens");
      }
      int[] used = Arrays.copyOf(ids, n);
      Progress progress = Progress.onStderr(n);
      int[] done = {0};
      AttentionProfile.Result r =
          AttentionProfile.run(
              engine,
              used,
              from,
              e -> {
                progress.advance(e - done[0], "tokens");
                done[0] = e;
              });
      progress.finish();
      String md =
          AttentionProfileReport.write(
              out,
              modelOptions.modelPath().getFileName().toString(),
              file.getFileName().toString(),
              r);
      System.out.print(md.substring(0, md.indexOf("\n## Per head")));
      System.out.println("\nwrote " + out.resolve("attention.md") + " and attention.json");
    }
    return 0;
  }

  private static String readUtf8(Path file) throws IOException {
    try {
      return StandardCharsets.UTF_8
          .newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(Files.readAllBytes(file)))
          .toString();
    } catch (CharacterCodingException e) {
      throw new IllegalArgumentException("text file " + file + " is not UTF-8 text");
    }
  }
}
