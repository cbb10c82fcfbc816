package io.kvslim.server;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.ByteBuffer;
import org.eclipse.jetty.http.HttpFields;
import org.eclipse.jetty.http.HttpHeader;
import org.eclipse.jetty.server.Request;
import org.eclipse.jetty.server.Response;
import org.eclipse.jetty.server.handler.ErrorHandler;
import org.eclipse.jetty.util.Callback;

/**
 * Jetty's answers to requests that never reach a handler (headers too large, a malformed request
 * line, a body over a limit Jetty enforces) as OpenAI's JSON error object instead of Jetty's HTML
 * or plain text, so every error the API returns has the same shape.
 */
final class JsonErrorHandler extends ErrorHandler {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** The error for an HTTP status Jetty chose, with a fixed sentence (nothing of the input). */
  static ApiException forStatus(int status) {
    String message =
        switch (status) {
          case 400 -> "the request is not valid HTTP/1.1";
          case 408 -> "the request was not sent in time; the connection is closed";
          case 413 -> "the request body is too large";
          case 414 -> "the request URI is too long";
          case 431 -> "the request's header fields are too large";
          case 501 -> "the request uses a method or transfer coding the server does not implement";
          case 505 -> "the HTTP version is not supported; use HTTP/1.1";
          default -> "the request failed with HTTP status " + status;
        };
    return new ApiException(
        status,
        message,
        status == 500 || status == 503 ? "server_error" : ApiException.INVALID_REQUEST,
        null,
        status == 413 ? "request_too_large" : null);
  }

  static byte[] bytes(ApiException e) {
    try {
      return JSON.writeValueAsBytes(e.toJson(JSON));
    } catch (java.io.IOException impossible) {
      throw new IllegalStateException("cannot serialize an error", impossible);
    }
  }

  @Override
  public boolean handle(Request request, Response response, Callback callback) {
    int status = response.getStatus() >= 400 ? response.getStatus() : 500;
    response.getHeaders().put(HttpHeader.CONTENT_TYPE, "application/json");
    response.getHeaders().put(HttpHeader.CACHE_CONTROL, "no-cache");
    response.write(true, ByteBuffer.wrap(bytes(forStatus(status))), callback);
    return true;
  }

  /** The body of a message the parser refused, answered before any request exists. */
  @Override
  public ByteBuffer badMessageError(int status, String reason, HttpFields.Mutable fields) {
    fields.put(HttpHeader.CONTENT_TYPE, "application/json");
    return ByteBuffer.wrap(bytes(forStatus(status)));
  }
}
