package io.kvslim.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.net.InetSocketAddress;
import java.util.List;
import org.junit.jupiter.api.Test;

class ClusterAddressesTest {
  @Test
  void parsesAListOfHostPorts() {
    List<InetSocketAddress> a = ClusterAddresses.parse("127.0.0.1:5701, localhost:5702,[::1]:5703");
    assertThat(a).hasSize(3);
    assertThat(a.get(0).getPort()).isEqualTo(5701);
    assertThat(a.get(1).getAddress().isLoopbackAddress()).isTrue();
    assertThat(a.get(2).getAddress().getHostAddress()).contains(":");
    assertThat(ClusterAddresses.local(a)).isEqualTo(a.get(0));
  }

  @Test
  void badAddressesAreOneSentence() {
    assertThatThrownBy(() -> ClusterAddresses.parse(""))
        .hasMessage("--cluster needs host:port[,host:port...], got nothing");
    assertThatThrownBy(() -> ClusterAddresses.parse("127.0.0.1"))
        .hasMessage("--cluster address '127.0.0.1' is not host:port (e.g. 127.0.0.1:5701)");
    assertThatThrownBy(() -> ClusterAddresses.parse("127.0.0.1:5701,"))
        .hasMessage("--cluster address '' is not host:port (e.g. 127.0.0.1:5701)");
    assertThatThrownBy(() -> ClusterAddresses.parse("127.0.0.1:99999"))
        .hasMessage(
            "--cluster address '127.0.0.1:99999' has no port in 1..65535 after the last ':'");
    assertThatThrownBy(() -> ClusterAddresses.parse("127.0.0.1:http"))
        .hasMessage(
            "--cluster address '127.0.0.1:http' has no port in 1..65535 after the last ':'");
    assertThatThrownBy(() -> ClusterAddresses.parse("no-such-host.invalid:5701"))
        .hasMessage(
            "--cluster address 'no-such-host.invalid:5701': host 'no-such-host.invalid' cannot be"
                + " resolved");
  }

  @Test
  void aListWithoutAnAddressOfThisMachineIsRefused() {
    List<InetSocketAddress> remote = ClusterAddresses.parse("192.0.2.1:5701");
    assertThatThrownBy(() -> ClusterAddresses.local(remote))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageStartingWith("none of the --cluster addresses")
        .hasMessageEndingWith("list this node's own host:port too");
  }
}
