// Tests proto/dns_resolver.{h,cc}: RFC 3263 target selection, caching and timeouts, against a
// real dnsmasq serving a small zone on 127.0.0.1 (a port picked at run time). The resolver's
// io_context runs in the test thread, always bounded by a deadline.

#include "proto/dns_resolver.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <fstream>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "proto/clock.h"
#include "proto/net_address.h"
#include "proto/transport.h"
#include "tests/support/child_process.h"

namespace b2bua::proto {

// gtest prints these when an expectation on targets fails.
void PrintTo(const ResolvedTarget& target, std::ostream* os) {
  *os << target.address.ToString() << (target.transport == TransportKind::kUdp ? "/UDP" : "/TCP")
      << (target.tls ? "+TLS" : "");
}

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr const char* kDnsmasq = "/usr/sbin/dnsmasq";

ResolvedTarget Target(const char* ip_port, TransportKind transport = TransportKind::kUdp,
                      bool tls = false) {
  ResolvedTarget target;
  EXPECT_TRUE(NetAddress::ParseIpPort(ip_port, &target.address)) << ip_port;
  target.transport = transport;
  target.tls = tls;
  return target;
}

// Binds a socket of `type` to 127.0.0.1 port 0 and returns it with the chosen port.
int BindLoopback(int type, uint16_t* port) {
  int fd = ::socket(AF_INET, type, 0);
  if (fd < 0) return -1;
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(sin);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &length) != 0) {
    ::close(fd);
    return -1;
  }
  *port = ntohs(sin.sin_port);
  return fd;
}

