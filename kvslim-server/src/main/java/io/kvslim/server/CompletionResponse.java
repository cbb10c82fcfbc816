package io.kvslim.server;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;

/**
 * One request's response objects in OpenAI's shapes, for {@link OpenAiServer}: the whole completion
 * (text or chat message), the streamed chunks, {@code usage} and the {@code kvslim_usage}
 * extension.
 */
final class CompletionResponse {
  private final ObjectMapper json;
  final CompletionRequest req;
  final boolean chat;
  final String id;
  final String model;

  /**
   * @param id the response id ({@code cmpl-N} or {@code chatcmpl-N})
   * @param modelId the model named when the request names none
   */
  CompletionResponse(
      ObjectMapper json, CompletionRequest req, boolean chat, String id, String modelId) {
    this.json = json;
    this.req = req;
    this.chat = chat;
    this.id = id;
    this.model = req.model() != null ? req.model() : modelId;
  }

  ObjectNode header() {
    ObjectNode o = json.createObjectNode();
    o.put("id", id);
    o.put(
        "object",
        chat ? (req.stream() ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    o.put("created", System.currentTimeMillis() / 1000);
    o.put("model", model);
    return o;
  }

  ObjectNode complete(String text, List<Integer> tokens, SequenceEvent.Done done) {
    ObjectNode o = header();
    ObjectNode choice = o.putArray("choices").addObject();
    choice.put("index", 0);
    if (chat) {
      ObjectNode message = choice.putObject("message");
      message.put("role", "assistant");
      message.put("content", text);
    } else {
      choice.put("text", text);
    }
    choice.putNull("logprobs");
    choice.put("finish_reason", done.reason().openAiName());
    if (req.returnTokenIds()) {
      ArrayNode ids = choice.putArray("token_ids");
      tokens.forEach(ids::add);
    }
    o.set("usage", usage(done.usage()));
    o.set("kvslim_usage", kvUsage(done.usage()));
    return o;
  }

  ObjectNode chunk(String text, List<Integer> tokens, String finish, boolean role) {
    ObjectNode o = header();
    ObjectNode choice = o.putArray("choices").addObject();
    choice.put("index", 0);
    if (chat) {
      ObjectNode delta = choice.putObject("delta");
      if (role) {
        delta.put("role", "assistant");
      }
      if (finish == null) {
        delta.put("content", text);
      }
    } else {
      choice.put("text", text);
    }
    choice.putNull("logprobs");
    if (finish == null) {
      choice.putNull("finish_reason");
    } else {
      choice.put("finish_reason", finish);
    }
    if (!tokens.isEmpty()) {
      ArrayNode ids = choice.putArray("token_ids");
      tokens.forEach(ids::add);
    }
    return o;
  }

  ObjectNode usage(SequenceEvent.Usage u) {
    ObjectNode o = json.createObjectNode();
    o.put("prompt_tokens", u.promptTokens());
    o.put("completion_tokens", u.completionTokens());
    o.put("total_tokens", u.promptTokens() + u.completionTokens());
    return o;
  }

  ObjectNode kvUsage(SequenceEvent.Usage u) {
    ObjectNode o = json.createObjectNode();
    o.put("kv", u.kv());
    o.put("kv_bytes", u.kvBytes());
    o.put("kv_bytes_peak", u.kvBytesPeak());
    o.put("compression_ratio", Math.round(u.compressionRatio() * 1000) / 1000.0);
    return o;
  }
}
