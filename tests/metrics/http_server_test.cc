// Tests metrics/http_server.{h,cc}: a real MetricsHttpServer on 127.0.0.1:0, driven by a
// plain POSIX socket client so that the test does not share code (or bugs) with Beast.
// Every socket has a receive timeout: a server that hangs fails the test instead of
// hanging it.

#include "metrics/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace b2bua::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kMetricsBody[] = "# TYPE b2bua_test gauge\nb2bua_test 1\n";
constexpr int kReceiveTimeoutSeconds = 5;

struct Reply {
  int status = 0;
  std::string head;  // status line and headers, lower-cased names kept as sent
  std::string body;
};

// A blocking HTTP/1.1 client over one TCP connection. It understands just enough of the
// response (status line, Content-Length) to find where each response ends.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{kReceiveTimeoutSeconds, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }

  bool connected() const { return connected_; }
  bool timed_out() const { return timed_out_; }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // One response, or nullopt-like Reply{status = 0} when the server closed (or reset) the
  // connection first, or the receive timed out (see timed_out()).
  Reply Read() {
    Reply reply;
    size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos)
      if (!Fill()) return reply;
    reply.head = buffer_.substr(0, head_end + 2);
    buffer_.erase(0, head_end + 4);
    size_t length = 0;
    if (const size_t at = Lower(reply.head).find("\r\ncontent-length:"); at != std::string::npos)
      length = std::strtoul(reply.head.c_str() + at + 17, nullptr, 10);
    while (buffer_.size() < length)
      if (!Fill()) return Reply{};
    reply.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    if (reply.head.starts_with("HTTP/1.")) reply.status = std::atoi(reply.head.c_str() + 9);
    return reply;
  }

  // True when the server closed the connection: EOF or reset, not a timeout.
  bool ClosedByServer() {
    while (Fill()) {
    }
    return !timed_out_;
  }

  Reply Get(std::string_view target, std::string_view extra_headers = "") {
    Send(std::string("GET ") + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" +
         std::string(extra_headers) + "\r\n");
    return Read();
  }

 private:
  static std::string Lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

  bool Fill() {
    char chunk[4096];
    const ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
      return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) timed_out_ = true;
    return false;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool timed_out_ = false;
  std::string buffer_;
};

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(MetricsHttpServer::Options{}); }

  void StartServer(const MetricsHttpServer::Options& options) {
    server_.reset();
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server = MetricsHttpServer::Start(
        "127.0.0.1:0",
        [this] {
          ++renders_;
          if (throw_in_render_) throw std::runtime_error("render failed");
          return std::string(kMetricsBody);
        },
        [this] { return ready_.load(); }, options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_NE(server_->port(), 0);
  }

  std::atomic<bool> ready_{false};
  std::atomic<bool> throw_in_render_{false};
  std::atomic<int> renders_{0};
  std::unique_ptr<MetricsHttpServer> server_;
};

TEST_F(MetricsHttpServerTest, MetricsServesRenderedText) {
  Client client(server_->port());
  ASSERT_TRUE(client.connected());
  const Reply reply = client.Get("/metrics");
  EXPECT_EQ(reply.status, 200);
  EXPECT_THAT(reply.head, HasSubstr("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
  EXPECT_EQ(reply.body, kMetricsBody);
  EXPECT_EQ(renders_.load(), 1);
}

TEST_F(MetricsHttpServerTest, QueryStringIsIgnoredForRouting) {
  Client client(server_->port());
  EXPECT_EQ(client.Get("/metrics?name[]=b2bua_test").status, 200);
}

TEST_F(MetricsHttpServerTest, HealthzAnswersOk) {
  Client client(server_->port());
  const Reply reply = client.Get("/healthz");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "ok");
}

TEST_F(MetricsHttpServerTest, ReadyzFollowsTheCallback) {
  Client client(server_->port());
  Reply reply = client.Get("/readyz");
  EXPECT_EQ(reply.status, 503);
  EXPECT_EQ(reply.body, "not ready");

  ready_ = true;
  reply = client.Get("/readyz");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "ready");
}

TEST_F(MetricsHttpServerTest, UnknownPathIs404) {
  Client client(server_->port());
  EXPECT_EQ(client.Get("/nope").status, 404);
  EXPECT_EQ(client.Get("/metricsx").status, 404);
}

TEST_F(MetricsHttpServerTest, NonGetIs405) {
  Client client(server_->port());
  client.Send("POST /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nabc");
  const Reply reply = client.Read();
  EXPECT_EQ(reply.status, 405);
  EXPECT_THAT(reply.head, HasSubstr("\r\nAllow: GET\r\n"));
  EXPECT_EQ(renders_.load(), 0);
  // The connection stays usable after a 405.
  EXPECT_EQ(client.Get("/healthz").status, 200);
}

