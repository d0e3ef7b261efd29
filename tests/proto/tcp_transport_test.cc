// Tests proto/tcp_transport.{h,cc}: framing, keep-alives, connection reuse, limits and
// timeouts, against plain POSIX sockets on 127.0.0.1. The transport's io_context runs in
// the test thread, always bounded by a deadline; client sockets are read without blocking
// between turns.

#include "proto/tcp_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "proto/net_address.h"
#include "proto/str_util.h"
#include "proto/transport.h"

namespace b2bua::proto {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::string Request(std::string_view call_id, std::string_view body = "") {
  return StrCat("OPTIONS sip:bob@example.com SIP/2.0\r\n",
                "Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK-", call_id, "\r\n",
                "From: <sip:alice@example.com>;tag=1\r\n", "To: <sip:bob@example.com>\r\n",
                "Call-ID: ", call_id, "\r\n", "CSeq: 1 OPTIONS\r\n", "Max-Forwards: 70\r\n",
                "Content-Length: ", body.size(), "\r\n\r\n", body);
}

std::string Response(std::string_view call_id) {
  return StrCat("SIP/2.0 200 OK\r\n", "Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK-", call_id,
                "\r\n", "From: <sip:alice@example.com>;tag=1\r\n",
                "To: <sip:bob@example.com>;tag=2\r\n", "Call-ID: ", call_id, "\r\n",
                "CSeq: 1 OPTIONS\r\n", "Content-Length: 0\r\n\r\n");
}

NetAddress Loopback(uint16_t port) {
  NetAddress address;
  EXPECT_TRUE(NetAddress::ParseIp("127.0.0.1", port, &address));
  return address;
}

// A blocking client connected to 127.0.0.1:port, Nagle off so each write leaves at once.
int ConnectClient(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

NetAddress LocalAddressOf(int fd) {
  sockaddr_storage address;
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return NetAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&address), length);
}

// A non-blocking listener on 127.0.0.1 port 0, standing in for a remote SIP peer.
int Listen(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0 ||
      ::listen(fd, 16) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  *port = LocalAddressOf(fd).port();
  return fd;
}