// A port that was free a moment ago (UDP and TCP both, as dnsmasq binds both).
uint16_t PickFreePort() {
  uint16_t port = 0;
  int fd = BindLoopback(SOCK_DGRAM, &port);
  if (fd < 0) return 0;
  ::close(fd);
  return port;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A wire-format query for `name` type A, to see whether the server answers at all.
std::vector<uint8_t> BuildQuery(std::string_view name) {
  std::vector<uint8_t> query = {0x4b, 0x1d, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  while (!name.empty()) {
    size_t dot = name.find('.');
    std::string_view label = name.substr(0, dot);
    query.push_back(static_cast<uint8_t>(label.size()));
    query.insert(query.end(), label.begin(), label.end());
    name = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
  }
  query.insert(query.end(), {0, 0, 1, 0, 1});
  return query;
}

// One dnsmasq process serving the test zone, killed by Stop() (and by the kernel if the
// test binary dies, through PR_SET_PDEATHSIG).
class DnsmasqServer {
 public:
  ~DnsmasqServer() {
    Stop();
    if (!dir_.empty()) {
      ::unlink((dir_ + "/dnsmasq.log").c_str());
      ::unlink((dir_ + "/dnsmasq.pid").c_str());
      ::rmdir(dir_.c_str());
    }
  }

  // Starts dnsmasq and waits (bounded) until it answers. On failure, error() says why.
  bool Start() {
    char dir_template[] = "/tmp/dns_resolver_test.XXXXXX";
    if (::mkdtemp(dir_template) == nullptr) return Fail("mkdtemp failed");
    dir_ = dir_template;
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = PickFreePort();
      if (port_ == 0) return Fail("cannot pick a free port");
      if (Launch() && WaitUntilAnswering()) return true;
      Stop();
    }
    return false;
  }

  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = steady_clock::now() + seconds(2);
    while (::waitpid(pid_, nullptr, WNOHANG) == 0) {
      if (steady_clock::now() >= deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    pid_ = -1;
  }

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& error() const { return error_; }

 private:
  bool Fail(std::string why) {
    error_ = std::move(why);
    return false;
  }

  std::vector<std::string> Arguments() const {
    std::vector<std::string> args = {
        kDnsmasq,
        "--no-daemon",
        "--port=" + std::to_string(port_),
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--conf-file=/dev/null",
        "--pid-file=" + dir_ + "/dnsmasq.pid",
        "--log-queries",
        // Names under example.test that are not configured get NXDOMAIN, not REFUSED.
        "--local=/example.test/",
        // Answers from configured records would otherwise carry TTL 0 (uncacheable).
        "--local-ttl=300",
        "--host-record=a.example.test,127.0.0.2",
        "--host-record=b.example.test,127.0.0.3,::1",
        "--host-record=c.example.test,127.0.0.4",
        "--host-record=ttl.example.test,127.0.0.9,5",
        // Priority 10: a and c, drawn by weight; priority 20: b (IPv4 and IPv6).
        "--srv-host=_sip._udp.svc.example.test,a.example.test,5070,10,60",
        "--srv-host=_sip._udp.svc.example.test,b.example.test,5072,20,10",
        "--srv-host=_sip._udp.svc.example.test,c.example.test,5074,10,40",
        "--srv-host=_sip._tcp.svc.example.test,b.example.test,5080,10,0",
        "--srv-host=_sips._tcp.svc.example.test,a.example.test,5061,10,0",
        // An SRV record whose target does not resolve.
        "--srv-host=_sip._udp.broken.example.test,nowhere.example.test,5060,10,0",
        // Order 5 (SCTP) comes first but is not a transport we use; then UDP, TCP, TLS.
        "--naptr-record=naptr.example.test,5,50,s,SIP+D2S,,_sip._sctp.svc.example.test",
        "--naptr-record=naptr.example.test,10,50,s,SIP+D2U,,_sip._udp.svc.example.test",
        "--naptr-record=naptr.example.test,20,50,s,SIP+D2T,,_sip._tcp.svc.example.test",
        "--naptr-record=naptr.example.test,30,50,s,SIPS+D2T,,_sips._tcp.svc.example.test",
    };
    // As root, dnsmasq would switch to "nobody"; staying root keeps the pid file writable.
    if (::geteuid() == 0) {
      args.push_back("--user=root");
      args.push_back("--group=root");
    }
    return args;
  }

  bool Launch() {
    log_path_ = dir_ + "/dnsmasq.log";
    std::vector<std::string> args = Arguments();
    pid_ = test::SpawnChild(kDnsmasq, std::move(args), log_path_);
    if (pid_ < 0) return Fail("fork failed");
    return true;
  }

  bool WaitUntilAnswering() {
    uint16_t local_port = 0;
    int fd = BindLoopback(SOCK_DGRAM, &local_port);
    if (fd < 0) return Fail("cannot open a probe socket");
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    server.sin_port = htons(port_);
    const std::vector<uint8_t> query = BuildQuery("a.example.test");
    bool answered = false;
    const auto deadline = steady_clock::now() + seconds(5);
    while (!answered && steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ::close(fd);
        return Fail("dnsmasq exited: " + ReadFile(log_path_));
      }
      ::sendto(fd, query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&server),
               sizeof(server));
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, 100) == 1 && (pfd.revents & POLLIN) != 0) {
        uint8_t reply[512];
        answered = ::recv(fd, reply, sizeof(reply), 0) > 0;
      } else {
        std::this_thread::sleep_for(milliseconds(20));
      }
    }
    ::close(fd);
    return answered || Fail("dnsmasq did not answer within 5 s: " + ReadFile(log_path_));
  }

  std::string dir_;
  std::string log_path_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string error_;
};

// What one Resolve() produced.
struct Outcome {
  bool called = false;
  bool inline_call = false;  // called before Resolve() returned
  int calls = 0;
  ResolvedTargets result;
};

class SipResolverTest : public ::testing::Test {
 protected:
  SipResolverOptions Options(std::string server) const {
    SipResolverOptions options;
    options.dns_server = std::move(server);
    options.query_timeout = milliseconds(1000);
    options.tries = 2;
    options.cache_entries = 64;
    options.random_seed = 42;
    return options;
  }

