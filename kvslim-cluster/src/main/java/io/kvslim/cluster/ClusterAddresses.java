package io.kvslim.cluster;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.NetworkInterface;
import java.net.SocketException;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.List;

/** Parses {@code --cluster host:port,host:port,...}: the members a node joins or forms. */
public final class ClusterAddresses {
  private ClusterAddresses() {}

  /**
   * The addresses of {@code text}, in order, resolved.
   *
   * @throws IllegalArgumentException with one sentence naming the bad part
   */
  public static List<InetSocketAddress> parse(String text) {
    if (text == null || text.isBlank()) {
      throw new IllegalArgumentException("--cluster needs host:port[,host:port...], got nothing");
    }
    List<InetSocketAddress> out = new ArrayList<>();
    for (String part : text.split(",", -1)) {
      String p = part.strip();
      int colon = p.lastIndexOf(':');
      if (colon <= 0 || colon == p.length() - 1) {
        throw new IllegalArgumentException(
            "--cluster address '" + p + "' is not host:port (e.g. 127.0.0.1:5701)");
      }
      String host = p.substring(0, colon);
      if (host.startsWith("[") && host.endsWith("]")) {
        host = host.substring(1, host.length() - 1);
      }
      int port;
      try {
        port = Integer.parseInt(p.substring(colon + 1));
      } catch (NumberFormatException e) {
        port = -1;
      }
      if (port < 1 || port > 65535) {
        throw new IllegalArgumentException(
            "--cluster address '" + p + "' has no port in 1..65535 after the last ':'");
      }
      InetAddress address;
      try {
        address = InetAddress.getByName(host);
      } catch (UnknownHostException e) {
        throw new IllegalArgumentException(
            "--cluster address '" + p + "': host '" + host + "' cannot be resolved");
      }
      out.add(new InetSocketAddress(address, port));
    }
    return out;
  }

  /**
   * The first of {@code members} that is an address of this machine: the one a node binds (its
   * port, or the next free one).
   *
   * @throws IllegalArgumentException if none is
   */
  public static InetSocketAddress local(List<InetSocketAddress> members) {
    for (InetSocketAddress a : members) {
      if (isLocal(a.getAddress())) {
        return a;
      }
    }
    throw new IllegalArgumentException(
        "none of the --cluster addresses "
            + members
            + " is an address of this machine; list this node's own host:port too");
  }

  private static boolean isLocal(InetAddress a) {
    if (a.isLoopbackAddress() || a.isAnyLocalAddress()) {
      return true;
    }
    try {
      return NetworkInterface.getByInetAddress(a) != null;
    } catch (SocketException e) {
      return false;
    }
  }
}