bool WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Appends whatever `fd` has to read right now. False once the peer has closed (EOF or
// reset).
bool Drain(int fd, std::string* out) {
  char buffer[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n > 0) {
      out->append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return false;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  }
}

// Runs `io` until `done()` holds; false if `timeout` passes first.
template <typename Predicate>
bool RunIoUntil(boost::asio::io_context& io, Predicate done, milliseconds timeout) {
  const auto deadline = steady_clock::now() + timeout;
  while (!done()) {
    if (steady_clock::now() >= deadline) return false;
    io.restart();
    io.run_for(milliseconds(2));
  }
  return true;
}

class Recorder final : public StreamHandler {
 public:
  struct Received {
    std::string bytes;
    Peer source;
  };

  void OnStreamMessage(std::string_view message, const Peer& source) override {
    messages.push_back({std::string(message), source});
    if (on_message) on_message(message, source);
  }
  void OnBatchEnd() override { ++batches; }
  void OnSendFailure(const Peer& to) override { failures.push_back(to); }

  std::vector<Received> messages;
  std::vector<Peer> failures;
  int batches = 0;
  std::function<void(std::string_view, const Peer&)> on_message;
};

class TcpTransportTest : public ::testing::Test {
 protected:
  ~TcpTransportTest() override {
    transport_.reset();
    // Let cancelled handlers run: they must find the transport closed, not freed.
    io_.restart();
    io_.run_for(milliseconds(20));
    for (int fd : fds_) ::close(fd);
  }

  void Open(TcpOptions options = {}) {
    auto opened = TcpTransport::Open(io_, Loopback(0), options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    transport_ = std::move(*opened);
    ASSERT_NE(transport_->local_address().port(), 0);
    transport_->Start(&handler_);
  }

  template <typename Predicate>
  bool RunUntil(Predicate done, milliseconds timeout = milliseconds(3000)) {
    return RunIoUntil(io_, done, timeout);
  }

  void RunFor(milliseconds duration) {
    const auto deadline = steady_clock::now() + duration;
    while (steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(milliseconds(2));
    }
  }

  // A client connected to the transport and accepted by it.
  int Client() {
    const uint64_t before = transport_->counters().accepted;
    int fd = ConnectClient(transport_->local_address().port());
    EXPECT_GE(fd, 0);
    if (fd < 0) return -1;
    fds_.push_back(fd);
    EXPECT_TRUE(RunUntil([&] { return transport_->counters().accepted > before; }));
    return fd;
  }

  // True once the transport has closed `fd`'s connection; unread data is discarded.
  bool RunUntilClosed(int fd, milliseconds timeout = milliseconds(3000)) {
    std::string ignored;
    return RunUntil([&] { return !Drain(fd, &ignored); }, timeout);
  }

  bool RunUntilReceived(int fd, std::string* out, size_t bytes) {
    return RunUntil([&] {
      Drain(fd, out);
      return out->size() >= bytes;
    });
  }

  const TcpCounters& counters() const { return transport_->counters(); }

  boost::asio::io_context io_{1};
  Recorder handler_;
  std::unique_ptr<TcpTransport> transport_;
  std::vector<int> fds_;
};

TEST_F(TcpTransportTest, OneMessageInOneWrite) {
  Open();
  int fd = Client();
  const std::string request = Request("one", "v=0\r\n");
  ASSERT_TRUE(WriteAll(fd, request));
  ASSERT_TRUE(RunUntil([&] { return handler_.messages.size() == 1; }));

  EXPECT_EQ(handler_.messages[0].bytes, request);
  const Peer& source = handler_.messages[0].source;
  EXPECT_EQ(source.transport, TransportKind::kTcp);
  EXPECT_EQ(source.address, LocalAddressOf(fd));
  EXPECT_NE(source.connection_id, 0u);
  EXPECT_EQ(handler_.batches, 1);
  EXPECT_EQ(counters().messages_received, 1u);
  EXPECT_EQ(counters().bytes_received, request.size());
  EXPECT_EQ(counters().framing_errors, 0u);
  EXPECT_EQ(transport_->connection_count(), 1u);
}

TEST_F(TcpTransportTest, MessageSplitByteByByteWaitsForTheLastByte) {
  Open();
  int fd = Client();
  const std::string request = Request("split", "hello");
  for (size_t i = 0; i < request.size(); ++i) {
    ASSERT_TRUE(WriteAll(fd, std::string_view(request).substr(i, 1)));
    // Each byte is read on its own, so every prefix goes through the kIncomplete path.
    ASSERT_TRUE(RunUntil([&] { return counters().bytes_received == i + 1; })) << i;
    if (i + 1 < request.size()) {
      ASSERT_TRUE(handler_.messages.empty()) << i;
    }
  }
  ASSERT_EQ(handler_.messages.size(), 1u);
  EXPECT_EQ(handler_.messages[0].bytes, request);
  EXPECT_EQ(counters().framing_errors, 0u);
}

TEST_F(TcpTransportTest, ThreeMessagesInOneWriteAreOneBatch) {
  Open();
  int fd = Client();
  const std::string a = Request("a"), b = Request("b", "body-b"), c = Request("c", "xyz");
  // A keep-alive CRLF between messages is skipped, not delivered.
  ASSERT_TRUE(WriteAll(fd, StrCat("\r\n", a, b, "\r\n", c)));
  ASSERT_TRUE(RunUntil([&] { return handler_.messages.size() == 3; }));
  EXPECT_EQ(handler_.messages[0].bytes, a);
  EXPECT_EQ(handler_.messages[1].bytes, b);
  EXPECT_EQ(handler_.messages[2].bytes, c);
  EXPECT_EQ(handler_.batches, 1);
  EXPECT_EQ(handler_.messages[0].source, handler_.messages[2].source);
  EXPECT_EQ(counters().pongs_sent, 0u);  // single CRLFs are not pings
}

TEST_F(TcpTransportTest, MessageAndTheStartOfTheNextThenTheRest) {
  Open();
  int fd = Client();
  const std::string a = Request("a"), b = Request("b", "body");
  ASSERT_TRUE(WriteAll(fd, a + b.substr(0, 40)));
  ASSERT_TRUE(RunUntil([&] { return handler_.messages.size() == 1; }));
  ASSERT_TRUE(WriteAll(fd, b.substr(40)));
  ASSERT_TRUE(RunUntil([&] { return handler_.messages.size() == 2; }));
  EXPECT_EQ(handler_.messages[1].bytes, b);
}

TEST_F(TcpTransportTest, DoubleCrlfPingGetsCrlfPong) {
  Open();
  int fd = Client();
  std::string got;
  ASSERT_TRUE(WriteAll(fd, "\r\n\r\n"));
  ASSERT_TRUE(RunUntilReceived(fd, &got, 2));
  EXPECT_EQ(got, "\r\n");

  // A ping split across writes, then one followed at once by a message.
  got.clear();
  ASSERT_TRUE(WriteAll(fd, "\r\n"));
  ASSERT_TRUE(RunUntil([&] { return counters().bytes_received == 6; }));
  ASSERT_TRUE(WriteAll(fd, "\r\n"));
  ASSERT_TRUE(RunUntilReceived(fd, &got, 2));
  EXPECT_EQ(got, "\r\n");
  got.clear();
  ASSERT_TRUE(WriteAll(fd, "\r\n\r\n" + Request("after-ping")));
  ASSERT_TRUE(RunUntilReceived(fd, &got, 2));
  ASSERT_TRUE(RunUntil([&] { return handler_.messages.size() == 1; }));
  EXPECT_EQ(got, "\r\n");
  EXPECT_EQ(counters().pongs_sent, 3u);
  EXPECT_EQ(transport_->connection_count(), 1u);
}

TEST_F(TcpTransportTest, ResponseGoesBackOnTheRequestsConnection) {
  Open();
  int first = Client();
  int second = Client();
  handler_.on_message = [&](std::string_view, const Peer& source) {
    EXPECT_TRUE(transport_->Send(source, Response("r")));
  };
  ASSERT_TRUE(WriteAll(second, Request("r")));
  std::string got;
  ASSERT_TRUE(RunUntilReceived(second, &got, Response("r").size()));
  EXPECT_EQ(got, Response("r"));
  std::string other;
  EXPECT_TRUE(Drain(first, &other));
  EXPECT_TRUE(other.empty());
  EXPECT_EQ(counters().bytes_sent, Response("r").size());
  EXPECT_EQ(counters().connects, 0u);

  // The connection id wins over the address: a peer whose address names `first` but whose
  // id names `second` is answered on `second`.
  Peer mixed = handler_.messages[0].source;
  mixed.address = LocalAddressOf(first);
  handler_.on_message = nullptr;
  got.clear();
  ASSERT_TRUE(transport_->Send(mixed, "x"));
  ASSERT_TRUE(RunUntilReceived(second, &got, 1));
  EXPECT_EQ(got, "x");
  EXPECT_TRUE(Drain(first, &other));
  EXPECT_TRUE(other.empty());
}

TEST_F(TcpTransportTest, SendWithoutConnectionOpensOneAndReusesIt) {
  Open();
  uint16_t port = 0;
  int listener = Listen(&port);
  ASSERT_GE(listener, 0);
  fds_.push_back(listener);
  const Peer to{Loopback(port), TransportKind::kTcp, 0};

  ASSERT_TRUE(transport_->Send(to, Request("out-1")));
  EXPECT_EQ(transport_->connection_count(), 1u);
  int accepted = -1;
  ASSERT_TRUE(RunUntil([&] {
    accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    return accepted >= 0;
  }));
  fds_.push_back(accepted);
  std::string got;
  ASSERT_TRUE(RunUntilReceived(accepted, &got, Request("out-1").size()));
  EXPECT_EQ(got, Request("out-1"));
  EXPECT_EQ(counters().connects, 1u);

  got.clear();
  ASSERT_TRUE(transport_->Send(to, Request("out-2")));
  ASSERT_TRUE(RunUntilReceived(accepted, &got, Request("out-2").size()));
  EXPECT_EQ(got, Request("out-2"));
  EXPECT_EQ(transport_->connection_count(), 1u);
  EXPECT_EQ(counters().connects, 1u);
  EXPECT_LT(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC), 0);  // no second connection

  // What the peer sends back on that connection is delivered with its id.
  ASSERT_TRUE(WriteAll(accepted, Response("out-2")));
  ASSERT_TRUE(RunUntil([&] { return handler_.messages.size() == 1; }));
  EXPECT_EQ(handler_.messages[0].bytes, Response("out-2"));
  EXPECT_EQ(handler_.messages[0].source.address, to.address);
  EXPECT_NE(handler_.messages[0].source.connection_id, 0u);
}

TEST_F(TcpTransportTest, SendsQueuedWhileConnectingKeepTheirOrder) {
  Open();
  uint16_t port = 0;
  int listener = Listen(&port);
  ASSERT_GE(listener, 0);
  fds_.push_back(listener);
  const Peer to{Loopback(port), TransportKind::kTcp, 0};
  std::string expected;
  for (int i = 0; i < 3; ++i) {
    const std::string request = Request(StrCat("queued-", i));
    ASSERT_TRUE(transport_->Send(to, request));
    expected += request;
  }
  EXPECT_EQ(transport_->connection_count(), 1u);
  int accepted = -1;
  ASSERT_TRUE(RunUntil([&] {
    accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    return accepted >= 0;
  }));
  fds_.push_back(accepted);
  std::string got;
  ASSERT_TRUE(RunUntilReceived(accepted, &got, expected.size()));
  EXPECT_EQ(got, expected);
  EXPECT_EQ(counters().bytes_sent, expected.size());
}

TEST_F(TcpTransportTest, ConnectTimeoutDropsAndReports) {
  TcpOptions options;
  options.connect_timeout = milliseconds(200);
  Open(options);
  // A listener that never accepts, with its accept queue full: Linux drops further SYNs,
  // so our connect hangs until the timeout.
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  fds_.push_back(listener);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  ASSERT_EQ(::listen(listener, 0), 0);
  const uint16_t port = LocalAddressOf(listener).port();
  for (int i = 0; i < 2; ++i) {
    int filler = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT_GE(filler, 0);
    fds_.push_back(filler);
    sin.sin_port = htons(port);
    ::connect(filler, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
  }
  const Peer to{Loopback(port), TransportKind::kTcp, 0};
  const auto start = steady_clock::now();
  ASSERT_TRUE(transport_->Send(to, Request("never")));
  ASSERT_TRUE(RunUntil([&] { return handler_.failures.size() == 1; }));
  EXPECT_GE(steady_clock::now() - start, milliseconds(190));
  EXPECT_EQ(counters().connect_failures, 1u);
  EXPECT_EQ(counters().connects, 0u);
  EXPECT_EQ(transport_->connection_count(), 0u);
}

TEST_F(TcpTransportTest, DeadConnectionIdFallsBackToTheAddress) {
  Open();
  uint16_t port = 0;
  int listener = Listen(&port);
  ASSERT_GE(listener, 0);
  fds_.push_back(listener);
  const Peer to{Loopback(port), TransportKind::kTcp, 0x00abcdef};
  ASSERT_TRUE(transport_->Send(to, "hello"));
  int accepted = -1;
  ASSERT_TRUE(RunUntil([&] {
    accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    return accepted >= 0;
  }));
  fds_.push_back(accepted);
  std::string got;
  ASSERT_TRUE(RunUntilReceived(accepted, &got, 5));
  EXPECT_EQ(got, "hello");
}

TEST_F(TcpTransportTest, ConnectFailureDropsAndReports) {
  Open();
  uint16_t port = 0;
  int listener = Listen(&port);
  ASSERT_GE(listener, 0);
  ::close(listener);  // nothing listens there now: connect is refused
  const Peer to{Loopback(port), TransportKind::kTcp, 0};
  ASSERT_TRUE(transport_->Send(to, Request("lost")));  // queued until the connect resolves
  ASSERT_TRUE(RunUntil([&] { return handler_.failures.size() == 1; }));
  EXPECT_EQ(handler_.failures[0].address, to.address);
  EXPECT_EQ(handler_.failures[0].transport, TransportKind::kTcp);
  EXPECT_EQ(counters().connect_failures, 1u);
  EXPECT_EQ(counters().send_failures, 1u);
  EXPECT_EQ(counters().connects, 0u);
  EXPECT_EQ(transport_->connection_count(), 0u);
}

TEST_F(TcpTransportTest, ConnectionIdsNameTheShard) {
  TcpOptions options;
  options.connection_id_base = 3u << 24;
  Open(options);
  int fd = Client();
  ASSERT_TRUE(WriteAll(fd, Request("shard")));
  ASSERT_TRUE(RunUntil([&] { return handler_.messages.size() == 1; }));
  EXPECT_EQ(handler_.messages[0].source.connection_id >> 24, 3u);
  EXPECT_NE(handler_.messages[0].source.connection_id & 0xFFFFFFu, 0u);
}

TEST_F(TcpTransportTest, ShardsShareThePortWithReusePort) {
  Open();
  auto second = TcpTransport::Open(io_, transport_->local_address(), TcpOptions{});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)->local_address(), transport_->local_address());
}

