package io.kvslim.server;

import io.javalin.http.Context;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.CancellationException;
import java.util.concurrent.TimeoutException;
import org.eclipse.jetty.ee10.servlet.ServletContextRequest;
import org.eclipse.jetty.io.AbstractEndPoint;
import org.eclipse.jetty.io.EndPoint;
import org.eclipse.jetty.util.BufferUtil;
import org.eclipse.jetty.util.Callback;

/**
 * Notices a client that closes its connection while its non-streaming request waits or runs.
 * Nothing is read or written then, and Jetty reads a connection only while a handler asks for body
 * bytes, so the closed connection would otherwise be found only when the answer is written, after
 * the whole generation. The watch asks the connection's endpoint to say when it becomes readable
 * (the request's body has been read, so only the client closing, or pipelining its next request,
 * makes it so): end of stream or a reset is the client leaving, and {@code onGone} runs once.
 *
 * <p>{@link #close()} withdraws the interest before the answer is written, so the connection is
 * reused for the client's next request as usual. Bytes of a pipelined next request cannot be handed
 * back to Jetty, so then the answer closes the connection ({@link #closeAfterAnswer()}), which a
 * pipelining client must expect (RFC 9112 §9.3.2).
 */
final class ClientWatch implements AutoCloseable {
  private final AbstractEndPoint endPoint;
  private final Runnable onGone;
  private final ByteBuffer probe = BufferUtil.allocate(1);
  private final Callback readable = Callback.from(this::onReadable, this::onFailed);
  private boolean watching;
  private boolean closed;
  private volatile boolean gone;
  private volatile boolean pipelined;

  private ClientWatch(AbstractEndPoint endPoint, Runnable onGone) {
    this.endPoint = endPoint;
    this.onGone = onGone;
  }

  /**
   * Starts watching the connection of {@code ctx}, whose body has been read. Where the connection
   * is not a plain Jetty endpoint (never with this server), nothing is watched.
   */
  static ClientWatch start(Context ctx, Runnable onGone) {
    EndPoint ep = null;
    ServletContextRequest request = ServletContextRequest.getServletContextRequest(ctx.req());
    if (request != null && request.getConnectionMetaData().getConnection() != null) {
      ep = request.getConnectionMetaData().getConnection().getEndPoint();
    }
    ClientWatch w = new ClientWatch(ep instanceof AbstractEndPoint a ? a : null, onGone);
    w.register();
    return w;
  }

  /** Whether the client closed its connection. */
  boolean gone() {
    return gone;
  }

  /** Whether the answer must close the connection (the watch consumed a pipelined byte). */
  boolean closeAfterAnswer() {
    return pipelined;
  }

  private synchronized void register() {
    if (endPoint != null && !closed && !gone && !pipelined) {
      watching = endPoint.tryFillInterested(readable);
    }
  }

  private void onReadable() {
    int n;
    synchronized (this) {
      watching = false;
      if (closed) {
        return;
      }
      try {
        n = endPoint.fill(probe);
      } catch (IOException e) {
        n = -1; // reset by the client
      }
      if (n > 0) {
        pipelined = true;
        return;
      }
      if (n < 0) {
        gone = true;
      }
    }
    if (n < 0) {
      onGone.run();
    } else {
      register();
    }
  }

  private void onFailed(Throwable failure) {
    synchronized (this) {
      watching = false;
      if (closed) {
        return;
      }
      if (!(failure instanceof TimeoutException)) {
        gone = true; // the endpoint closed
      }
    }
    if (gone) {
      onGone.run();
    } else {
      register();
    }
  }

  /** Withdraws the read interest, so Jetty can read the connection's next request. */
  @Override
  public synchronized void close() {
    closed = true;
    if (watching) {
      watching = false;
      endPoint.getFillInterest().onFail(new CancellationException("the answer is ready"));
    }
  }
}
