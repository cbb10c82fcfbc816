package io.kvslim.cli;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.gguf.GgufFile;
import io.kvslim.gguf.GgufFormatException;
import io.kvslim.tokenizer.Tokenizer;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.MalformedInputException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.StringJoiner;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code kvslim tokenize}: the token ids of a text under a model's tokenizer. */
@Command(
    name = "tokenize",
    mixinStandardHelpOptions = true,
    description = {
      "Prints the tokens of a text: one 'id<TAB>piece' line per token, or with --ids the ids on"
          + " one line. With --jsonl, each line of FILE is a JSON string and each output line a"
          + " JSON array of its ids."
    })
public final class TokenizeCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(
      names = {"-m", "--model"},
      paramLabel = "MODEL",
      description =
          "GGUF model (or vocabulary-only GGUF) whose tokenizer to use (default: the bundled"
              + " model).")
  Path model;

  @ArgGroup(exclusive = true, multiplicity = "1")
  Input input;

  static final class Input {
    @Option(
        names = {"-p", "--prompt"},
        paramLabel = "TEXT",
        description = "Text to tokenize.")
    String prompt;

    @Option(
        names = {"-f", "--file"},
        paramLabel = "FILE",
        description = "UTF-8 file whose whole content to tokenize.")
    Path file;

    @Option(
        names = "--jsonl",
        paramLabel = "FILE",
        description = "File with one JSON string per line, each tokenized on its own.")
    Path jsonl;
  }

  @Option(names = "--ids", description = "Print only the ids, space-separated, on one line.")
  boolean idsOnly;

  @Option(names = "--no-bos", description = "Do not add BOS/EOS even if the model asks for them.")
  boolean noBos;

  @Option(
      names = "--parse-special",
      description = "Turn special tokens written in the text (e.g. <|im_start|>) into their ids.")
  boolean parseSpecial;

  @Override
  public Integer call() {
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    try (GgufFile gguf = GgufFile.open(model == null ? BundledModel.require() : model)) {
      Tokenizer tokenizer = Tokenizer.fromGguf(gguf);
      if (input.jsonl != null) {
        tokenizeJsonLines(tokenizer, out);
      } else {
        String text = input.prompt != null ? input.prompt : Files.readString(input.file);
        print(tokenizer, tokenizer.encode(text, !noBos, parseSpecial), out);
      }
      out.flush();
      return 0;
    } catch (GgufFormatException | IllegalArgumentException e) {
      err.println("kvslim tokenize: " + e.getMessage());
    } catch (NoSuchFileException e) {
      err.println("kvslim tokenize: " + e.getFile() + ": no such file");
    } catch (MalformedInputException e) {
      err.println("kvslim tokenize: " + inputFile() + ": not valid UTF-8 text");
    } catch (IOException e) {
      err.println("kvslim tokenize: cannot read " + inputFile() + " (" + e.getMessage() + ")");
    }
    err.flush();
    return 1;
  }

  private Path inputFile() {
    return input.jsonl != null ? input.jsonl : input.file;
  }

  private void tokenizeJsonLines(Tokenizer tokenizer, PrintWriter out) throws IOException {
    ObjectMapper json = new ObjectMapper();
    try (BufferedReader reader = Files.newBufferedReader(input.jsonl, StandardCharsets.UTF_8)) {
      int lineNumber = 0;
      for (String line; (line = reader.readLine()) != null; ) {
        lineNumber++;
        if (line.isBlank()) {
          continue;
        }
        JsonNode node;
        try {
          node = json.readTree(line);
        } catch (JacksonException e) {
          node = null;
        }
        if (node == null || !node.isTextual()) {
          throw new IllegalArgumentException(
              input.jsonl + ":" + lineNumber + ": expected a JSON string on each line");
        }
        int[] ids = tokenizer.encode(node.textValue(), !noBos, parseSpecial);
        out.println(json.writeValueAsString(ids));
      }
    }
  }

  private void print(Tokenizer tokenizer, int[] ids, PrintWriter out) {
    if (idsOnly) {
      StringJoiner line = new StringJoiner(" ");
      for (int id : ids) {
        line.add(Integer.toString(id));
      }
      out.println(line);
      return;
    }
    for (int id : ids) {
      out.println(id + "\t" + displayPiece(tokenizer.tokenBytes(id)));
    }
  }

  /**
   * A token's text on one line: control characters escaped ({@code \n}, {@code \x01}), and bytes
   * that are not complete UTF-8 (part of a character) written as {@code <0xE4>}.
   */
  static String displayPiece(byte[] bytes) {
    String text;
    try {
      text =
          StandardCharsets.UTF_8
              .newDecoder()
              .onMalformedInput(CodingErrorAction.REPORT)
              .onUnmappableCharacter(CodingErrorAction.REPORT)
              .decode(ByteBuffer.wrap(bytes))
              .toString();
    } catch (CharacterCodingException e) {
      StringBuilder sb = new StringBuilder();
      for (byte b : bytes) {
        if (b >= 0x20 && b < 0x7F) {
          sb.append((char) b);
        } else {
          sb.append(String.format("<0x%02X>", b & 0xFF));
        }
      }
      return sb.toString();
    }
    StringBuilder sb = new StringBuilder(text.length());
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      switch (c) {
        case '\n' -> sb.append("\\n");
        case '\t' -> sb.append("\\t");
        case '\r' -> sb.append("\\r");
        default -> {
          if (c < 0x20 || c == 0x7F) {
            sb.append(String.format("\\x%02x", (int) c));
          } else {
            sb.append(c);
          }
        }
      }
    }
    return sb.toString();
  }
}