TEST_F(TcpTransportTest, IdleConnectionIsClosed) {
  TcpOptions options;
  options.idle_timeout = milliseconds(200);
  Open(options);
  int quiet = Client();
  int chatty = Client();
  const auto start = steady_clock::now();
  // CRLFs every 50 ms count as traffic; the silent connection goes after 200 ms.
  auto last_write = start;
  std::string ignored;
  bool chatty_open = true;
  ASSERT_TRUE(RunUntil(
      [&] {
        if (steady_clock::now() - last_write >= milliseconds(50)) {
          WriteAll(chatty, "\r\n");
          last_write = steady_clock::now();
        }
        chatty_open = Drain(chatty, &ignored);
        return !Drain(quiet, &ignored);
      },
      milliseconds(2000)));
  // The quiet one was accepted a little before `start`.
  EXPECT_GE(steady_clock::now() - start, milliseconds(150));
  EXPECT_TRUE(chatty_open);
  EXPECT_EQ(counters().idle_closed, 1u);
  EXPECT_EQ(transport_->connection_count(), 1u);
  // Without traffic the other one follows.
  ASSERT_TRUE(RunUntilClosed(chatty, milliseconds(2000)));
  EXPECT_EQ(counters().idle_closed, 2u);
  EXPECT_EQ(transport_->connection_count(), 0u);
}

