package io.kvslim.server;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.BindException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.UnknownHostException;
import java.util.Locale;
import java.util.regex.Pattern;

/**
 * The address {@code kvslim serve} listens on: {@code --host} checked and resolved without asking
 * DNS about what cannot be a host name, and every way binding fails (a bad name, an address not on
 * this machine, a port in use, a privileged port) told in one sentence.
 */
public final class ListenAddress {
  private static final Pattern NUMERIC = Pattern.compile("[0-9.]+");
  private static final Pattern HOST_NAME =
      Pattern.compile(
          "(?=.{1,253}\\.?$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
              + "(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\\.?");

  private ListenAddress() {}

  /**
   * The address {@code host} names: an IPv4 or IPv6 literal (brackets allowed), or a host name that
   * resolves.
   *
   * @throws IllegalArgumentException naming {@code host} if it is neither
   */
  public static InetAddress resolve(String host) {
    String h = host.strip();
    if (h.startsWith("[") && h.endsWith("]")) {
      h = h.substring(1, h.length() - 1);
    }
    try {
      if (h.contains(":") || NUMERIC.matcher(h).matches()) {
        return InetAddress.ofLiteral(h);
      }
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(
          "--host '"
              + printable(host)
              + (h.contains(":")
                  ? "' is not a valid IPv6 address (like ::1)"
                  : "' is not a valid IP address (IPv4 is four numbers 0..255, like 127.0.0.1)"));
    }
    if (!HOST_NAME.matcher(h).matches()) {
      throw new IllegalArgumentException(
          "--host '"
              + printable(host)
              + "' is not a host name or an IP address (e.g. 127.0.0.1, 0.0.0.0 or localhost)");
    }
    try {
      return InetAddress.getByName(h);
    } catch (UnknownHostException e) {
      throw new IllegalArgumentException(
          "--host '" + printable(host) + "' does not resolve to an address");
    }
  }

  /** Whether only this machine can reach {@code address} (a loopback address). */
  public static boolean isLoopback(InetAddress address) {
    return address.isLoopbackAddress();
  }

  /**
   * Binds {@code address:port} once and lets it go, so a command finds a bad address before it
   * loads a model.
   *
   * @throws UncheckedIOException with {@link #bindFailure}'s sentence if it cannot be bound
   */
  public static void probe(InetAddress address, int port) {
    try (ServerSocket s = new ServerSocket()) {
      s.setReuseAddress(true);
      s.bind(new InetSocketAddress(address, port));
    } catch (IOException e) {
      throw bindFailure(address.getHostAddress(), port, e);
    }
  }

  /**
   * One sentence for a failure to listen on {@code host:port}, whatever wraps the cause (Javalin
   * reports every bind failure as "port already in use").
   */
  public static UncheckedIOException bindFailure(String host, int port, Throwable failure) {
    Throwable cause = failure;
    while (cause != null
        && !(cause instanceof BindException)
        && !(cause instanceof java.nio.channels.UnresolvedAddressException)) {
      cause = cause.getCause();
    }
    String where = "cannot listen on " + hostPort(host, port) + ": ";
    String why;
    if (cause instanceof java.nio.channels.UnresolvedAddressException) {
      why = "the host does not resolve to an address";
    } else if (cause == null) {
      why = "the server failed to start (" + printable(String.valueOf(failure.getMessage())) + ")";
    } else {
      String m = String.valueOf(cause.getMessage()).toLowerCase(Locale.ROOT);
      if (m.contains("already in use")) {
        why = "the port is already in use (choose another --port, or 0 for any free port)";
      } else if (m.contains("assign requested address")) {
        why =
            "the address is not one of this machine's (use 127.0.0.1, 0.0.0.0 for every"
                + " interface, or an address of this machine)";
      } else if (m.contains("permission denied") || m.contains("access is denied")) {
        why = "permission denied (ports below 1024 need privileges; choose a higher --port)";
      } else {
        why = printable(String.valueOf(cause.getMessage()));
      }
    }
    return new UncheckedIOException(where + why, new IOException(failure));
  }

  private static String hostPort(String host, int port) {
    return (host.contains(":") && !host.startsWith("[") ? "[" + host + "]" : host) + ":" + port;
  }

  /** {@code text} with control characters escaped and at most 100 characters shown. */
  static String printable(String text) {
    StringBuilder b = new StringBuilder();
    int i = 0;
    for (; i < text.length() && b.length() < 100; i++) {
      char c = text.charAt(i);
      if (c < 0x20 || c == 0x7f) {
        b.append(String.format(Locale.ROOT, "\\x%02x", (int) c));
      } else {
        b.append(c);
      }
    }
    return i < text.length() ? b + "..." : b.toString();
  }
}
