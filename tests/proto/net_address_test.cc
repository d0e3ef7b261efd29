// Tests proto/net_address.{h,cc}: parsing and printing addresses of both families, with and
// without ports, and the comparisons the transports and the edge rely on.

#include "proto/net_address.h"

#include <string>

#include "gtest/gtest.h"
#include "proto/transport.h"

namespace b2bua::proto {
namespace {

TEST(NetAddressTest, ParsesIpv4AndIpv6WithOrWithoutBrackets) {
  NetAddress a;
  ASSERT_TRUE(NetAddress::ParseIp("192.0.2.1", 5060, &a));
  EXPECT_FALSE(a.is_v6());
  EXPECT_EQ(a.port(), 5060);
  EXPECT_EQ(a.IpString(), "192.0.2.1");
  EXPECT_EQ(a.ToString(), "192.0.2.1:5060");
  ASSERT_TRUE(NetAddress::ParseIp("[2001:db8::1]", 5061, &a));
  EXPECT_TRUE(a.is_v6());
  EXPECT_EQ(a.IpString(), "2001:db8::1");
  EXPECT_EQ(a.ToString(), "[2001:db8::1]:5061");
  ASSERT_TRUE(NetAddress::ParseIp("::1", 0, &a));
  EXPECT_TRUE(a.is_loopback());
  for (const char* bad : {"", "example.com", "192.0.2", "192.0.2.256", "[::1", "1.2.3.4:5060",
                          "2001:db8::1::2"}) {
    EXPECT_FALSE(NetAddress::ParseIp(bad, 0, &a)) << bad;
  }
}

TEST(NetAddressTest, ParsesIpPortAndRefusesWhatIsNot) {
  NetAddress a;
  ASSERT_TRUE(NetAddress::ParseIpPort("127.0.0.1:5060", &a));
  EXPECT_EQ(a.port(), 5060);
  EXPECT_TRUE(a.is_loopback());
  ASSERT_TRUE(NetAddress::ParseIpPort("[::1]:65535", &a));
  EXPECT_EQ(a.port(), 65535);
  EXPECT_TRUE(a.is_v6());
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:50x",
                          "::1:5060", "localhost:5060", ":5060"}) {
    EXPECT_FALSE(NetAddress::ParseIpPort(bad, &a)) << bad;
  }
}

TEST(NetAddressTest, UnspecifiedLoopbackAndSameIp) {
  NetAddress any, loop, other;
  ASSERT_TRUE(NetAddress::ParseIp("0.0.0.0", 0, &any));
  ASSERT_TRUE(NetAddress::ParseIp("127.9.9.9", 1, &loop));
  ASSERT_TRUE(NetAddress::ParseIp("127.9.9.9", 2, &other));
  EXPECT_TRUE(any.is_unspecified());
  EXPECT_TRUE(loop.is_loopback());
  EXPECT_FALSE(any.is_loopback());
  EXPECT_TRUE(loop.SameIp(other));
  EXPECT_FALSE(loop == other);  // the port differs
  other.set_port(1);
  EXPECT_TRUE(loop == other);
}

TEST(NetAddressTest, RoundTripsThroughSockaddr) {
  for (const char* text : {"192.0.2.77", "2001:db8::77"}) {
    NetAddress a;
    ASSERT_TRUE(NetAddress::ParseIp(text, 40000, &a));
    sockaddr_storage storage;
    const socklen_t length = a.ToSockaddr(&storage);
    const NetAddress back = NetAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), length);
    EXPECT_EQ(back, a) << text;
  }
}

TEST(TransportNameTest, NamesEveryTransport) {
  EXPECT_EQ(TransportName(TransportKind::kUdp), "UDP");
  EXPECT_EQ(TransportName(TransportKind::kTcp), "TCP");
  EXPECT_EQ(TransportName(TransportKind::kTls), "TLS");
  EXPECT_FALSE(Peer{}.reliable());
  EXPECT_TRUE((Peer{NetAddress{}, TransportKind::kTls, 0}).reliable());
}

}  // namespace
}  // namespace b2bua::proto