TEST_F(TcpTransportTest, PerSourceLimitRefusesTheExtraConnection) {
  TcpOptions options;
  options.max_connections_per_source_ip = 2;
  Open(options);
  int first = Client();
  Client();
  int extra = ConnectClient(transport_->local_address().port());
  ASSERT_GE(extra, 0);
  fds_.push_back(extra);
  ASSERT_TRUE(RunUntil([&] { return counters().refused_over_limit == 1; }));
  ASSERT_TRUE(RunUntilClosed(extra));
  EXPECT_EQ(counters().accepted, 2u);
  EXPECT_EQ(transport_->connection_count(), 2u);

  // Once one of them goes, the source may connect again.
  ::shutdown(first, SHUT_RDWR);
  ASSERT_TRUE(RunUntil([&] { return transport_->connection_count() == 1; }));
  Client();
  EXPECT_EQ(counters().accepted, 3u);
  EXPECT_EQ(counters().refused_over_limit, 1u);
}

TEST_F(TcpTransportTest, TotalLimitRefusesAccepts) {
  TcpOptions options;
  options.max_connections = 1;
  Open(options);
  Client();
  int extra = ConnectClient(transport_->local_address().port());
  ASSERT_GE(extra, 0);
  fds_.push_back(extra);
  ASSERT_TRUE(RunUntil([&] { return counters().refused_over_limit == 1; }));
  EXPECT_EQ(transport_->connection_count(), 1u);
  // An outgoing connection is over the limit too.
  EXPECT_FALSE(transport_->Send(Peer{Loopback(9), TransportKind::kTcp, 0}, "x"));
  EXPECT_EQ(counters().send_failures, 1u);
}

TEST_F(TcpTransportTest, MessageWithoutEndWithinTheLimitClosesTheConnection) {
  TcpOptions options;
  options.max_message_bytes = 1024;
  Open(options);
  int fd = Client();
  std::string endless = "OPTIONS sip:bob@example.com SIP/2.0\r\n";
  while (endless.size() < 3000) endless += "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
  ASSERT_TRUE(WriteAll(fd, endless));
  ASSERT_TRUE(RunUntilClosed(fd));
  EXPECT_EQ(counters().framing_errors, 1u);
  EXPECT_TRUE(handler_.messages.empty());
  EXPECT_EQ(transport_->connection_count(), 0u);
}

