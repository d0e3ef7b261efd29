// Tests proto/udp_transport.{h,cc} against a plain socket on loopback: datagrams in with
// their source, batched sends out, oversized datagrams dropped and counted.

#include "proto/udp_transport.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace b2bua::proto {
namespace {

using std::chrono::milliseconds;

NetAddress Loopback(uint16_t port) {
  NetAddress address;
  NetAddress::ParseIp("127.0.0.1", port, &address);
  return address;
}

class Recorder final : public DatagramHandler {
 public:
  void OnDatagram(std::string_view bytes, const Peer& source) override {
    received.push_back({std::string(bytes), source});
  }
  void OnBatchEnd() override { ++batches; }
  struct Datagram {
    std::string bytes;
    Peer source;
  };
  std::vector<Datagram> received;
  int batches = 0;
};

class UdpTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    UdpOptions options;
    options.max_datagram_bytes = 2000;
    auto opened = UdpTransport::Open(io_, Loopback(0), options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    transport_ = std::move(*opened);
    transport_->Start(&handler_);
    peer_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    ASSERT_GE(peer_, 0);
    sockaddr_storage storage;
    const socklen_t length = Loopback(0).ToSockaddr(&storage);
    ASSERT_EQ(::bind(peer_, reinterpret_cast<sockaddr*>(&storage), length), 0);
    socklen_t got = sizeof(storage);
    ::getsockname(peer_, reinterpret_cast<sockaddr*>(&storage), &got);
    peer_address_ = NetAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), got);
  }
  void TearDown() override {
    transport_->Close();
    ::close(peer_);
  }

  void SendFromPeer(const std::string& bytes) {
    sockaddr_storage storage;
    const socklen_t length = transport_->local_address().ToSockaddr(&storage);
    ASSERT_EQ(::sendto(peer_, bytes.data(), bytes.size(), 0,
                       reinterpret_cast<sockaddr*>(&storage), length),
              static_cast<ssize_t>(bytes.size()));
  }

  template <typename Predicate>
  bool RunUntil(Predicate done) {
    const auto deadline = std::chrono::steady_clock::now() + milliseconds(3000);
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io_.restart();
      io_.run_for(milliseconds(2));
    }
    return true;
  }

  boost::asio::io_context io_{1};
  Recorder handler_;
  std::unique_ptr<UdpTransport> transport_;
  int peer_ = -1;
  NetAddress peer_address_;
};

TEST_F(UdpTransportTest, DatagramsArriveWithTheirSource) {
  SendFromPeer("OPTIONS sip:a SIP/2.0\r\n\r\n");
  SendFromPeer("second");
  ASSERT_TRUE(RunUntil([&] { return handler_.received.size() == 2; }));
  EXPECT_EQ(handler_.received[0].bytes, "OPTIONS sip:a SIP/2.0\r\n\r\n");
  EXPECT_EQ(handler_.received[1].bytes, "second");
  EXPECT_EQ(handler_.received[0].source.address, peer_address_);
  EXPECT_EQ(handler_.received[0].source.transport, TransportKind::kUdp);
  EXPECT_GE(handler_.batches, 1);
  EXPECT_EQ(transport_->counters().datagrams_received, 2u);
}

TEST_F(UdpTransportTest, OversizedDatagramIsDroppedAndCounted) {
  SendFromPeer(std::string(3000, 'x'));
  SendFromPeer("small");
  ASSERT_TRUE(RunUntil([&] { return handler_.received.size() == 1; }));
  EXPECT_EQ(handler_.received[0].bytes, "small");
  EXPECT_EQ(transport_->counters().dropped_oversized, 1u);
}

TEST_F(UdpTransportTest, QueuedSendsLeaveOnFlushInOneBatch) {
  const Peer to{peer_address_, TransportKind::kUdp, 0};
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(transport_->Send(to, "reply-" + std::to_string(i)));
  transport_->Flush();
  EXPECT_EQ(transport_->counters().datagrams_sent, 5u);
  EXPECT_EQ(transport_->counters().send_syscalls, 1u);
  char buffer[64];
  for (int i = 0; i < 5; ++i) {
    const ssize_t n = ::recv(peer_, buffer, sizeof(buffer), 0);
    ASSERT_GT(n, 0);
    EXPECT_EQ(std::string(buffer, static_cast<size_t>(n)), "reply-" + std::to_string(i));
  }
}

}  // namespace
}  // namespace b2bua::proto