  void MakeResolver(SipResolverOptions options) {
    absl::StatusOr<std::unique_ptr<SipResolver>> created =
        SipResolver::Create(io_, clock_, std::move(options));
    ASSERT_TRUE(created.ok()) << created.status();
    resolver_ = std::move(*created);
  }

  // Runs the io_context until `done()` holds or `limit` passes; false on the deadline.
  template <typename Predicate>
  bool RunUntil(Predicate done, steady_clock::duration limit = seconds(5)) {
    const auto deadline = steady_clock::now() + limit;
    while (!done()) {
      if (steady_clock::now() >= deadline) return false;
      io_.restart();
      if (io_.run_one_for(milliseconds(20)) == 0 && io_.stopped()) {
        std::this_thread::sleep_for(milliseconds(1));
      }
    }
    return true;
  }

  // Resolves and runs the io_context until the callback (bounded by `limit`).
  std::shared_ptr<Outcome> StartResolve(std::string_view host, uint16_t port,
                                        std::optional<TransportKind> transport, bool sips) {
    auto outcome = std::make_shared<Outcome>();
    auto returned = std::make_shared<bool>(false);
    resolver_->Resolve(host, port, transport, sips,
                       [outcome, returned](const ResolvedTargets& result) {
                         outcome->called = true;
                         outcome->inline_call = !*returned;
                         ++outcome->calls;
                         outcome->result = result;
                       });
    *returned = true;
    return outcome;
  }

  Outcome Resolve(std::string_view host, uint16_t port = 0,
                  std::optional<TransportKind> transport = std::nullopt, bool sips = false,
                  steady_clock::duration limit = seconds(5)) {
    std::shared_ptr<Outcome> outcome = StartResolve(host, port, transport, sips);
    EXPECT_TRUE(RunUntil([&] { return outcome->called; }, limit)) << "no answer for " << host;
    EXPECT_LE(outcome->calls, 1);
    return *outcome;
  }

  boost::asio::io_context io_;
  FakeClock clock_;
  std::unique_ptr<SipResolver> resolver_;
};

// Shares one dnsmasq among the tests that need it.
class SipResolverDnsTest : public SipResolverTest {
 protected:
  static void SetUpTestSuite() {
    if (::access(kDnsmasq, X_OK) != 0) return;
    server_ = new DnsmasqServer();
    if (!server_->Start()) start_error_ = new std::string(server_->error());
  }

  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
  }

  void SetUp() override {
    if (server_ == nullptr) GTEST_SKIP() << kDnsmasq << " is not installed (dnsmasq-base)";
    ASSERT_EQ(start_error_, nullptr) << "dnsmasq did not start: " << *start_error_;
    MakeResolver(Options(server_->address()));
  }

  static DnsmasqServer* server_;
  static std::string* start_error_;
};

DnsmasqServer* SipResolverDnsTest::server_ = nullptr;
std::string* SipResolverDnsTest::start_error_ = nullptr;

// ---------------------------------------------------------------------------------------
// RFC 2782 ordering on its own.

TEST(OrderSrvRecordsTest, SortsByPriorityFirst) {
  std::mt19937_64 rng(7);
  std::vector<SrvRecord> records = {
      {"c", 30, 100, 1}, {"a", 10, 0, 1}, {"b", 20, 5, 1}, {"d", 10, 0, 2}};
  OrderSrvRecords(&records, rng);
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[0].priority, 10);
  EXPECT_EQ(records[1].priority, 10);
  EXPECT_EQ(records[2].target, "b");
  EXPECT_EQ(records[3].target, "c");
}

