package io.kvslim.cli;

import io.kvslim.cli.CliErrors.UserError;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.charset.MalformedInputException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * The files commands read and write, with one-sentence errors ({@link UserError}) instead of I/O
 * stack traces: text is strict UTF-8 (as {@code tokenize} reads it), and output paths are checked
 * before any long work starts, so a typo does not cost a whole run.
 */
final class CliFiles {
  private CliFiles() {}

  /** The whole of {@code file} as UTF-8 text; a malformed byte is an error, not a '?'. */
  static String readUtf8(Path file) {
    try {
      if (Files.isDirectory(file)) {
        throw new UserError(file + " is a directory, expected a text file");
      }
      return Files.readString(file, StandardCharsets.UTF_8);
    } catch (NoSuchFileException e) {
      throw new UserError(file + ": no such file", e);
    } catch (MalformedInputException e) {
      throw new UserError(file + ": not valid UTF-8 text", e);
    } catch (IOException e) {
      throw new UserError("cannot read " + file + " (" + reason(e) + ")", e);
    }
  }

  /**
   * Checks that {@code file} can be written (created, or overwritten) without changing it: a
   * directory, a missing parent directory or a missing permission fail here with one sentence
   * naming {@code option}. A file this check creates is removed again.
   */
  static void requireWritable(Path file, String option) {
    if (file == null) {
      return;
    }
    if (Files.isDirectory(file)) {
      throw new UserError(option + " " + file + " is a directory, expected a file to write");
    }
    Path parent = file.toAbsolutePath().getParent();
    if (parent != null && !Files.isDirectory(parent)) {
      throw new UserError(option + " " + file + ": directory " + parent + " does not exist");
    }
    boolean existed = Files.exists(file);
    try (FileChannel ch =
        FileChannel.open(file, StandardOpenOption.WRITE, StandardOpenOption.CREATE)) {
      // opened for writing without truncating: nothing is changed
    } catch (IOException e) {
      throw new UserError(option + " " + file + ": cannot write (" + reason(e) + ")", e);
    } finally {
      if (!existed) {
        try {
          Files.deleteIfExists(file);
        } catch (IOException ignored) {
          // left empty: it is written at the end of the run anyway
        }
      }
    }
  }

  /** A failure to write {@code file} at the end of a run, as one sentence. */
  static UserError writeFailed(Path file, String option, IOException e) {
    return new UserError(option + " " + file + ": cannot write (" + reason(e) + ")", e);
  }

  private static String reason(IOException e) {
    if (e instanceof AccessDeniedException) {
      return "permission denied";
    }
    if (e instanceof NoSuchFileException) {
      return "no such file or directory";
    }
    String m = e.getMessage();
    return m == null ? e.getClass().getSimpleName() : m;
  }
}
