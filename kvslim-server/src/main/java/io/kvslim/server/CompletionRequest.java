package io.kvslim.server;

import com.fasterxml.jackson.databind.JsonNode;
import io.kvslim.chat.ChatTemplate;
import io.kvslim.engine.SamplerConfig;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;

/**
 * A checked {@code /v1/completions} or {@code /v1/chat/completions} request. Every field is
 * validated here, so a bad one fails with a 400 naming it before any work starts. Extensions to
 * OpenAI's fields: {@code kv} (a KV spec for this request), {@code top_k}, {@code min_p}, {@code
 * repeat_penalty}, {@code ignore_eos}, {@code return_token_ids}, and {@code cache_chunks} with
 * {@code cache_blend} ({@link BlendPrompt}).
 *
 * @param prompt the prompt text (completions), or null when given as token ids or messages
 * @param promptTokens the prompt as token ids, or null
 * @param messages the conversation (chat), or null
 * @param maxTokens the requested limit, or null for the endpoint's default
 */
public record CompletionRequest(
    boolean chat,
    String model,
    String prompt,
    int[] promptTokens,
    List<ChatTemplate.Message> messages,
    Integer maxTokens,
    SamplerConfig sampling,
    List<String> stop,
    boolean stream,
    boolean includeUsage,
    String kv,
    boolean ignoreEos,
    boolean returnTokenIds,
    List<String> cacheChunks,
    String cacheBlend) {

  private static final int MAX_STOPS = 16;

  /** Parses and checks a request body (already parsed as JSON). */
  public static CompletionRequest parse(JsonNode body, boolean chat) {
    if (body == null || !body.isObject()) {
      throw ApiException.badRequest("the request body must be a JSON object", null);
    }
    String model = optString(body, "model");
    String prompt = null;
    int[] promptTokens = null;
    List<ChatTemplate.Message> messages = null;
    if (chat) {
      messages = messages(body);
    } else {
      JsonNode p = body.get("prompt");
      if (p == null || p.isNull()) {
        throw ApiException.badRequest("'prompt' is required", "prompt");
      }
      if (p.isTextual()) {
        prompt = p.textValue();
      } else if (p.isArray() && p.size() == 1 && p.get(0).isTextual()) {
        prompt = p.get(0).textValue();
      } else if (p.isArray() && !p.isEmpty() && allIntegers(p)) {
        promptTokens = new int[p.size()];
        for (int i = 0; i < p.size(); i++) {
          promptTokens[i] = p.get(i).asInt();
        }
      } else if (p.isArray() && p.size() > 1 && p.get(0).isTextual()) {
        throw ApiException.badRequest(
            "'prompt' holds " + p.size() + " prompts; send one prompt per request", "prompt");
      } else {
        throw ApiException.badRequest(
            "'prompt' must be a string or an array of token ids, got " + kind(p), "prompt");
      }
    }
    Integer maxTokens = optInt(body, chat ? "max_completion_tokens" : "max_tokens");
    if (maxTokens == null) {
      maxTokens = optInt(body, "max_tokens");
    }
    if (maxTokens != null && maxTokens < 0) {
      throw ApiException.badRequest("'max_tokens' must be >= 0, got " + maxTokens, "max_tokens");
    }
    Integer n = optInt(body, "n");
    if (n != null && n != 1) {
      throw ApiException.badRequest("only n=1 is supported, got n=" + n, "n");
    }
    unsupported(body);
    float temperature = optFloat(body, "temperature", 1f, 0f, 2f);
    float topP = optFloat(body, "top_p", 1f, 0f, 1f);
    if (topP == 0f) {
      throw ApiException.badRequest("'top_p' must be in (0, 1], got 0", "top_p");
    }
    Integer topK = optInt(body, "top_k");
    if (topK != null && topK < 0) {
      throw ApiException.badRequest("'top_k' must be >= 0, got " + topK, "top_k");
    }
    float minP = optFloat(body, "min_p", 0f, 0f, 1f);
    float repeatPenalty = optFloat(body, "repeat_penalty", 1f, 0f, 10f);
    if (repeatPenalty == 0f) {
      throw ApiException.badRequest("'repeat_penalty' must be > 0, got 0", "repeat_penalty");
    }
    Long seed = optLong(body, "seed");
    SamplerConfig sampling =
        new SamplerConfig(
            temperature,
            topK == null ? 0 : topK,
            topP,
            minP,
            repeatPenalty,
            64,
            seed != null ? seed : ThreadLocalRandom.current().nextLong());
    boolean stream = optBool(body, "stream");
    boolean includeUsage = false;
    JsonNode so = body.get("stream_options");
    if (so != null && !so.isNull()) {
      if (!so.isObject()) {
        throw ApiException.badRequest(
            "'stream_options' must be an object, got " + kind(so), "stream_options");
      }
      includeUsage = optBool(so, "include_usage");
    }
    String kv = optString(body, "kv");
    return new CompletionRequest(
        chat,
        model,
        prompt,
        promptTokens,
        messages,
        maxTokens,
        sampling,
        stops(body),
        stream,
        includeUsage,
        kv,
        optBool(body, "ignore_eos"),
        optBool(body, "return_token_ids"),
        BlendPrompt.chunks(body, chat, prompt),
        BlendPrompt.spec(body));
  }

  private static List<ChatTemplate.Message> messages(JsonNode body) {
    JsonNode ms = body.get("messages");
    if (ms == null || ms.isNull()) {
      throw ApiException.badRequest("'messages' is required", "messages");
    }
    if (!ms.isArray() || ms.isEmpty()) {
      throw ApiException.badRequest(
          "'messages' must be a non-empty array of {role, content} objects", "messages");
    }
    List<ChatTemplate.Message> out = new ArrayList<>();
    for (int i = 0; i < ms.size(); i++) {
      JsonNode m = ms.get(i);
      String where = "messages[" + i + "]";
      if (!m.isObject()) {
        throw ApiException.badRequest(where + " must be an object, got " + kind(m), where);
      }
      JsonNode role = m.get("role");
      if (role == null || !role.isTextual()) {
        throw ApiException.badRequest(where + ".role must be a string", where + ".role");
      }
      String r = role.textValue();
      if (!List.of("system", "user", "assistant", "developer", "tool").contains(r)) {
        throw ApiException.badRequest(
            where
                + ".role must be one of system, developer, user, assistant, tool; got '"
                + r
                + "'",
            where + ".role");
      }
      out.add(new ChatTemplate.Message(r.equals("developer") ? "system" : r, content(m, where)));
    }
    return out;
  }

  /** A message's content: a string, or an array of {@code {"type":"text","text":...}} parts. */
  private static String content(JsonNode m, String where) {
    JsonNode c = m.get("content");
    if (c == null || c.isNull()) {
      return "";
    }
    if (c.isTextual()) {
      return c.textValue();
    }
    if (c.isArray()) {
      StringBuilder sb = new StringBuilder();
      for (JsonNode part : c) {
        JsonNode type = part.get("type");
        JsonNode text = part.get("text");
        if (!part.isObject()
            || type == null
            || !"text".equals(type.asText())
            || text == null
            || !text.isTextual()) {
          throw ApiException.badRequest(
              where + ".content parts must be {\"type\":\"text\",\"text\":...} (text only)",
              where + ".content");
        }
        sb.append(text.textValue());
      }
      return sb.toString();
    }
    throw ApiException.badRequest(
        where + ".content must be a string or an array of text parts, got " + kind(c),
        where + ".content");
  }

  private static List<String> stops(JsonNode body) {
    JsonNode s = body.get("stop");
    List<String> out = new ArrayList<>();
    if (s == null || s.isNull()) {
      return out;
    }
    if (s.isTextual()) {
      if (!s.textValue().isEmpty()) {
        out.add(s.textValue());
      }
      return out;
    }
    if (!s.isArray()) {
      throw ApiException.badRequest(
          "'stop' must be a string or an array of strings, got " + kind(s), "stop");
    }
    if (s.size() > MAX_STOPS) {
      throw ApiException.badRequest(
          "'stop' holds " + s.size() + " strings; at most " + MAX_STOPS + " are accepted", "stop");
    }
    for (JsonNode e : s) {
      if (!e.isTextual()) {
        throw ApiException.badRequest(
            "'stop' must be a string or an array of strings, got an array holding " + kind(e),
            "stop");
      }
      if (!e.textValue().isEmpty()) {
        out.add(e.textValue());
      }
    }
    return out;
  }

  /** Fields whose non-default values this server cannot honour. */
  private static void unsupported(JsonNode body) {
    Map<String, String> defaults =
        Map.of(
            "echo", "false",
            "best_of", "1",
            "logprobs", "false",
            "suffix", "null",
            "frequency_penalty", "0",
            "presence_penalty", "0",
            "tools", "null");
    for (var e : defaults.entrySet()) {
      JsonNode v = body.get(e.getKey());
      if (v == null || v.isNull()) {
        continue;
      }
      boolean isDefault =
          switch (e.getValue()) {
            case "false" ->
                (v.isBoolean() && !v.booleanValue()) || (v.isNumber() && v.asInt() == 0);
            case "1" -> v.isNumber() && v.asDouble() == 1;
            case "0" -> v.isNumber() && v.asDouble() == 0;
            default -> false;
          };
      if (!isDefault) {
        throw ApiException.badRequest(
            "'" + e.getKey() + "' is not supported by this server (leave it out)", e.getKey());
      }
    }
  }

  private static boolean allIntegers(JsonNode array) {
    for (JsonNode e : array) {
      if (!e.isIntegralNumber() || !e.canConvertToInt()) {
        return false;
      }
    }
    return true;
  }

  private static String optString(JsonNode body, String field) {
    JsonNode v = body.get(field);
    if (v == null || v.isNull()) {
      return null;
    }
    if (!v.isTextual()) {
      throw ApiException.badRequest("'" + field + "' must be a string, got " + kind(v), field);
    }
    return v.textValue();
  }

  private static boolean optBool(JsonNode body, String field) {
    JsonNode v = body.get(field);
    if (v == null || v.isNull()) {
      return false;
    }
    if (!v.isBoolean()) {
      throw ApiException.badRequest("'" + field + "' must be true or false, got " + kind(v), field);
    }
    return v.booleanValue();
  }

  private static Integer optInt(JsonNode body, String field) {
    Long v = optLong(body, field);
    if (v == null) {
      return null;
    }
    if (v > Integer.MAX_VALUE || v < Integer.MIN_VALUE) {
      throw ApiException.badRequest("'" + field + "' is out of range: " + v, field);
    }
    return v.intValue();
  }

  private static Long optLong(JsonNode body, String field) {
    JsonNode v = body.get(field);
    if (v == null || v.isNull()) {
      return null;
    }
    if (!v.isIntegralNumber() || !v.canConvertToLong()) {
      throw ApiException.badRequest("'" + field + "' must be an integer, got " + kind(v), field);
    }
    return v.longValue();
  }

  private static float optFloat(JsonNode body, String field, float dflt, float min, float max) {
    JsonNode v = body.get(field);
    if (v == null || v.isNull()) {
      return dflt;
    }
    if (!v.isNumber()) {
      throw ApiException.badRequest("'" + field + "' must be a number, got " + kind(v), field);
    }
    double d = v.doubleValue();
    if (!(d >= min && d <= max)) {
      throw ApiException.badRequest(
          "'" + field + "' must be in [" + min + ", " + max + "], got " + v.asText(), field);
    }
    return (float) d;
  }

  /** How a JSON value reads in an error message: "a string", "an array", "the number 3"... */
  static String kind(JsonNode v) {
    if (v.isTextual()) {
      return "a string";
    }
    if (v.isNumber()) {
      return "the number " + v.asText();
    }
    if (v.isBoolean()) {
      return v.asText();
    }
    if (v.isArray()) {
      return "an array";
    }
    if (v.isObject()) {
      return "an object";
    }
    return "null";
  }
}
