package io.kvslim.server;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.kvslim.chat.ChatTemplateException;

/**
 * An error the client caused (or an overload it should retry), answered as OpenAI's error object
 * {@code {"error":{"message","type","param","code"}}} with an HTTP status. The message is one
 * sentence naming the input and what was expected.
 */
public final class ApiException extends RuntimeException {
  public static final String INVALID_REQUEST = "invalid_request_error";

  private final int status;
  private final String type;
  private final String param;
  private final String code;

  public ApiException(int status, String message, String type, String param, String code) {
    super(message, null, false, false);
    this.status = status;
    this.type = type;
    this.param = param;
    this.code = code;
  }

  /** A 400 about one request field. */
  public static ApiException badRequest(String message, String param) {
    return new ApiException(400, message, INVALID_REQUEST, param, null);
  }

  /**
   * A chat template's failure: a 400 about {@code messages} when the template rejected them ({@code
   * raise_exception}), a 500 when the model's template itself cannot run.
   */
  public static ApiException of(ChatTemplateException e) {
    return e.rejectsMessages()
        ? badRequest(e.getMessage(), "messages")
        : new ApiException(500, e.getMessage(), "server_error", null, null);
  }

  /** OpenAI's error object {@code {"error":{"message","type","param","code"}}}. */
  public ObjectNode toJson(ObjectMapper json) {
    ObjectNode body = json.createObjectNode();
    ObjectNode err = body.putObject("error");
    err.put("message", getMessage());
    err.put("type", type);
    err.put("param", param);
    err.put("code", code);
    return body;
  }

  public int status() {
    return status;
  }

  public String type() {
    return type;
  }

  public String param() {
    return param;
  }

  public String code() {
    return code;
  }
}
