package io.kvslim.gguf;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import io.kvslim.SharedData;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Truncates and corrupts real GGUF files many times (fixed seed): every open must either succeed,
 * after which all metadata and every tensor slice are readable, or throw {@link
 * GgufFormatException}. The mutation sequence is fixed by the seed; a time budget stops early on a
 * loaded machine (the count done is printed). Mutations are patched into a temp copy and undone
 * after each try, so a multi-megabyte model is not rewritten per mutation.
 */
class GgufFuzzTest {
  @TempDir Path dir;

  private record Outcome(int done, int opened, int rejected) {}

  /** One mutation: {@code length} bytes patched at {@code pos} (0 for a truncation). */
  private record Mutation(String what, long pos, int length) {}

  @Test
  void mutatedSharedModelOpensOrFailsCleanly() throws IOException {
    Path src = SharedData.model("llama-spm-q4_0.gguf");
    Outcome o = fuzz(src, 1500, 6_000, 1);
    if (o.done() >= 100) {
      assertThat(o.rejected()).isPositive();
    }
  }

  @Test
  void mutatedWriterOutputOpensOrFailsCleanly() throws IOException {
    Path src = dir.resolve("small.gguf");
    GgufTestFiles.writeSmallModel(src);
    Outcome o = fuzz(src, 1000, 3_000, 2);
    if (o.done() >= 100) {
      assertThat(o.rejected()).isPositive();
      assertThat(o.opened()).isPositive();
    }
  }

  private Outcome fuzz(Path src, int mutations, long budgetMillis, long seed) throws IOException {
    byte[] original = Files.readAllBytes(src);
    long headerEnd;
    try (GgufFile f = GgufFile.open(src)) {
      headerEnd = f.dataOffset();
    }
    Path work = dir.resolve("mutant-" + src.getFileName());
    Files.write(work, original);
    SplittableRandom rnd = new SplittableRandom(seed);
    long deadline = System.nanoTime() + budgetMillis * 1_000_000;
    int opened = 0;
    int rejected = 0;
    int done = 0;
    try (FileChannel ch =
        FileChannel.open(work, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
      for (; done < mutations && System.nanoTime() < deadline; done++) {
        Mutation m = mutate(ch, original, headerEnd, rnd);
        String what = m.what();
        try (GgufFile f = GgufFile.open(work)) {
          readEverything(f);
          opened++;
        } catch (GgufFormatException e) {
          assertThat(e.getMessage()).as(what).contains(work.toString());
          rejected++;
        } catch (Throwable t) {
          fail("mutation #" + done + " (" + what + ") threw " + t, t);
        }
        restore(ch, original, m);
      }
    }
    System.out.printf(
        "fuzz %s: %d mutations, %d opened, %d rejected%n",
        src.getFileName(), done, opened, rejected);
    // The time budget only caps the run on a loaded machine; the sequence itself is fixed by seed.
    assertThat(done).isPositive();
    return new Outcome(done, opened, rejected);
  }

  /** Applies one random mutation in place and describes it. */
  private static Mutation mutate(
      FileChannel ch, byte[] original, long headerEnd, SplittableRandom r) throws IOException {
    int len = original.length;
    // Most mutations hit the header, where parsing happens; a few land anywhere.
    long pos = r.nextInt(10) < 9 ? r.nextLong(headerEnd) : r.nextLong(len);
    int kind = r.nextInt(100);
    if (kind < 10) {
      long cut = r.nextInt(4) == 0 ? r.nextLong(len) : pos;
      ch.truncate(cut);
      return new Mutation("truncate to " + cut, cut, 0);
    }
    if (kind < 60) {
      int bit = r.nextInt(8);
      put(ch, pos, new byte[] {(byte) (original[(int) pos] ^ (1 << bit))});
      return new Mutation("flip bit " + bit + " at " + pos, pos, 1);
    }
    if (kind < 80) {
      put(ch, pos, new byte[] {(byte) r.nextInt(256)});
      return new Mutation("set byte at " + pos, pos, 1);
    }
    // Overwrite 8 bytes: huge or negative lengths, counts and offsets.
    byte[] b = new byte[(int) Math.min(8, len - pos)];
    long v =
        switch (r.nextInt(4)) {
          case 0 -> -1L;
          case 1 -> r.nextLong();
          case 2 -> 1L << r.nextInt(63);
          default -> r.nextInt(1 << 16);
        };
    for (int i = 0; i < b.length; i++) {
      b[i] = (byte) (v >>> (8 * i));
    }
    put(ch, pos, b);
    return new Mutation("write " + Long.toHexString(v) + " at " + pos, pos, b.length);
  }

  private static void put(FileChannel ch, long pos, byte[] bytes) throws IOException {
    ByteBuffer b = ByteBuffer.wrap(bytes);
    while (b.hasRemaining()) {
      ch.write(b, pos + b.position());
    }
  }

  /** Undoes the last mutation: rewrites what a truncation removed and the patched bytes. */
  private static void restore(FileChannel ch, byte[] original, Mutation m) throws IOException {
    long size = ch.size();
    if (size < original.length) {
      put(ch, size, java.util.Arrays.copyOfRange(original, (int) size, original.length));
    }
    if (m.length() > 0) {
      put(
          ch,
          m.pos(),
          java.util.Arrays.copyOfRange(original, (int) m.pos(), (int) m.pos() + m.length()));
    }
  }

  private static void readEverything(GgufFile f) {
    for (var e : f.metadata().entrySet()) {
      GgufValue v = e.getValue();
      assertThat(v.toString()).isNotNull();
      if (v.isArray()) {
        assertThat(v.length()).isNotNegative();
      }
    }
    for (TensorInfo t : f.tensors()) {
      MemorySegment s = f.tensorData(t);
      assertThat(s.byteSize()).isEqualTo(t.byteSize());
      if (s.byteSize() > 0) {
        s.get(ValueLayout.JAVA_BYTE, 0);
        s.get(ValueLayout.JAVA_BYTE, s.byteSize() - 1);
      }
    }
  }
}