TEST(OrderSrvRecordsTest, DrawsByWeightWithinAPriority) {
  std::mt19937_64 rng(12345);
  int heavy_first = 0;
  int zero_first = 0;
  constexpr int kRounds = 10000;
  for (int i = 0; i < kRounds; ++i) {
    std::vector<SrvRecord> records = {{"zero", 10, 0, 1}, {"light", 10, 1, 1}, {"heavy", 10, 3, 1}};
    OrderSrvRecords(&records, rng);
    ASSERT_EQ(records.size(), 3u);
    if (records[0].target == "heavy") ++heavy_first;
    if (records[0].target == "zero") ++zero_first;
  }
  // P(heavy first) = 3/5 (draws 2..4 of 0..4); P(zero first) = 1/5 (a draw of 0).
  EXPECT_NEAR(heavy_first / double{kRounds}, 0.6, 0.03);
  EXPECT_NEAR(zero_first / double{kRounds}, 0.2, 0.03);
}

TEST(OrderSrvRecordsTest, SameSeedGivesSameOrderWhateverTheInputOrder) {
  std::vector<SrvRecord> records;
  for (int i = 0; i < 8; ++i) records.push_back({"t" + std::to_string(i), 1, 10, 1});
  std::vector<SrvRecord> first = records;
  // Answers may list the records in any order (servers rotate them).
  std::vector<SrvRecord> second(records.rbegin(), records.rend());
  std::mt19937_64 rng_a(99);
  std::mt19937_64 rng_b(99);
  OrderSrvRecords(&first, rng_a);
  OrderSrvRecords(&second, rng_b);
  EXPECT_EQ(first, second);
}

// ---------------------------------------------------------------------------------------
// Without DNS.

TEST_F(SipResolverTest, CreateRejectsMalformedServer) {
  SipResolverOptions options = Options("not-an-address");
  absl::StatusOr<std::unique_ptr<SipResolver>> created = SipResolver::Create(io_, clock_, options);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  options.dns_server = "127.0.0.1";  // no port
  EXPECT_FALSE(SipResolver::Create(io_, clock_, options).ok());
}

TEST_F(SipResolverTest, NumericIpv4HostNeedsNoDns) {
  // Nothing listens at this server: any query would time out.
  MakeResolver(Options("127.0.0.1:9"));
  Outcome plain = Resolve("192.0.2.10");
  EXPECT_TRUE(plain.inline_call);
  EXPECT_EQ(plain.result.status, ResolveStatus::kOk);
  EXPECT_EQ(plain.result.targets, std::vector<ResolvedTarget>{Target("192.0.2.10:5060")});

  Outcome tcp = Resolve("192.0.2.10", 5080, TransportKind::kTcp);
  EXPECT_EQ(tcp.result.targets,
            std::vector<ResolvedTarget>{Target("192.0.2.10:5080", TransportKind::kTcp)});

  Outcome sips = Resolve("192.0.2.10", 0, std::nullopt, /*sips=*/true);
  EXPECT_EQ(sips.result.targets,
            std::vector<ResolvedTarget>{Target("192.0.2.10:5061", TransportKind::kTcp, true)});
  EXPECT_EQ(resolver_->counters().queries_sent, 0u);
}

TEST_F(SipResolverTest, NumericIpv6HostNeedsNoDns) {
  MakeResolver(Options("127.0.0.1:9"));
  Outcome bracketed = Resolve("[2001:db8::1]", 5070);
  EXPECT_TRUE(bracketed.inline_call);
  EXPECT_EQ(bracketed.result.targets, std::vector<ResolvedTarget>{Target("[2001:db8::1]:5070")});
  Outcome bare = Resolve("2001:db8::1");
  EXPECT_EQ(bare.result.targets, std::vector<ResolvedTarget>{Target("[2001:db8::1]:5060")});
  EXPECT_EQ(resolver_->counters().queries_sent, 0u);
}

TEST_F(SipResolverTest, InvalidHostIsAnErrorAtOnce) {
  MakeResolver(Options("127.0.0.1:9"));
  Outcome outcome = Resolve("bad host");
  EXPECT_TRUE(outcome.inline_call);
  EXPECT_EQ(outcome.result.status, ResolveStatus::kError);
  EXPECT_EQ(resolver_->counters().queries_sent, 0u);
  EXPECT_EQ(resolver_->counters().failures, 1u);
}