TEST_F(MetricsHttpServerTest, OversizedHeaderIsRefusedNotHung) {
  Client client(server_->port());
  const std::string big(MetricsHttpServer::kMaxHeaderBytes + 1024, 'a');
  client.Send("GET /metrics HTTP/1.1\r\nHost: test\r\nX-Big: " + big + "\r\n\r\n");
  const Reply reply = client.Read();
  EXPECT_FALSE(client.timed_out()) << "server neither answered nor closed";
  // Either a 431, or a close (a reset can overtake the 431 when unread bytes remain).
  if (reply.status != 0) {
    EXPECT_EQ(reply.status, 431);
    EXPECT_TRUE(client.ClosedByServer());
  }
  EXPECT_EQ(renders_.load(), 0);
}

TEST_F(MetricsHttpServerTest, OversizedBodyIsRefusedNotHung) {
  Client client(server_->port());
  client.Send("POST /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 4096\r\n\r\n" +
              std::string(4096, 'b'));
  const Reply reply = client.Read();
  EXPECT_FALSE(client.timed_out());
  if (reply.status != 0) {
    EXPECT_EQ(reply.status, 413);
  }
}

TEST_F(MetricsHttpServerTest, GarbageIs400) {
  Client client(server_->port());
  client.Send("NOT HTTP AT ALL\r\n\r\n");
  const Reply reply = client.Read();
  EXPECT_FALSE(client.timed_out());
  EXPECT_EQ(reply.status, 400);
}

TEST_F(MetricsHttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  Client client(server_->port());
  const Reply first = client.Get("/metrics");
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.body, kMetricsBody);
  const Reply second = client.Get("/metrics");
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.body, kMetricsBody);
  EXPECT_EQ(renders_.load(), 2);
}

TEST_F(MetricsHttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  Client client(server_->port());
  client.Send("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(client.Read().status, 200);
  EXPECT_EQ(client.Read().status, 404);
}

TEST_F(MetricsHttpServerTest, ConnectionCloseIsHonoured) {
  Client client(server_->port());
  const Reply reply = client.Get("/healthz", "Connection: close\r\n");
  EXPECT_EQ(reply.status, 200);
  EXPECT_TRUE(client.ClosedByServer());
}

TEST_F(MetricsHttpServerTest, Http10WithoutKeepAliveIsClosed) {
  Client client(server_->port());
  client.Send("GET /healthz HTTP/1.0\r\n\r\n");
  const Reply reply = client.Read();
  EXPECT_THAT(reply.head, StartsWith("HTTP/1.0 200"));
  EXPECT_TRUE(client.ClosedByServer());
}

TEST_F(MetricsHttpServerTest, IdleConnectionIsClosedAfterTimeout) {
  MetricsHttpServer::Options options;
  options.idle_timeout = std::chrono::milliseconds(200);
  StartServer(options);
  Client client(server_->port());
  ASSERT_TRUE(client.connected());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(client.ClosedByServer());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST_F(MetricsHttpServerTest, ThrowingRenderClosesConnectionAndServerSurvives) {
  throw_in_render_ = true;
  {
    Client client(server_->port());
    client.Send("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_TRUE(client.ClosedByServer());
  }
  // The error is counted by the coroutine's completion handler, which may run just after
  // the client sees the close.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kReceiveTimeoutSeconds);
  while (server_->internal_errors() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(server_->internal_errors(), 1u);
  Client client(server_->port());
  EXPECT_EQ(client.Get("/healthz").status, 200);
}

TEST_F(MetricsHttpServerTest, StopClosesOpenConnectionsAndReturns) {
  Client client(server_->port());
  ASSERT_EQ(client.Get("/healthz").status, 200);  // now idle on a keep-alive connection
  const auto start = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_TRUE(client.ClosedByServer());
  server_->Stop();  // idempotent
}

TEST_F(MetricsHttpServerTest, ConnectionsOverTheLimitAreClosed) {
  MetricsHttpServer::Options options;
  options.max_connections = 1;
  StartServer(options);
  Client first(server_->port());
  ASSERT_EQ(first.Get("/healthz").status, 200);  // the server now holds this connection
  Client second(server_->port());
  EXPECT_TRUE(second.ClosedByServer());
  EXPECT_EQ(first.Get("/healthz").status, 200);
}

TEST(MetricsHttpServerStartTest, RejectsBadListenAddresses) {
  auto render = [] { return std::string(); };
  auto ready = [] { return true; };
  for (const char* listen : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:x",
                             "localhost:0", ":80"}) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
        MetricsHttpServer::Start(listen, render, ready);
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << listen;
  }
}

TEST(MetricsHttpServerStartTest, AcceptsBracketedIpv6) {
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("[::1]:0", [] { return std::string(); }, [] { return true; });
  // Hosts without IPv6 cannot bind ::1; the address itself must still parse.
  if (!server.ok()) {
    EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable) << server.status();
    return;
  }
  EXPECT_NE((*server)->port(), 0);
}

TEST(MetricsHttpServerStartTest, PortInUseIsUnavailable) {
  auto render = [] { return std::string(); };
  auto ready = [] { return true; };
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> first =
      MetricsHttpServer::Start("127.0.0.1:0", render, ready);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> second =
      MetricsHttpServer::Start("127.0.0.1:" + std::to_string((*first)->port()), render, ready);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

}  // namespace
}  // namespace b2bua::metrics