// The headers say the message is over the limit: answered 513 at once, the body never read
// into memory, the connection closed.
TEST_F(TcpTransportTest, ContentLengthOverTheLimitIsAnswered513AndClosed) {
  TcpOptions options;
  options.max_message_bytes = 1024;
  // After the 513 the peer has this long to close its end before we do.
  options.message_timeout = milliseconds(300);
  Open(options);
  int fd = Client();
  std::string request = Request("big");
  request.replace(request.find("Content-Length: 0"), 17, "Content-Length: 500000");
  ASSERT_TRUE(WriteAll(fd, request));
  // Part of the announced body follows; it is read and thrown away.
  ASSERT_TRUE(WriteAll(fd, std::string(20000, 'x')));
  std::string answer;
  ASSERT_TRUE(RunUntil([&] { return !Drain(fd, &answer); }));
  EXPECT_TRUE(answer.starts_with("SIP/2.0 513 Message Too Large\r\n")) << answer;
  EXPECT_NE(answer.find("Call-ID: big\r\n"), std::string::npos) << answer;
  EXPECT_EQ(counters().framing_errors, 1u);
  EXPECT_EQ(counters().oversized_answered, 1u);
  EXPECT_TRUE(handler_.messages.empty());
  EXPECT_TRUE(RunUntil([&] { return transport_->connection_count() == 0; }));
}

// A socket opened and left silent is closed at the first-byte deadline, long before the
// idle timeout; one that spoke stays.
TEST_F(TcpTransportTest, SilentConnectionIsClosedAtTheFirstByteDeadline) {
  TcpOptions options;
  options.first_byte_timeout = milliseconds(200);
  options.idle_timeout = std::chrono::minutes(5);
  Open(options);
  int silent = Client();
  int speaker = Client();
  ASSERT_TRUE(WriteAll(speaker, Request("spoke")));
  const auto start = steady_clock::now();
  ASSERT_TRUE(RunUntilClosed(silent, milliseconds(2000)));
  EXPECT_GE(steady_clock::now() - start, milliseconds(100));
  EXPECT_EQ(counters().first_byte_timeouts, 1u);
  std::string ignored;
  RunFor(milliseconds(300));
  EXPECT_TRUE(Drain(speaker, &ignored));
  EXPECT_EQ(transport_->connection_count(), 1u);
  EXPECT_EQ(handler_.messages.size(), 1u);
}

// A peer trickling one message a byte at a time is closed when the message deadline runs
// out, although every byte counts as traffic for the idle timeout.
TEST_F(TcpTransportTest, TricklingMessageIsClosedAtTheMessageDeadline) {
  TcpOptions options;
  options.message_timeout = milliseconds(300);
  Open(options);
  int slow = Client();
  int brisk = Client();
  const std::string request = Request("slow");
  size_t sent = 0;
  auto last = steady_clock::now();
  int brisk_messages = 0;
  std::string ignored;
  ASSERT_TRUE(RunUntil(
      [&] {
        if (steady_clock::now() - last >= milliseconds(40) && sent + 1 < request.size()) {
          WriteAll(slow, request.substr(sent++, 1));
          // The other peer sends whole messages at the same pace: never cut off.
          WriteAll(brisk, Request("brisk" + std::to_string(brisk_messages++)));
          last = steady_clock::now();
        }
        return !Drain(slow, &ignored);
      },
      milliseconds(3000)));
  EXPECT_EQ(counters().message_timeouts, 1u);
  EXPECT_TRUE(Drain(brisk, &ignored));
  EXPECT_EQ(transport_->connection_count(), 1u);
  for (const auto& received : handler_.messages)
    EXPECT_EQ(received.bytes.find("Call-ID: slow"), std::string::npos);
}

// A message that arrives in pieces within the deadline is delivered, and the next one gets
// a deadline of its own.
TEST_F(TcpTransportTest, MessageInPiecesWithinTheDeadlineIsDelivered) {
  TcpOptions options;
  options.message_timeout = milliseconds(400);
  Open(options);
  int fd = Client();
  for (int round = 0; round < 3; ++round) {
    const std::string request = Request("piece" + std::to_string(round));
    const size_t half = request.size() / 2;
    ASSERT_TRUE(WriteAll(fd, request.substr(0, half)));
    RunFor(milliseconds(250));
    ASSERT_TRUE(WriteAll(fd, request.substr(half)));
    ASSERT_TRUE(RunUntil([&] { return handler_.messages.size() == static_cast<size_t>(round + 1); }));
  }
  EXPECT_EQ(counters().message_timeouts, 0u);
  EXPECT_EQ(transport_->connection_count(), 1u);
}

