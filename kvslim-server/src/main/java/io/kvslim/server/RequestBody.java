package io.kvslim.server;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.javalin.http.Context;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeoutException;
import org.eclipse.jetty.http.HttpException;
import org.eclipse.jetty.io.EofException;

/**
 * Reads a request body under a size limit and parses it as one JSON value, nothing after it. Every
 * way reading fails is the client's doing and is answered as such: a declared or sent body over the
 * limit is a 413, a body cut short by the client closing its connection or malformed chunks a 400,
 * a body that stops coming for the idle timeout a 408; each answer closes the connection, whose
 * rest cannot be trusted.
 */
final class RequestBody {
  /** The largest body read: 4 MiB, room for a 128k-token prompt as text or as token ids. */
  static final int MAX_BYTES = 4 << 20;

  /**
   * The most bytes of a too large body read and dropped before the 413 is sent, so a client that
   * sends its whole body before reading reads the answer instead of a reset connection.
   */
  static final long MAX_DRAINED_BYTES = 64L << 20;

  private RequestBody() {}

  /**
   * The body as one JSON value.
   *
   * @throws ApiException 400 if it is empty, not JSON, or has anything but whitespace after the
   *     value; see {@link #read} for the rest
   */
  static JsonNode json(Context ctx, ObjectMapper json) {
    byte[] bytes = read(ctx, MAX_BYTES);
    if (new String(bytes, StandardCharsets.UTF_8).isBlank()) {
      throw ApiException.badRequest("the request body is empty; expected a JSON object", null);
    }
    try (JsonParser p = json.createParser(bytes)) {
      JsonNode value = json.readTree(p);
      if (p.nextToken() != null) {
        throw ApiException.badRequest(
            "the request body has more after its JSON value; send exactly one JSON object", null);
      }
      return value;
    } catch (JacksonException e) {
      throw ApiException.badRequest(
          "the request body is not valid JSON: " + e.getOriginalMessage(), null);
    } catch (IOException e) {
      throw ApiException.badRequest("the request body is not valid JSON", null);
    }
  }

  /** The body's bytes, at most {@code maxBytes}. */
  static byte[] read(Context ctx, int maxBytes) {
    long declared = ctx.req().getContentLengthLong();
    if (declared > maxBytes) {
      // a client waiting for 100 Continue sends nothing more: answer it at once
      if (declared <= MAX_DRAINED_BYTES && !"100-continue".equalsIgnoreCase(ctx.header("Expect"))) {
        drain(ctx, declared);
      }
      throw closing(ctx, tooLarge(declared + " bytes", maxBytes));
    }
    byte[] body;
    try {
      body = ctx.req().getInputStream().readNBytes(maxBytes + 1);
    } catch (IOException | RuntimeException e) {
      ApiException clients = failure(e, declared);
      if (clients == null && e instanceof RuntimeException bug) {
        throw bug; // answered as an internal error
      }
      throw closing(
          ctx,
          clients != null
              ? clients
              : ApiException.badRequest("the request body could not be read", null));
    }
    if (body.length > maxBytes) {
      drain(ctx, MAX_DRAINED_BYTES - body.length);
      throw closing(ctx, tooLarge("more than " + maxBytes + " bytes", maxBytes));
    }
    return body;
  }

  /** Reads and drops up to {@code bytes} of the body; a failure ends it quietly. */
  private static void drain(Context ctx, long bytes) {
    byte[] sink = new byte[64 << 10];
    try {
      var in = ctx.req().getInputStream();
      for (long left = bytes; left > 0; ) {
        int n = in.read(sink, 0, (int) Math.min(sink.length, left));
        if (n < 0) {
          return;
        }
        left -= n;
      }
    } catch (IOException | RuntimeException gone) {
      // the client left or stopped sending: the answer goes out (or fails) all the same
    }
  }

  private static ApiException tooLarge(String size, int maxBytes) {
    return new ApiException(
        413,
        "the request body has " + size + "; at most " + maxBytes + " bytes are accepted",
        ApiException.INVALID_REQUEST,
        null,
        "request_too_large");
  }

  /**
   * The client's error that {@code e}, raised while reading its request, stands for: its connection
   * timed out, closed early or sent malformed HTTP; null if {@code e} is none of these.
   */
  static ApiException failure(Throwable e, long declared) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof TimeoutException) {
        return new ApiException(
            408,
            "the request body stopped arriving before it was complete; the connection is closed",
            ApiException.INVALID_REQUEST,
            null,
            "request_timeout");
      }
      if (t instanceof EofException) {
        return ApiException.badRequest(
            declared >= 0
                ? "the connection closed before the request body's "
                    + declared
                    + " bytes (its Content-Length) arrived"
                : "the connection closed before the request body was complete",
            null);
      }
      if (t instanceof HttpException h && h.getCode() >= 400 && h.getCode() < 500) {
        return JsonErrorHandler.forStatus(h.getCode());
      }
    }
    return null;
  }

  private static ApiException closing(Context ctx, ApiException e) {
    ctx.header("Connection", "close");
    return e;
  }
}
