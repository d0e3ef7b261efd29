// The sharded runtime end to end on loopback: every request reaches the shard that owns its
// Call-ID through the cross-shard rings, and is answered exactly once. Also run under TSan.

#include "b2bua/shard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>

#include "b2bua/call_engine.h"
#include "b2bua/config.h"
#include "gtest/gtest.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"

namespace b2bua {
namespace {

class UdpClient {
 public:
  UdpClient() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local));
    int buffer = 8 << 20;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof(buffer));
    socklen_t length = sizeof(local);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &length);
    port_ = ntohs(local.sin_port);
  }
  ~UdpClient() { ::close(fd_); }
  uint16_t port() const { return port_; }

  void SendTo(const proto::NetAddress& to, const std::string& bytes) {
    sockaddr_storage address;
    socklen_t length = to.ToSockaddr(&address);
    ::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&address), length);
  }

  /// Empty when nothing arrives within `timeout`.
  std::string Receive(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return {};
    char buffer[65536];
    ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string();
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

std::string Options(uint16_t client_port, int i) {
  std::string call_id = "opt-" + std::to_string(i) + "@client";
  return "OPTIONS sip:b2bua@127.0.0.1 SIP/2.0\r\n"
         "Via: SIP/2.0/UDP 127.0.0.1:" + std::to_string(client_port) +
         ";branch=z9hG4bK-shard-" + std::to_string(i) + ";rport\r\n"
         "Max-Forwards: 70\r\n"
         "From: <sip:probe@127.0.0.1>;tag=p" + std::to_string(i) + "\r\n"
         "To: <sip:b2bua@127.0.0.1>\r\n"
         "Call-ID: " + call_id + "\r\n"
         "CSeq: 1 OPTIONS\r\n"
         "Content-Length: 0\r\n\r\n";
}

TEST(ShardForCallIdTest, GeneratedCallIdsNameTheirShardOthersAreHashedConsistently) {
  EXPECT_EQ(ShardForCallId("B2B3-abc-1", 4), 3u);
  EXPECT_EQ(ShardForCallId("B2B1-abc-1", 2), 1u);
  EXPECT_EQ(ShardForCallId("anything", 1), 0u);
  for (int i = 0; i < 100; ++i) {
    std::string id = "call-" + std::to_string(i);
    EXPECT_EQ(ShardForCallId(id, 4), ShardForCallId(id, 4));
    EXPECT_LT(ShardForCallId(id, 4), 4u);
  }
}

TEST(ShardGroupTest, EveryRequestIsAnsweredOnceWhateverShardOwnsIt) {
  auto config = DefaultConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  ShardGroupOptions options;
  options.shards = 2;
  ASSERT_TRUE(proto::NetAddress::ParseIpPort("127.0.0.1:0", &options.listen));
  ShardGroup group(options);
  ASSERT_TRUE(group.Start(*config).ok());
  ASSERT_NE(group.local_address().port(), 0);

  UdpClient client;
  // One source socket: the kernel hashes it to one shard, so about half of the requests
  // must cross to the other shard through the rings.
  constexpr int kRequests = 4000;
  std::set<std::string> answered;
  int duplicates = 0;
  proto::SipParser parser;
  auto message = std::make_unique<proto::SipMessage>();
  auto drain = [&](std::chrono::milliseconds wait) {
    for (std::string bytes = client.Receive(wait); !bytes.empty();
         bytes = client.Receive(std::chrono::milliseconds(0))) {
      ASSERT_EQ(parser.Parse(bytes, proto::Framing::kDatagram, message.get()).status,
                proto::ParseStatus::kComplete);
      ASSERT_EQ(message->status_code(), 200) << bytes;
      if (!answered.insert(std::string(message->call_id())).second) ++duplicates;
    }
  };
  for (int i = 0; i < kRequests; ++i) {
    client.SendTo(group.local_address(), Options(client.port(), i));
    if (i % 64 == 63) drain(std::chrono::milliseconds(0));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (answered.size() < kRequests && std::chrono::steady_clock::now() < deadline)
    drain(std::chrono::milliseconds(200));
  EXPECT_EQ(answered.size(), static_cast<size_t>(kRequests));
  EXPECT_EQ(duplicates, 0);

  uint64_t handed_off = 0, received = 0;
  for (const ShardCounters* c : group.counters()) {
    handed_off += c->handoffs_sent.Get();
    received += c->handoffs_received.Get();
  }
  EXPECT_GT(handed_off, 0u) << "one source must still reach both shards";
  EXPECT_EQ(handed_off, received);
  group.Stop();
}

}  // namespace
}  // namespace b2bua