TEST_F(TcpTransportTest, MessageOfExactlyTheLimitIsDelivered) {
  const std::string head = Request("exact");
  TcpOptions options;
  options.max_message_bytes = 2048;
  Open(options);
  int fd = Client();
  // Content-Length grows from "0" to four digits.
  const std::string body(options.max_message_bytes - head.size() - 3, 'b');
  const std::string request = Request("exact", body);
  ASSERT_EQ(request.size(), options.max_message_bytes);
  ASSERT_TRUE(WriteAll(fd, request + Request("next")));
  ASSERT_TRUE(RunUntil([&] { return handler_.messages.size() == 2; }));
  EXPECT_EQ(handler_.messages[0].bytes, request);
  EXPECT_EQ(counters().framing_errors, 0u);
}

TEST_F(TcpTransportTest, LargeMessageGrowsTheReceiveBuffer) {
  Open();
  int fd = Client();
  // Several times the initial buffer, in pieces, followed by a small message.
  const std::string big = Request("big", std::string(40000, 'b'));
  const std::string small = Request("small");
  const std::string all = big + small;
  for (size_t offset = 0; offset < all.size(); offset += 7000)
    ASSERT_TRUE(WriteAll(fd, std::string_view(all).substr(offset, 7000)));
  ASSERT_TRUE(RunUntil([&] { return handler_.messages.size() == 2; }));
  EXPECT_EQ(handler_.messages[0].bytes, big);
  EXPECT_EQ(handler_.messages[1].bytes, small);
  EXPECT_EQ(counters().framing_errors, 0u);
}

TEST_F(TcpTransportTest, GarbageClosesTheConnection) {
  Open();
  int fd = Client();
  ASSERT_TRUE(WriteAll(fd, "HELLO WORLD\r\n\r\n"));
  ASSERT_TRUE(RunUntilClosed(fd));
  EXPECT_EQ(counters().framing_errors, 1u);
  EXPECT_TRUE(handler_.messages.empty());

  // Stream framing needs Content-Length (RFC 3261 18.3).
  int second = Client();
  std::string request = Request("no-length");
  request.erase(request.find("Content-Length: 0\r\n"), 19);
  ASSERT_TRUE(WriteAll(second, request));
  ASSERT_TRUE(RunUntilClosed(second));
  EXPECT_EQ(counters().framing_errors, 2u);
  EXPECT_TRUE(handler_.messages.empty());
}

TEST_F(TcpTransportTest, GoodMessagesBeforeGarbageAreDelivered) {
  Open();
  int fd = Client();
  ASSERT_TRUE(WriteAll(fd, Request("good") + "GARBAGE\r\n\r\n"));
  ASSERT_TRUE(RunUntilClosed(fd));
  ASSERT_EQ(handler_.messages.size(), 1u);
  EXPECT_EQ(handler_.batches, 1);
  EXPECT_EQ(counters().framing_errors, 1u);
}

TEST_F(TcpTransportTest, PeerClosingMidMessage) {
  Open();
  int fd = Client();
  const std::string request = Request("cut", "0123456789");
  ASSERT_TRUE(WriteAll(fd, request.substr(0, request.size() - 5)));
  ASSERT_TRUE(RunUntil([&] { return counters().bytes_received > 0; }));
  ::close(fd);
  fds_.erase(std::find(fds_.begin(), fds_.end(), fd));
  ASSERT_TRUE(RunUntil([&] { return transport_->connection_count() == 0; }));
  EXPECT_TRUE(handler_.messages.empty());
  EXPECT_EQ(counters().framing_errors, 0u);
}

TEST_F(TcpTransportTest, WriteQueueOverflowClosesTheConnection) {
  TcpOptions options;
  options.max_write_queue_bytes = 64 * 1024;
  Open(options);
  int fd = Client();
  ASSERT_TRUE(WriteAll(fd, Request("q")));
  ASSERT_TRUE(RunUntil([&] { return handler_.messages.size() == 1; }));
  const Peer to = handler_.messages[0].source;
  // Without running the io_context no write completes, so everything stays queued.
  const std::string chunk(10 * 1024, 'z');
  int accepted = 0;
  while (accepted < 100 && transport_->Send(to, chunk)) ++accepted;
  EXPECT_EQ(accepted, 6);
  EXPECT_EQ(counters().write_overflow, 1u);
  EXPECT_EQ(transport_->connection_count(), 0u);
  ASSERT_TRUE(RunUntil([&] { return handler_.failures.size() == 1; }));
  EXPECT_EQ(handler_.failures[0].connection_id, to.connection_id);
}

TEST_F(TcpTransportTest, CloseWithLiveConnections) {
  Open();
  int a = Client();
  int b = Client();
  uint16_t port = 0;
  int listener = Listen(&port);
  ASSERT_GE(listener, 0);
  fds_.push_back(listener);
  ASSERT_TRUE(transport_->Send(Peer{Loopback(port), TransportKind::kTcp, 0}, "queued"));
  ASSERT_TRUE(WriteAll(a, Request("half").substr(0, 30)));
  ASSERT_TRUE(RunUntil([&] { return counters().bytes_received == 30; }));
  EXPECT_EQ(transport_->connection_count(), 3u);

  transport_->Close();
  EXPECT_EQ(transport_->connection_count(), 0u);
  ASSERT_TRUE(RunUntilClosed(a));
  ASSERT_TRUE(RunUntilClosed(b));
  EXPECT_FALSE(transport_->Send(Peer{Loopback(port), TransportKind::kTcp, 0}, "late"));
  EXPECT_TRUE(handler_.failures.empty());  // Close() reports nothing
  transport_->Close();                     // idempotent
  EXPECT_EQ(ConnectClient(transport_->local_address().port()), -1);  // no longer listening
}