TEST_F(SipResolverTest, SilentServerTimesOutWithinTheTimeout) {
  // A bound socket nobody reads: queries vanish, no ICMP comes back.
  uint16_t port = 0;
  int silent = BindLoopback(SOCK_DGRAM, &port);
  ASSERT_GE(silent, 0);
  SipResolverOptions options = Options("127.0.0.1:" + std::to_string(port));
  options.query_timeout = milliseconds(300);
  options.tries = 1;
  MakeResolver(options);

  const auto start = steady_clock::now();
  Outcome outcome = Resolve("a.example.test", 5060, std::nullopt, false, seconds(3));
  const auto elapsed = steady_clock::now() - start;
  ::close(silent);
  EXPECT_FALSE(outcome.inline_call);
  EXPECT_EQ(outcome.result.status, ResolveStatus::kTimeout);
  EXPECT_TRUE(outcome.result.targets.empty());
  EXPECT_GE(elapsed, milliseconds(250));
  EXPECT_LT(elapsed, milliseconds(1500));
  EXPECT_EQ(resolver_->counters().query_timeouts, 2u);  // A and AAAA
  EXPECT_EQ(resolver_->counters().failures, 1u);
}

TEST_F(SipResolverTest, ClosedPortCountsAsTimeout) {
  SipResolverOptions options = Options("127.0.0.1:" + std::to_string(PickFreePort()));
  options.query_timeout = milliseconds(300);
  options.tries = 1;
  MakeResolver(options);
  const auto start = steady_clock::now();
  Outcome outcome = Resolve("a.example.test", 5060, std::nullopt, false, seconds(3));
  EXPECT_EQ(outcome.result.status, ResolveStatus::kTimeout);
  EXPECT_LT(steady_clock::now() - start, milliseconds(1500));
}

TEST_F(SipResolverTest, DestroyingTheResolverDropsPendingCallbacks) {
  uint16_t port = 0;
  int silent = BindLoopback(SOCK_DGRAM, &port);
  ASSERT_GE(silent, 0);
  MakeResolver(Options("127.0.0.1:" + std::to_string(port)));
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  bool called = false;
  resolver_->Resolve(
      "a.example.test", 5060, std::nullopt, false,
      [token = std::move(token), &called](const ResolvedTargets&) { called = true; });
  io_.restart();
  io_.run_for(milliseconds(50));
  resolver_.reset();
  // The callback (and what it captured) died inside the destructor.
  EXPECT_TRUE(watch.expired());
  // Handlers the resolver left queued run harmlessly.
  io_.restart();
  io_.run_for(milliseconds(100));
  ::close(silent);
  EXPECT_FALSE(called);
}

// ---------------------------------------------------------------------------------------
// Against dnsmasq.

TEST_F(SipResolverDnsTest, ExplicitPortUsesAddressRecordsOnly) {
  Outcome outcome = Resolve("a.example.test", 5080);
  EXPECT_FALSE(outcome.inline_call);
  EXPECT_EQ(outcome.result.status, ResolveStatus::kOk);
  EXPECT_EQ(outcome.result.targets, std::vector<ResolvedTarget>{Target("127.0.0.2:5080")});
  // A and AAAA, no NAPTR, no SRV.
  EXPECT_EQ(resolver_->counters().queries_sent, 2u);

  Outcome dual = Resolve("B.Example.Test.", 5090, TransportKind::kTcp);
  EXPECT_EQ(dual.result.targets,
            (std::vector<ResolvedTarget>{Target("127.0.0.3:5090", TransportKind::kTcp),
                                         Target("[::1]:5090", TransportKind::kTcp)}));
}

