package io.kvslim.server;

import com.fasterxml.jackson.databind.JsonNode;
import io.kvslim.engine.blend.BlendOptions;
import io.kvslim.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.List;

/**
 * A completion whose prompt comes with {@code "cache_chunks"} (CacheBlend, METHODS.md H1): the
 * model sees BOS (if it adds one), each chunk's tokens in order, then the {@code prompt}'s; each
 * chunk's KV is computed once on its own and reused by later requests in any order, and {@code
 * "cache_blend"} (a spec such as {@code cacheblend:recompute=15%}, the default) says how much of it
 * is recomputed. Each chunk is tokenized on its own, so write chunk boundaries where a token
 * boundary is natural (at line ends).
 */
record BlendPrompt(int[] prefix, List<int[]> chunks, int[] suffix, BlendOptions options) {
  /** Most chunks one request may name. */
  static final int MAX_CHUNKS = 256;

  /** The request's {@code cache_chunks}, checked; null when absent. */
  static List<String> chunks(JsonNode body, boolean chat, String prompt) {
    JsonNode c = body.get("cache_chunks");
    if (c == null || c.isNull()) {
      return null;
    }
    if (chat || prompt == null) {
      throw ApiException.badRequest(
          "'cache_chunks' applies to /v1/completions with a text 'prompt' only", "cache_chunks");
    }
    if (!c.isArray() || c.isEmpty() || c.size() > MAX_CHUNKS) {
      throw ApiException.badRequest(
          "'cache_chunks' must be an array of 1 to " + MAX_CHUNKS + " non-empty strings",
          "cache_chunks");
    }
    List<String> out = new ArrayList<>();
    for (JsonNode s : c) {
      if (!s.isTextual() || s.textValue().isEmpty()) {
        throw ApiException.badRequest(
            "'cache_chunks' must be an array of 1 to " + MAX_CHUNKS + " non-empty strings",
            "cache_chunks");
      }
      out.add(s.textValue());
    }
    return out;
  }

  /** The request's {@code cache_blend} spec, checked; null when absent. */
  static String spec(JsonNode body) {
    JsonNode b = body.get("cache_blend");
    if (b == null || b.isNull()) {
      return null;
    }
    if (!b.isTextual()) {
      throw ApiException.badRequest("'cache_blend' must be a string", "cache_blend");
    }
    try {
      BlendOptions.parse(b.textValue());
    } catch (IllegalArgumentException e) {
      throw ApiException.badRequest("bad 'cache_blend': " + e.getMessage(), "cache_blend");
    }
    if (body.get("cache_chunks") == null || body.get("cache_chunks").isNull()) {
      throw ApiException.badRequest("'cache_blend' needs 'cache_chunks'", "cache_blend");
    }
    return b.textValue();
  }

  /** The request's blend, or null when it has no {@code cache_chunks}. */
  static BlendPrompt of(CompletionRequest req, Tokenizer tok) {
    if (req.cacheChunks() == null) {
      return null;
    }
    List<int[]> chunks = new ArrayList<>();
    for (String c : req.cacheChunks()) {
      chunks.add(tok.encode(c, false, false));
    }
    int[] suffix = tok.encode(req.prompt(), false, false);
    if (suffix.length == 0) {
      throw ApiException.badRequest("'prompt' must not be empty with 'cache_chunks'", "prompt");
    }
    BlendOptions options =
        req.cacheBlend() == null ? BlendOptions.DEFAULT : BlendOptions.parse(req.cacheBlend());
    int[] prefix = tok.addsBos() ? new int[] {tok.bos()} : new int[0];
    return new BlendPrompt(prefix, chunks, suffix, options);
  }

  /** Every token of the prompt, in order. */
  int[] tokens() {
    int n = prefix.length + suffix.length;
    for (int[] c : chunks) {
      n += c.length;
    }
    int[] all = java.util.Arrays.copyOf(prefix, n);
    int at = prefix.length;
    for (int[] c : chunks) {
      System.arraycopy(c, 0, all, at, c.length);
      at += c.length;
    }
    System.arraycopy(suffix, 0, all, at, suffix.length);
    return all;
  }
}