TEST_F(TcpTransportTest, HandlerMayCloseTheTransportFromACallback) {
  Open();
  int fd = Client();
  handler_.on_message = [&](std::string_view, const Peer&) { transport_->Close(); };
  ASSERT_TRUE(WriteAll(fd, Request("a") + Request("b")));
  ASSERT_TRUE(RunUntilClosed(fd));
  EXPECT_EQ(handler_.messages.size(), 1u);  // nothing after Close()
  EXPECT_EQ(handler_.batches, 0);
}

TEST_F(TcpTransportTest, DestroyedWithHandlersPending) {
  Open();
  int fd = Client();
  ASSERT_TRUE(WriteAll(fd, Request("x").substr(0, 10)));
  ASSERT_TRUE(RunUntil([&] { return counters().bytes_received == 10; }));
  transport_.reset();
  // The cancelled read and timer handlers run after the transport is gone.
  ASSERT_TRUE(RunUntilClosed(fd));
}

}  // namespace
}  // namespace b2bua::proto

// ---------------------------------------------------------------------------------------
// TLS: two transports of this process, one listening, one connecting, with the test
// certificates of tests/data/tls.

namespace b2bua::proto {
namespace {

std::string TlsFile(std::string_view name) {
  return std::string(B2BUA_TEST_DATA_DIR) + "/tls/" + std::string(name);
}

std::shared_ptr<const TlsContext> LoadTls(std::string_view cert, std::string_view key,
                                          bool verify_peer = false) {
  TlsSettings settings;
  settings.certificate = TlsFile(cert);
  settings.private_key = TlsFile(key);
  settings.ca = TlsFile("ca.pem");
  settings.verify_peer = verify_peer;
  absl::StatusOr<std::shared_ptr<const TlsContext>> loaded = TlsContext::Load(settings);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return loaded.ok() ? *loaded : nullptr;
}

class TlsTransportTest : public ::testing::Test {
 protected:
  ~TlsTransportTest() override {
    server_.reset();
    client_.reset();
    io_.restart();
    io_.run_for(milliseconds(20));
    for (int fd : fds_) ::close(fd);
  }

  void Open(std::shared_ptr<const TlsContext> server_tls, std::shared_ptr<const TlsContext> client_tls,
            milliseconds handshake_timeout = milliseconds(3000)) {
    TcpOptions server;
    server.tls = std::move(server_tls);
    server.handshake_timeout = handshake_timeout;
    auto opened = TcpTransport::Open(io_, Loopback(0), server);
    ASSERT_TRUE(opened.ok()) << opened.status();
    server_ = std::move(*opened);
    server_->Start(&server_handler_);
    TcpOptions client;
    client.tls = std::move(client_tls);
    client.connection_id_base = 1u << 24;
    opened = TcpTransport::Open(io_, Loopback(0), client);
    ASSERT_TRUE(opened.ok()) << opened.status();
    client_ = std::move(*opened);
    client_->Start(&client_handler_);
  }

  template <typename Predicate>
  bool RunUntil(Predicate done, milliseconds timeout = milliseconds(5000)) {
    return RunIoUntil(io_, done, timeout);
  }

  Peer ServerPeer() const { return Peer{server_->local_address(), TransportKind::kTls, 0}; }