TEST_F(SipResolverDnsTest, PreferIpv6PutsAaaaFirst) {
  SipResolverOptions options = Options(server_->address());
  options.prefer_ipv6 = true;
  MakeResolver(options);
  Outcome outcome = Resolve("b.example.test", 5060);
  EXPECT_EQ(outcome.result.targets,
            (std::vector<ResolvedTarget>{Target("[::1]:5060"), Target("127.0.0.3:5060")}));
}

TEST_F(SipResolverDnsTest, ExplicitTransportUsesSrvInPriorityOrder) {
  Outcome outcome = Resolve("svc.example.test", 0, TransportKind::kUdp);
  ASSERT_EQ(outcome.result.status, ResolveStatus::kOk);
  const std::vector<ResolvedTarget>& targets = outcome.result.targets;
  // Every SRV target, each with all its addresses: the whole failover list.
  ASSERT_EQ(targets.size(), 4u);
  // Priority 10 (a and c, in weighted random order) before priority 20 (b, IPv4 first).
  std::vector<ResolvedTarget> first_two = {targets[0], targets[1]};
  std::vector<ResolvedTarget> a_then_c = {Target("127.0.0.2:5070"), Target("127.0.0.4:5074")};
  std::vector<ResolvedTarget> c_then_a = {Target("127.0.0.4:5074"), Target("127.0.0.2:5070")};
  EXPECT_TRUE(first_two == a_then_c || first_two == c_then_a);
  EXPECT_EQ(targets[2], Target("127.0.0.3:5072"));
  EXPECT_EQ(targets[3], Target("[::1]:5072"));
  // SRV, then A and AAAA of three targets; no NAPTR.
  EXPECT_EQ(resolver_->counters().queries_sent, 7u);
}

TEST_F(SipResolverDnsTest, ExplicitTcpAndSipsUseTheirSrvNames) {
  Outcome tcp = Resolve("svc.example.test", 0, TransportKind::kTcp);
  EXPECT_EQ(tcp.result.targets,
            (std::vector<ResolvedTarget>{Target("127.0.0.3:5080", TransportKind::kTcp),
                                         Target("[::1]:5080", TransportKind::kTcp)}));
  Outcome sips = Resolve("svc.example.test", 0, TransportKind::kTcp, /*sips=*/true);
  EXPECT_EQ(sips.result.targets,
            std::vector<ResolvedTarget>{Target("127.0.0.2:5061", TransportKind::kTcp, true)});
}

TEST_F(SipResolverDnsTest, SrvWeightsFollowTheSeed) {
  // Two resolvers seeded alike order the priority-10 pair alike.
  Outcome first = Resolve("svc.example.test", 0, TransportKind::kUdp);
  MakeResolver(Options(server_->address()));
  Outcome second = Resolve("svc.example.test", 0, TransportKind::kUdp);
  EXPECT_EQ(first.result.targets, second.result.targets);
}

TEST_F(SipResolverDnsTest, NaptrLeadsToSrvThenAddresses) {
  Outcome outcome = Resolve("naptr.example.test");
  ASSERT_EQ(outcome.result.status, ResolveStatus::kOk);
  const std::vector<ResolvedTarget>& targets = outcome.result.targets;
  // SIP+D2S (order 5) is skipped; then UDP (order 10), TCP (20), TLS (30).
  ASSERT_EQ(targets.size(), 7u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(targets[i].transport, TransportKind::kUdp) << i;
  EXPECT_EQ(targets[2], Target("127.0.0.3:5072"));
  EXPECT_EQ(targets[3], Target("[::1]:5072"));
  EXPECT_EQ(targets[4], Target("127.0.0.3:5080", TransportKind::kTcp));
  EXPECT_EQ(targets[5], Target("[::1]:5080", TransportKind::kTcp));
  EXPECT_EQ(targets[6], Target("127.0.0.2:5061", TransportKind::kTcp, true));
}

TEST_F(SipResolverDnsTest, SipsUriUsesOnlySipsNaptr) {
  Outcome outcome = Resolve("naptr.example.test", 0, std::nullopt, /*sips=*/true);
  EXPECT_EQ(outcome.result.targets,
            std::vector<ResolvedTarget>{Target("127.0.0.2:5061", TransportKind::kTcp, true)});
}

TEST_F(SipResolverDnsTest, WithoutNaptrQueriesUdpAndTcpSrv) {
  Outcome outcome = Resolve("svc.example.test");
  ASSERT_EQ(outcome.result.status, ResolveStatus::kOk);
  const std::vector<ResolvedTarget>& targets = outcome.result.targets;
  ASSERT_EQ(targets.size(), 6u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(targets[i].transport, TransportKind::kUdp) << i;
  EXPECT_EQ(targets[4], Target("127.0.0.3:5080", TransportKind::kTcp));
  EXPECT_EQ(targets[5], Target("[::1]:5080", TransportKind::kTcp));
}

TEST_F(SipResolverDnsTest, WithoutNaptrOrSrvUsesAddressOnDefaultPort) {
  Outcome sip = Resolve("a.example.test");
  EXPECT_EQ(sip.result.status, ResolveStatus::kOk);
  EXPECT_EQ(sip.result.targets, std::vector<ResolvedTarget>{Target("127.0.0.2:5060")});
  Outcome sips = Resolve("a.example.test", 0, std::nullopt, /*sips=*/true);
  EXPECT_EQ(sips.result.targets,
            std::vector<ResolvedTarget>{Target("127.0.0.2:5061", TransportKind::kTcp, true)});
}

TEST_F(SipResolverDnsTest, NxDomainIsNotFound) {
  Outcome with_port = Resolve("missing.example.test", 5060);
  EXPECT_EQ(with_port.result.status, ResolveStatus::kNotFound);
  EXPECT_TRUE(with_port.result.targets.empty());
  Outcome full_chain = Resolve("missing.example.test");
  EXPECT_EQ(full_chain.result.status, ResolveStatus::kNotFound);
  EXPECT_EQ(resolver_->counters().failures, 2u);
}

TEST_F(SipResolverDnsTest, SrvTargetWithoutAddressIsNotFound) {
  Outcome outcome = Resolve("broken.example.test", 0, TransportKind::kUdp);
  EXPECT_EQ(outcome.result.status, ResolveStatus::kNotFound);
}

TEST_F(SipResolverDnsTest, SecondResolveIsACacheHit) {
  Outcome first = Resolve("naptr.example.test");
  ASSERT_EQ(first.result.status, ResolveStatus::kOk);
  EXPECT_FALSE(first.inline_call);
  const ResolverCounters before = resolver_->counters();
  Outcome second = Resolve("naptr.example.test");
  // Answered from the cache: inline, and no query sent.
  EXPECT_TRUE(second.inline_call);
  EXPECT_EQ(second.result.status, ResolveStatus::kOk);
  EXPECT_EQ(second.result.targets.size(), first.result.targets.size());
  EXPECT_EQ(resolver_->counters().queries_sent, before.queries_sent);
  EXPECT_GT(resolver_->counters().cache_hits, before.cache_hits);
}

TEST_F(SipResolverDnsTest, NegativeAnswersAreCached) {
  Resolve("missing.example.test", 5060);
  const uint64_t sent = resolver_->counters().queries_sent;
  Outcome again = Resolve("missing.example.test", 5060);
  EXPECT_TRUE(again.inline_call);
  EXPECT_EQ(again.result.status, ResolveStatus::kNotFound);
  EXPECT_EQ(resolver_->counters().queries_sent, sent);
  // The default negative TTL is 30 s.
  clock_.Advance(seconds(31));
  Outcome later = Resolve("missing.example.test", 5060);
  EXPECT_FALSE(later.inline_call);
  EXPECT_EQ(resolver_->counters().queries_sent, sent + 2);
}

TEST_F(SipResolverDnsTest, TtlExpiryForcesARequery) {
  // ttl.example.test has an A record with TTL 5 s and no AAAA (cached negative, 30 s).
  Outcome first = Resolve("ttl.example.test", 5060);
  ASSERT_EQ(first.result.status, ResolveStatus::kOk);
  EXPECT_EQ(resolver_->counters().queries_sent, 2u);

  clock_.Advance(seconds(4));
  Outcome fresh = Resolve("ttl.example.test", 5060);
  EXPECT_TRUE(fresh.inline_call);
  EXPECT_EQ(resolver_->counters().queries_sent, 2u);

  clock_.Advance(seconds(2));  // 6 s: the A record expired, the negative AAAA did not
  Outcome expired = Resolve("ttl.example.test", 5060);
  EXPECT_FALSE(expired.inline_call);
  EXPECT_EQ(expired.result.targets, std::vector<ResolvedTarget>{Target("127.0.0.9:5060")});
  EXPECT_EQ(resolver_->counters().queries_sent, 3u);

  clock_.Advance(seconds(30));  // both expired
  Resolve("ttl.example.test", 5060);
  EXPECT_EQ(resolver_->counters().queries_sent, 5u);
}

TEST_F(SipResolverDnsTest, CacheIsBounded) {
  SipResolverOptions options = Options(server_->address());
  options.cache_entries = 2;
  MakeResolver(options);
  Resolve("a.example.test", 5060);
  Resolve("b.example.test", 5060);
  Resolve("c.example.test", 5060);
  EXPECT_LE(resolver_->cache_size(), 2u);
  EXPECT_EQ(resolver_->counters().cache_evictions, 4u);
  // The least recently used entries went first: c is still cached.
  const uint64_t sent = resolver_->counters().queries_sent;
  EXPECT_TRUE(Resolve("c.example.test", 5060).inline_call);
  EXPECT_EQ(resolver_->counters().queries_sent, sent);
}

TEST_F(SipResolverDnsTest, IdenticalLookupsInFlightShareOneQuery) {
  std::shared_ptr<Outcome> one = StartResolve("b.example.test", 5060, std::nullopt, false);
  std::shared_ptr<Outcome> two = StartResolve("b.example.test", 5070, std::nullopt, false);
  EXPECT_FALSE(one->called);
  EXPECT_FALSE(two->called);
  ASSERT_TRUE(RunUntil([&] { return one->called && two->called; }));
  EXPECT_EQ(resolver_->counters().queries_sent, 2u);
  EXPECT_EQ(resolver_->counters().coalesced, 2u);
  EXPECT_EQ(one->result.targets.size(), 2u);
  EXPECT_EQ(two->result.targets.front(), Target("127.0.0.3:5070"));
}

TEST_F(SipResolverDnsTest, CallbackMayDestroyTheResolver) {
  bool called = false;
  resolver_->Resolve("a.example.test", 5060, std::nullopt, false,
                     [this, &called](const ResolvedTargets& result) {
                       called = true;
                       EXPECT_EQ(result.status, ResolveStatus::kOk);
                       resolver_.reset();
                     });
  EXPECT_TRUE(RunUntil([&] { return called; }));
  EXPECT_EQ(resolver_, nullptr);
  io_.restart();
  io_.run_for(milliseconds(50));
}

TEST_F(SipResolverDnsTest, CallbackMayResolveAgain) {
  std::optional<ResolvedTargets> inner;
  resolver_->Resolve("a.example.test", 5060, std::nullopt, false,
                     [this, &inner](const ResolvedTargets&) {
                       resolver_->Resolve("c.example.test", 5060, std::nullopt, false,
                                          [&inner](const ResolvedTargets& r) { inner = r; });
                     });
  ASSERT_TRUE(RunUntil([&] { return inner.has_value(); }));
  EXPECT_EQ(inner->targets, std::vector<ResolvedTarget>{Target("127.0.0.4:5060")});
}

}  // namespace
}  // namespace b2bua::proto