  boost::asio::io_context io_{1};
  Recorder server_handler_;
  Recorder client_handler_;
  std::unique_ptr<TcpTransport> server_;
  std::unique_ptr<TcpTransport> client_;
  std::vector<int> fds_;
};

TEST_F(TlsTransportTest, RequestAndResponseOverTls) {
  Open(LoadTls("server.pem", "server.key"), LoadTls("server2.pem", "server2.key"));
  client_->SetServerName(server_->local_address(), "sip.test.example");
  ASSERT_TRUE(client_->Send(ServerPeer(), Request("tls-1")));
  ASSERT_TRUE(RunUntil([&] { return server_handler_.messages.size() == 1; }));
  EXPECT_EQ(server_handler_.messages[0].bytes, Request("tls-1"));
  const Peer caller = server_handler_.messages[0].source;
  EXPECT_EQ(caller.transport, TransportKind::kTls);
  ASSERT_TRUE(server_->Send(caller, Response("tls-1")));
  ASSERT_TRUE(RunUntil([&] { return client_handler_.messages.size() == 1; }));
  EXPECT_EQ(client_handler_.messages[0].bytes, Response("tls-1"));
  EXPECT_EQ(client_handler_.messages[0].source.transport, TransportKind::kTls);
  EXPECT_EQ(server_->counters().handshakes, 1u);
  EXPECT_EQ(client_->counters().handshakes, 1u);
  EXPECT_EQ(client_->counters().connects, 1u);
}

// Without a name the next hop's certificate must name its IP address (127.0.0.1 here).
TEST_F(TlsTransportTest, AddressWithoutANameIsVerifiedByIp) {
  Open(LoadTls("server.pem", "server.key"), LoadTls("server2.pem", "server2.key"));
  ASSERT_TRUE(client_->Send(ServerPeer(), Request("tls-ip")));
  ASSERT_TRUE(RunUntil([&] { return server_handler_.messages.size() == 1; }));
}

// RFC 5922: a certificate for another name, or one the CA did not sign, is refused and
// nothing is sent.
TEST_F(TlsTransportTest, ServerCertificateThatDoesNotVerifyIsRefused) {
  for (std::string_view cert : {"wrongname", "selfsigned"}) {
    SCOPED_TRACE(cert);
    Open(LoadTls(std::string(cert) + ".pem", std::string(cert) + ".key"),
         LoadTls("server.pem", "server.key"));
    client_->SetServerName(server_->local_address(), "sip.test.example");
    ASSERT_TRUE(client_->Send(ServerPeer(), Request("tls-bad")));
    ASSERT_TRUE(RunUntil([&] { return client_handler_.failures.size() == 1; }));
    EXPECT_EQ(client_->counters().handshake_verify_failures, 1u);
    EXPECT_EQ(client_->counters().handshakes, 0u);
    EXPECT_TRUE(server_handler_.messages.empty());
    server_.reset();
    client_.reset();
    client_handler_.failures.clear();
  }
}

// With verify_peer, a caller must present a certificate from the CA: ours does.
TEST_F(TlsTransportTest, VerifyPeerTakesAClientCertificateFromTheCa) {
  Open(LoadTls("server.pem", "server.key", /*verify_peer=*/true),
       LoadTls("server2.pem", "server2.key"));
  ASSERT_TRUE(client_->Send(ServerPeer(), Request("mutual")));
  ASSERT_TRUE(RunUntil([&] { return server_handler_.messages.size() == 1; }));
  EXPECT_EQ(server_->counters().handshakes, 1u);
}

TEST_F(TlsTransportTest, PlainTextOnTheTlsPortIsAHandshakeError) {
  Open(LoadTls("server.pem", "server.key", /*verify_peer=*/true), nullptr);
  int fd = ConnectClient(server_->local_address().port());
  ASSERT_GE(fd, 0);
  fds_.push_back(fd);
  // Not TLS at all: the handshake fails as an error, not a verification.
  ASSERT_TRUE(WriteAll(fd, Request("plain")));
  ASSERT_TRUE(RunUntil([&] { return server_->counters().handshake_errors == 1; }));
  EXPECT_TRUE(server_handler_.messages.empty());
}

// A peer that connects and never starts the handshake is closed at the deadline.
TEST_F(TlsTransportTest, SilentPeerIsClosedAtTheHandshakeDeadline) {
  Open(LoadTls("server.pem", "server.key"), nullptr, milliseconds(200));
  int fd = ConnectClient(server_->local_address().port());
  ASSERT_GE(fd, 0);
  fds_.push_back(fd);
  ASSERT_TRUE(RunUntil([&] { return server_->counters().handshake_timeouts == 1; }));
  EXPECT_EQ(server_->connection_count(), 0u);
}

// A new context (a reload) serves the next handshake; the live connection keeps working.
TEST_F(TlsTransportTest, NewContextServesTheNextHandshake) {
  Open(LoadTls("server.pem", "server.key"), LoadTls("server.pem", "server.key"));
  ASSERT_TRUE(client_->Send(ServerPeer(), Request("before")));
  ASSERT_TRUE(RunUntil([&] { return server_handler_.messages.size() == 1; }));
  const Peer first = server_handler_.messages[0].source;
  TcpOptions reloaded;
  reloaded.tls = LoadTls("wrongname.pem", "wrongname.key");
  server_->UpdateOptions(reloaded);
  // The live connection still carries messages both ways.
  ASSERT_TRUE(server_->Send(first, Response("before")));
  ASSERT_TRUE(RunUntil([&] { return client_handler_.messages.size() == 1; }));
  // A second client now meets the new certificate, which names another host: refused.
  TcpOptions second;
  second.tls = LoadTls("server.pem", "server.key");
  second.connection_id_base = 2u << 24;
  auto opened = TcpTransport::Open(io_, Loopback(0), second);
  ASSERT_TRUE(opened.ok());
  Recorder handler;
  (*opened)->Start(&handler);
  ASSERT_TRUE((*opened)->Send(ServerPeer(), Request("after")));
  ASSERT_TRUE(RunUntil([&] { return (*opened)->counters().handshake_verify_failures == 1; }));
  (*opened)->Close();
}

TEST(TlsContextTest, LoadErrorsNameTheFile) {
  TlsSettings settings;
  settings.certificate = TlsFile("missing.pem");
  settings.private_key = TlsFile("server.key");
  absl::StatusOr<std::shared_ptr<const TlsContext>> loaded = TlsContext::Load(settings);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("tls.certificate"), std::string_view::npos)
      << loaded.status();
  EXPECT_NE(loaded.status().message().find("missing.pem"), std::string_view::npos);
  settings.certificate = TlsFile("server.pem");
  settings.private_key = TlsFile("server2.key");
  loaded = TlsContext::Load(settings);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("tls.private_key"), std::string_view::npos)
      << loaded.status();
  EXPECT_NE(loaded.status().message().find("server2.key"), std::string_view::npos);
}

}  // namespace
}  // namespace b2bua::proto
