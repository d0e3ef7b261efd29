// Tests b2bua/redis_dialog_store.{h,cc} against a real redis-server that each test starts on
// a free loopback port, in a temp dir, without persistence, and kills, stops or restarts.
// The stores' io_context runs on the test thread, always bounded by a wall-clock deadline.

#include "b2bua/redis_dialog_store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "b2bua/dialog_record.h"
#include "b2bua/dialog_store.h"
#include "gtest/gtest.h"
#include "proto/net_address.h"
#include "proto/transport.h"
#include "tests/support/child_process.h"

namespace b2bua {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr const char* kRedisServer = "/usr/bin/redis-server";
constexpr std::string_view kPrefix = "test:dialog:";

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

// A blocking client (hiredis's sync API, 2 s timeouts) for what the test checks or plants
// behind the store's back.
class RawClient {
 public:
  explicit RawClient(uint16_t port) {
    const timeval timeout{2, 0};
    context_ = redisConnectWithTimeout("127.0.0.1", port, timeout);
    if (context_ != nullptr && context_->err == 0) redisSetTimeout(context_, timeout);
  }
  ~RawClient() {
    if (context_ != nullptr) redisFree(context_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool ok() const { return context_ != nullptr && context_->err == 0; }

  ReplyPtr Command(std::initializer_list<std::string_view> args) {
    if (!ok()) return nullptr;
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (std::string_view arg : args) {
      argv.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    return ReplyPtr(static_cast<redisReply*>(
        redisCommandArgv(context_, static_cast<int>(argv.size()), argv.data(), lengths.data())));
  }

  // The reply as text: the string, "(nil)", "(error) ...", or the integer.
  std::string Text(std::initializer_list<std::string_view> args) {
    ReplyPtr reply = Command(args);
    if (reply == nullptr) return "(no reply)";
    switch (reply->type) {
      case REDIS_REPLY_STRING:
      case REDIS_REPLY_STATUS:
        return std::string(reply->str, reply->len);
      case REDIS_REPLY_ERROR:
        return "(error) " + std::string(reply->str, reply->len);
      case REDIS_REPLY_INTEGER:
        return std::to_string(reply->integer);
      case REDIS_REPLY_NIL:
        return "(nil)";
      default:
        return "(other)";
    }
  }

  long long Integer(std::initializer_list<std::string_view> args) {
    ReplyPtr reply = Command(args);
    return reply != nullptr && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1000;
  }

 private:
  redisContext* context_ = nullptr;
};

// A port that was free a moment ago.
uint16_t PickFreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(sin);
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &length) == 0)
    port = ntohs(sin.sin_port);
  ::close(fd);
  return port;
}

// One redis-server child, killed by the destructor (and by the kernel if the test binary
// dies, through PR_SET_PDEATHSIG).
class RedisServer {
 public:
  ~RedisServer() {
    Kill();
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  // Starts it on a free port and waits (bounded) until it answers PING.
  bool Start() {
    char dir_template[] = "/tmp/redis_dialog_store_test.XXXXXX";
    if (::mkdtemp(dir_template) == nullptr) return Fail("mkdtemp failed");
    dir_ = dir_template;
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = PickFreePort();
      if (port_ == 0) return Fail("cannot pick a free port");
      if (Launch() && WaitUntilAnswering()) return true;
      Kill();
    }
    return false;
  }

  // Starts it again on the same port, after Kill().
  bool Restart() { return Launch() && WaitUntilAnswering(); }

  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // SIGSTOP: the kernel still accepts connections and buffers commands, nobody answers.
  bool Pause() {
    if (pid_ <= 0 || ::kill(pid_, SIGSTOP) != 0) return false;
    int status = 0;
    return ::waitpid(pid_, &status, WUNTRACED) == pid_ && WIFSTOPPED(status);
  }
  void Resume() {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
  }

  uint16_t port() const { return port_; }
  const std::string& error() const { return error_; }

 private:
  bool Fail(std::string why) {
    error_ = std::move(why);
    return false;
  }

  bool Launch() {
    // No persistence: nothing outlives the test's temp dir.
    std::vector<std::string> args = {kRedisServer, "--port", std::to_string(port_),
                                     "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                     "--dir", dir_, "--logfile", dir_ + "/redis.log",
                                     "--daemonize", "no"};
    pid_ = test::SpawnChild(kRedisServer, std::move(args));
    if (pid_ < 0) return Fail("fork failed");
    return true;
  }

  bool WaitUntilAnswering() {
    const auto deadline = steady_clock::now() + seconds(5);
    while (steady_clock::now() < deadline) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return Fail("redis-server exited (see " + dir_ + "/redis.log)");
      }
      RawClient client(port_);
      if (client.ok() && client.Text({"PING"}) == "PONG") return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return Fail("redis-server did not answer within 5 s");
  }

  std::string dir_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string error_;
};

proto::Peer MakePeer(const char* ip, uint16_t port, proto::TransportKind transport) {
  proto::Peer peer;
  EXPECT_TRUE(proto::NetAddress::ParseIp(ip, port, &peer.address));
  peer.transport = transport;
  return peer;
}

// A confirmed call as `instance` replicates it; `call` makes the key unique.
DialogRecord MakeRecord(std::string_view instance, uint64_t call) {
  DialogRecord record;
  record.key = DialogKey(instance, 0x5eed, 1, call);
  record.owner = std::string(instance);
  record.caller.call_id = "a84b4c76e66710@pc33.example.com";
  record.caller.local_party = "<sip:bob@biloxi.example.com>;tag=b2b-" + std::to_string(call);
  record.caller.remote_party = "\"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774";
  record.caller.remote_target = "sip:alice@192.0.2.4:5062;transport=udp";
  record.caller.route_set = {"<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"};
  record.caller.local_cseq = 1;
  record.caller.remote_cseq = 314159;
  record.caller.peer = MakePeer("192.0.2.4", 5062, proto::TransportKind::kUdp);
  record.callee.call_id = "b2b-" + std::to_string(call) + "@10.0.0.2";
  record.callee.local_party = "<sip:alice@atlanta.example.com>;tag=b2b-from";
  record.callee.remote_party = "<sip:bob@biloxi.example.com>;tag=a6c85cf";
  record.callee.remote_target = "sip:bob@[2001:db8::9]:5060;transport=tcp";
  record.callee.local_cseq = 2;
  record.callee.remote_cseq = 0;
  record.callee.peer = MakePeer("2001:db8::9", 5060, proto::TransportKind::kTcp);
  record.caller_invite_cseq = 314159;
  record.callee_invite_cseq = 1;
  record.ends_at_unix_ms = 1'700'000'360'000;
  record.started_at_unix_ms = 1'700'000'000'000;
  return record;
}

// What one Adopt() produced.
struct AdoptResult {
  int calls = 0;
  bool inline_call = false;  // called before Adopt() returned
  AdoptOutcome outcome = AdoptOutcome::kUnavailable;
  std::optional<DialogRecord> record;
};

const char* OutcomeName(AdoptOutcome outcome) {
  switch (outcome) {
    case AdoptOutcome::kAdopted:
      return "kAdopted";
    case AdoptOutcome::kNotFound:
      return "kNotFound";
    case AdoptOutcome::kOwnedByOther:
      return "kOwnedByOther";
    case AdoptOutcome::kUnavailable:
      return "kUnavailable";
  }
  return "?";
}

class RedisDialogStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // hiredis writes with write(2): a Redis that died must not kill the test (main.cc
    // ignores SIGPIPE the same way).
    ::signal(SIGPIPE, SIG_IGN);
    ASSERT_TRUE(server_.Start()) << server_.error();
  }

  RedisStoreSettings Settings() const {
    RedisStoreSettings settings;
    settings.host = "127.0.0.1";
    settings.port = server_.port();
    settings.key_prefix = std::string(kPrefix);
    settings.command_timeout = milliseconds(500);
    // Short, so that reconnecting after a restart does not dominate the test's time.
    settings.reconnect_min = milliseconds(20);
    settings.reconnect_max = milliseconds(200);
    return settings;
  }

  // A started store, connected (asserted by the caller through connected()).
  std::unique_ptr<RedisDialogStore> ConnectedStore(
      RedisStoreStats* stats, std::optional<RedisStoreSettings> settings = {}) {
    auto store = std::make_unique<RedisDialogStore>(io_, settings.value_or(Settings()), stats);
    absl::Status started = store->Start();
    EXPECT_TRUE(started.ok()) << started;
    EXPECT_TRUE(RunUntil([&] { return store->connected(); })) << "never connected";
    return store;
  }

  // Runs the io_context until `done()` holds or `limit` passes; false on the deadline.
  // `*handlers` (if given) receives the number of handlers that ran.
  template <typename Predicate>
  bool RunUntil(Predicate done, steady_clock::duration limit = seconds(5),
                size_t* handlers = nullptr) {
    const auto deadline = steady_clock::now() + limit;
    while (!done()) {
      if (steady_clock::now() >= deadline) return false;
      io_.restart();
      const size_t ran = io_.run_one_for(milliseconds(20));
      if (handlers != nullptr) *handlers += ran;
      // Nothing to wait for at all: do not spin.
      if (ran == 0 && io_.stopped()) std::this_thread::sleep_for(milliseconds(1));
    }
    return true;
  }

  void RunFor(steady_clock::duration duration) {
    RunUntil([] { return false; }, duration);
  }

  std::shared_ptr<AdoptResult> StartAdopt(RedisDialogStore& store, std::string_view key,
                                          std::string_view self,
                                          proto::Duration ttl = seconds(30)) {
    auto result = std::make_shared<AdoptResult>();
    auto returned = std::make_shared<bool>(false);
    store.Adopt(key, self, ttl,
                [result, returned](AdoptOutcome outcome, std::optional<DialogRecord> record) {
                  ++result->calls;
                  result->inline_call = !*returned;
                  result->outcome = outcome;
                  result->record = std::move(record);
                });
    *returned = true;
    return result;
  }

  // Adopts and runs the io_context until `done` (bounded).
  AdoptResult Adopt(RedisDialogStore& store, std::string_view key, std::string_view self,
                    proto::Duration ttl = seconds(30)) {
    std::shared_ptr<AdoptResult> result = StartAdopt(store, key, self, ttl);
    EXPECT_TRUE(RunUntil([&] { return result->calls > 0; })) << "no outcome for " << key;
    EXPECT_EQ(result->calls, 1);
    EXPECT_FALSE(result->inline_call);
    return *result;
  }

  // Saves and runs until Redis answered it (the reply moves the round-trip histogram).
  void SaveAndWait(RedisDialogStore& store, const RedisStoreStats& stats,
                   const DialogRecord& record, proto::Duration ttl = seconds(30)) {
    const uint64_t before = stats.round_trip_count();
    store.Save(record, ttl);
    EXPECT_TRUE(RunUntil([&] { return stats.round_trip_count() > before; })) << "no reply";
  }

  static std::string Key(std::string_view key) { return std::string(kPrefix) + std::string(key); }

  static uint64_t Failures(const RedisStoreStats& stats) {
    return stats.failure(RedisFailure::kDisconnected) + stats.failure(RedisFailure::kTimeout) +
           stats.failure(RedisFailure::kError);
  }

  // Declared first: destroyed after every store a test made.
  boost::asio::io_context io_;
  RedisServer server_;
};

TEST_F(RedisDialogStoreTest, StartRefusesHostNamesAndBadSettings) {
  RedisStoreStats stats;
  RedisStoreSettings settings = Settings();
  settings.host = "redis.example.com";
  RedisDialogStore by_name(io_, settings, &stats);
  EXPECT_EQ(by_name.Start().code(), absl::StatusCode::kInvalidArgument);

  settings = Settings();
  settings.port = 0;
  RedisDialogStore no_port(io_, settings, &stats);
  EXPECT_EQ(no_port.Start().code(), absl::StatusCode::kInvalidArgument);

  settings = Settings();
  settings.reconnect_max = milliseconds(1);
  RedisDialogStore bad_backoff(io_, settings, &stats);
  EXPECT_EQ(bad_backoff.Start().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(bad_backoff.connected());
}

TEST_F(RedisDialogStoreTest, SavedRecordIsAdoptedByAnotherInstanceWithItsOwnerChanged) {
  RedisStoreStats alpha_stats, bravo_stats;
  std::unique_ptr<RedisDialogStore> alpha = ConnectedStore(&alpha_stats);
  std::unique_ptr<RedisDialogStore> bravo = ConnectedStore(&bravo_stats);
  ASSERT_TRUE(alpha->connected() && bravo->connected());
  EXPECT_EQ(alpha_stats.connected.load(), 1u);

  const DialogRecord record = MakeRecord("alpha", 1);
  SaveAndWait(*alpha, alpha_stats, record);
  RawClient raw(server_.port());
  EXPECT_EQ(raw.Text({"HGET", Key(record.key), "owner"}), "alpha");
  EXPECT_EQ(raw.Text({"HGET", Key(record.key), "data"}), EncodeDialogRecord(record));

  AdoptResult result = Adopt(*bravo, record.key, "bravo", seconds(60));
  ASSERT_EQ(result.outcome, AdoptOutcome::kAdopted) << OutcomeName(result.outcome);
  ASSERT_TRUE(result.record.has_value());
  DialogRecord expected = record;
  expected.owner = "bravo";
  EXPECT_EQ(*result.record, expected);

  // The store says so too, and the TTL is the adopter's.
  EXPECT_EQ(raw.Text({"HGET", Key(record.key), "owner"}), "bravo");
  const long long ttl_ms = raw.Integer({"PTTL", Key(record.key)});
  EXPECT_GT(ttl_ms, 30'000);
  EXPECT_LE(ttl_ms, 60'000);

  EXPECT_EQ(alpha_stats.saves.load(), 1u);
  EXPECT_EQ(bravo_stats.adoptions_tried.load(), 1u);
  EXPECT_EQ(bravo_stats.adopted.load(), 1u);
  EXPECT_EQ(Failures(alpha_stats) + Failures(bravo_stats), 0u);
}

TEST_F(RedisDialogStoreTest, AdoptingAMissingKeyIsNotFound) {
  RedisStoreStats stats;
  std::unique_ptr<RedisDialogStore> store = ConnectedStore(&stats);
  AdoptResult result = Adopt(*store, DialogKey("alpha", 1, 0, 99), "bravo");
  EXPECT_EQ(result.outcome, AdoptOutcome::kNotFound) << OutcomeName(result.outcome);
  EXPECT_FALSE(result.record.has_value());
  EXPECT_EQ(stats.adopted.load(), 0u);
  EXPECT_EQ(Failures(stats), 0u);
}

TEST_F(RedisDialogStoreTest, OfTwoRacingAdoptersExactlyOneWins) {
  RedisStoreStats alpha_stats, bravo_stats, charlie_stats;
  std::unique_ptr<RedisDialogStore> alpha = ConnectedStore(&alpha_stats);
  std::unique_ptr<RedisDialogStore> bravo = ConnectedStore(&bravo_stats);
  std::unique_ptr<RedisDialogStore> charlie = ConnectedStore(&charlie_stats);
  const DialogRecord record = MakeRecord("alpha", 2);
  SaveAndWait(*alpha, alpha_stats, record);

  // Both sent before either reply is read.
  std::shared_ptr<AdoptResult> by_bravo = StartAdopt(*bravo, record.key, "bravo");
  std::shared_ptr<AdoptResult> by_charlie = StartAdopt(*charlie, record.key, "charlie");
  ASSERT_TRUE(RunUntil([&] { return by_bravo->calls > 0 && by_charlie->calls > 0; }));
  EXPECT_EQ(by_bravo->calls, 1);
  EXPECT_EQ(by_charlie->calls, 1);

  const bool bravo_won = by_bravo->outcome == AdoptOutcome::kAdopted;
  const AdoptResult& winner = bravo_won ? *by_bravo : *by_charlie;
  const AdoptResult& loser = bravo_won ? *by_charlie : *by_bravo;
  EXPECT_EQ(winner.outcome, AdoptOutcome::kAdopted) << OutcomeName(winner.outcome);
  EXPECT_EQ(loser.outcome, AdoptOutcome::kOwnedByOther) << OutcomeName(loser.outcome);
  EXPECT_FALSE(loser.record.has_value());
  ASSERT_TRUE(winner.record.has_value());
  EXPECT_EQ(winner.record->owner, bravo_won ? "bravo" : "charlie");
  RawClient raw(server_.port());
  EXPECT_EQ(raw.Text({"HGET", Key(record.key), "owner"}), winner.record->owner);
}

TEST_F(RedisDialogStoreTest, OwnerReadoptsItsOwnRecordButNotOneTakenOver) {
  RedisStoreStats alpha_stats, bravo_stats;
  std::unique_ptr<RedisDialogStore> alpha = ConnectedStore(&alpha_stats);
  std::unique_ptr<RedisDialogStore> bravo = ConnectedStore(&bravo_stats);
  const DialogRecord record = MakeRecord("alpha", 3);
  SaveAndWait(*alpha, alpha_stats, record);

  AdoptResult own = Adopt(*alpha, record.key, "alpha");
  EXPECT_EQ(own.outcome, AdoptOutcome::kAdopted) << OutcomeName(own.outcome);
  ASSERT_TRUE(own.record.has_value());
  EXPECT_EQ(*own.record, record);

  // Once bravo has it, the first owner cannot take it back; bravo asking again (a retry
  // after an answer it missed) still wins.
  EXPECT_EQ(Adopt(*bravo, record.key, "bravo").outcome, AdoptOutcome::kAdopted);
  EXPECT_EQ(Adopt(*alpha, record.key, "alpha").outcome, AdoptOutcome::kOwnedByOther);
  EXPECT_EQ(Adopt(*bravo, record.key, "bravo").outcome, AdoptOutcome::kAdopted);
  EXPECT_EQ(bravo_stats.adopted.load(), 2u);
  EXPECT_EQ(alpha_stats.adopted.load(), 1u);
}

TEST_F(RedisDialogStoreTest, RemovedRecordIsNotFound) {
  RedisStoreStats stats;
  std::unique_ptr<RedisDialogStore> store = ConnectedStore(&stats);
  const DialogRecord record = MakeRecord("alpha", 4);
  SaveAndWait(*store, stats, record);
  store->Remove(record.key);
  // Sent after the DEL on the same connection, so answered after it.
  AdoptResult result = Adopt(*store, record.key, "bravo");
  EXPECT_EQ(result.outcome, AdoptOutcome::kNotFound) << OutcomeName(result.outcome);
  EXPECT_EQ(stats.removes.load(), 1u);
  EXPECT_EQ(Failures(stats), 0u);
}

TEST_F(RedisDialogStoreTest, RecordExpiresAfterItsTtl) {
  RedisStoreStats stats;
  std::unique_ptr<RedisDialogStore> store = ConnectedStore(&stats);
  const DialogRecord record = MakeRecord("alpha", 5);
  SaveAndWait(*store, stats, record, milliseconds(200));
  RawClient raw(server_.port());
  const long long ttl_ms = raw.Integer({"PTTL", Key(record.key)});
  EXPECT_GT(ttl_ms, 0);
  EXPECT_LE(ttl_ms, 200);
  // Redis's clock, not ours: a real wait (the loop keeps running meanwhile).
  RunFor(milliseconds(400));
  AdoptResult result = Adopt(*store, record.key, "bravo");
  EXPECT_EQ(result.outcome, AdoptOutcome::kNotFound) << OutcomeName(result.outcome);
}

TEST_F(RedisDialogStoreTest, CorruptRecordIsNotFoundAndCountedAsError) {
  RedisStoreStats stats;
  std::unique_ptr<RedisDialogStore> store = ConnectedStore(&stats);
  RawClient raw(server_.port());
  const DialogRecord record = MakeRecord("alpha", 6);
  const std::string garbage_key = DialogKey("alpha", 1, 0, 0x61);
  const std::string moved_key = DialogKey("alpha", 1, 0, 0x62);
  ASSERT_EQ(raw.Integer({"HSET", Key(garbage_key), "owner", "alpha", "data", "14:b2bua-dia"}), 2);
  // A sound record, but of another call.
  ASSERT_EQ(
      raw.Integer({"HSET", Key(moved_key), "owner", "alpha", "data", EncodeDialogRecord(record)}),
      2);

  EXPECT_EQ(Adopt(*store, garbage_key, "bravo").outcome, AdoptOutcome::kNotFound);
  EXPECT_EQ(Adopt(*store, moved_key, "bravo").outcome, AdoptOutcome::kNotFound);
  EXPECT_EQ(stats.failure(RedisFailure::kError), 2u);
  EXPECT_EQ(stats.adopted.load(), 0u);
}

TEST_F(RedisDialogStoreTest, RedisErrorReplyIsUnavailableAndCountedAsError) {
  RedisStoreStats stats;
  std::unique_ptr<RedisDialogStore> store = ConnectedStore(&stats);
  RawClient raw(server_.port());
  const DialogRecord record = MakeRecord("alpha", 7);
  // A plain string where a hash belongs: every command on it fails with WRONGTYPE.
  ASSERT_EQ(raw.Text({"SET", Key(record.key), "not a hash"}), "OK");

  AdoptResult result = Adopt(*store, record.key, "bravo");
  EXPECT_EQ(result.outcome, AdoptOutcome::kUnavailable) << OutcomeName(result.outcome);
  SaveAndWait(*store, stats, record);
  EXPECT_EQ(stats.failure(RedisFailure::kError), 2u);
  EXPECT_EQ(stats.failure(RedisFailure::kDisconnected), 0u);
  // Errors are answers: the connection stays.
  EXPECT_TRUE(store->connected());
}

TEST_F(RedisDialogStoreTest, RoundTripHistogramCountsEveryReply) {
  RedisStoreStats stats;
  std::unique_ptr<RedisDialogStore> store = ConnectedStore(&stats);
  EXPECT_EQ(stats.round_trip_count(), 0u);
  for (uint64_t call = 1; call <= 5; ++call) SaveAndWait(*store, stats, MakeRecord("alpha", call));
  store->Remove(MakeRecord("alpha", 1).key);
  Adopt(*store, MakeRecord("alpha", 2).key, "bravo");
  EXPECT_TRUE(RunUntil([&] { return stats.round_trip_count() == 7; }));
  EXPECT_EQ(stats.round_trip_count(), 7u);
  EXPECT_GT(stats.round_trip_sum_us.load(), 0u);
  // Each reply went to exactly one bucket; on loopback most are under 100 ms.
  uint64_t under_100ms = 0;
  for (size_t i = 0; i < RedisStoreStats::kRoundTripBoundsUs.size(); ++i)
    under_100ms += stats.round_trip_buckets[i].load();
  EXPECT_GT(under_100ms, 0u);
}

TEST_F(RedisDialogStoreTest, ThousandSavesArePipelined) {
  RedisStoreStats stats;
  std::unique_ptr<RedisDialogStore> store = ConnectedStore(&stats);
  constexpr uint64_t kSaves = 1000;
  for (uint64_t call = 1; call <= kSaves; ++call)
    store->Save(MakeRecord("alpha", call), seconds(30));
  EXPECT_EQ(stats.round_trip_count(), 0u);  // nothing sent before the loop runs
  size_t handlers = 0;
  ASSERT_TRUE(RunUntil([&] { return stats.round_trip_count() == kSaves; }, seconds(10), &handlers))
      << stats.round_trip_count() << " answered";
  EXPECT_EQ(Failures(stats), 0u);
  // One write and one read per reply would be 2000 handlers: they went out and came back in
  // batches.
  EXPECT_LT(handlers, 200u);
  RawClient raw(server_.port());
  EXPECT_EQ(raw.Integer({"DBSIZE"}), static_cast<long long>(kSaves));
  AdoptResult last = Adopt(*store, MakeRecord("alpha", kSaves).key, "bravo");
  ASSERT_TRUE(last.record.has_value());
  EXPECT_EQ(last.record->caller.local_party, MakeRecord("alpha", kSaves).caller.local_party);
}

TEST_F(RedisDialogStoreTest, KilledRedisFailsEveryCommandOnceAndAdoptionIsUnavailable) {
  RedisStoreStats stats;
  std::unique_ptr<RedisDialogStore> store = ConnectedStore(&stats);
  store->Save(MakeRecord("alpha", 1), seconds(30));  // in flight when Redis dies
  server_.Kill();
  ASSERT_TRUE(RunUntil([&] { return !store->connected(); }));
  EXPECT_EQ(stats.failure(RedisFailure::kDisconnected), 1u);
  EXPECT_EQ(stats.connected.load(), 0u);

  // Not queued: dropped and counted at once.
  store->Save(MakeRecord("alpha", 2), seconds(30));
  store->Remove(MakeRecord("alpha", 2).key);
  EXPECT_EQ(stats.failure(RedisFailure::kDisconnected), 3u);
  std::shared_ptr<AdoptResult> adopt = StartAdopt(*store, MakeRecord("alpha", 1).key, "bravo");
  EXPECT_EQ(adopt->calls, 0);  // never inside Adopt()
  ASSERT_TRUE(RunUntil([&] { return adopt->calls > 0; }));
  EXPECT_EQ(adopt->outcome, AdoptOutcome::kUnavailable) << OutcomeName(adopt->outcome);
  EXPECT_EQ(stats.failure(RedisFailure::kDisconnected), 4u);

  // It keeps trying, with backoff (20, 40, 80, 160, 200 ms), and stays disconnected.
  RunFor(milliseconds(400));
  EXPECT_GE(stats.reconnects.load(), 3u);
  EXPECT_LE(stats.reconnects.load(), 8u);
  EXPECT_FALSE(store->connected());
  EXPECT_EQ(stats.failure(RedisFailure::kTimeout), 0u);
  EXPECT_EQ(stats.failure(RedisFailure::kError), 0u);
}

TEST_F(RedisDialogStoreTest, StoreReconnectsByItselfWhenRedisIsBack) {
  RedisStoreStats stats;
  std::unique_ptr<RedisDialogStore> store = ConnectedStore(&stats);
  server_.Kill();
  ASSERT_TRUE(RunUntil([&] { return !store->connected(); }));
  RunFor(milliseconds(150));  // a few refused attempts
  const uint64_t attempts = stats.reconnects.load();
  EXPECT_GE(attempts, 1u);

  ASSERT_TRUE(server_.Restart()) << server_.error();
  ASSERT_TRUE(RunUntil([&] { return store->connected(); }));
  EXPECT_EQ(stats.connected.load(), 1u);
  const DialogRecord record = MakeRecord("alpha", 8);
  SaveAndWait(*store, stats, record);
  EXPECT_EQ(Failures(stats), 0u);
  AdoptResult result = Adopt(*store, record.key, "alpha");
  EXPECT_EQ(result.outcome, AdoptOutcome::kAdopted) << OutcomeName(result.outcome);
}

TEST_F(RedisDialogStoreTest, UnansweredCommandsTimeOutOnceAndAdoptionIsUnavailable) {
  RedisStoreStats stats;
  RedisStoreSettings settings = Settings();
  settings.command_timeout = milliseconds(200);
  std::unique_ptr<RedisDialogStore> store = ConnectedStore(&stats, settings);
  SaveAndWait(*store, stats, MakeRecord("alpha", 9));
  ASSERT_TRUE(server_.Pause());

  const auto start = steady_clock::now();
  store->Save(MakeRecord("alpha", 10), seconds(30));
  std::shared_ptr<AdoptResult> adopt = StartAdopt(*store, MakeRecord("alpha", 9).key, "alpha");
  ASSERT_TRUE(RunUntil([&] { return adopt->calls > 0; }, seconds(3)));
  const auto elapsed = steady_clock::now() - start;
  EXPECT_EQ(adopt->outcome, AdoptOutcome::kUnavailable) << OutcomeName(adopt->outcome);
  EXPECT_GE(elapsed, milliseconds(190));
  EXPECT_LT(elapsed, milliseconds(800));
  // Both commands time out, each counted once (not again as disconnected when the stuck
  // connection is closed).
  EXPECT_EQ(stats.failure(RedisFailure::kTimeout), 2u);
  EXPECT_EQ(stats.failure(RedisFailure::kDisconnected), 0u);

  // Redis comes back: a new connection (the kernel accepted it meanwhile) serves again.
  server_.Resume();
  ASSERT_TRUE(RunUntil([&] { return store->connected(); }));
  SaveAndWait(*store, stats, MakeRecord("alpha", 11));
  EXPECT_EQ(stats.failure(RedisFailure::kTimeout), 2u);
  EXPECT_EQ(stats.failure(RedisFailure::kDisconnected), 0u);
  EXPECT_GE(stats.reconnects.load(), 1u);
}

TEST_F(RedisDialogStoreTest, ConnectThatHangsIsGivenUpAndRetried) {
  // A listener whose accept queue is full: the kernel drops further SYNs, so connect()
  // neither succeeds nor fails.
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(sin);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&sin), &length), 0);
  ASSERT_EQ(::listen(listener, 0), 0);
  std::vector<int> fillers;
  for (int i = 0; i < 3; ++i) {
    int filler = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ::connect(filler, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
    fillers.push_back(filler);
  }

  RedisStoreStats stats;
  RedisStoreSettings settings = Settings();
  settings.port = ntohs(sin.sin_port);
  settings.connect_timeout = milliseconds(100);
  auto store = std::make_unique<RedisDialogStore>(io_, settings, &stats);
  ASSERT_TRUE(store->Start().ok());
  RunFor(milliseconds(500));
  EXPECT_FALSE(store->connected());
  // 100 ms per attempt plus 20, 40, 80 ms of backoff.
  EXPECT_GE(stats.reconnects.load(), 2u);
  EXPECT_LE(stats.reconnects.load(), 5u);
  store.reset();
  for (int filler : fillers) ::close(filler);
  ::close(listener);
}

TEST_F(RedisDialogStoreTest, DestroyedStoreNeverCallsBack) {
  RedisStoreStats stats;
  std::unique_ptr<RedisDialogStore> store = ConnectedStore(&stats);
  const DialogRecord record = MakeRecord("alpha", 12);
  SaveAndWait(*store, stats, record);
  // One adoption answered whose outcome waits for its handler, one still at Redis.
  std::shared_ptr<AdoptResult> answered = StartAdopt(*store, record.key, "bravo");
  ASSERT_TRUE(RunUntil([&] { return stats.round_trip_count() == 2; }));
  EXPECT_EQ(answered->calls, 0);
  std::shared_ptr<AdoptResult> in_flight = StartAdopt(*store, record.key, "charlie");
  store.reset();
  RunFor(milliseconds(100));
  EXPECT_EQ(answered->calls, 0);
  EXPECT_EQ(in_flight->calls, 0);
  // Destruction is not a failure.
  EXPECT_EQ(Failures(stats), 0u);
  EXPECT_EQ(stats.connected.load(), 0u);

  // A store destroyed while it connects, or while it waits to reconnect.
  RedisStoreStats connecting_stats;
  auto connecting = std::make_unique<RedisDialogStore>(io_, Settings(), &connecting_stats);
  ASSERT_TRUE(connecting->Start().ok());
  connecting.reset();
  RedisStoreSettings nowhere = Settings();
  nowhere.port = PickFreePort();
  auto waiting = std::make_unique<RedisDialogStore>(io_, nowhere, &connecting_stats);
  ASSERT_TRUE(waiting->Start().ok());
  RunFor(milliseconds(30));
  EXPECT_FALSE(waiting->connected());
  waiting.reset();
  RunFor(milliseconds(50));

  // Same for an outcome queued while disconnected.
  RedisStoreStats idle_stats;
  auto idle = std::make_unique<RedisDialogStore>(io_, Settings(), &idle_stats);
  std::shared_ptr<AdoptResult> queued = StartAdopt(*idle, record.key, "bravo");
  idle.reset();
  RunFor(milliseconds(50));
  EXPECT_EQ(queued->calls, 0);
}

TEST_F(RedisDialogStoreTest, DoneMayDestroyTheStore) {
  RedisStoreStats stats;
  std::unique_ptr<RedisDialogStore> store = ConnectedStore(&stats);
  const DialogRecord record = MakeRecord("alpha", 13);
  SaveAndWait(*store, stats, record);
  int first_calls = 0;
  int second_calls = 0;
  // Both replies come in one read; the first `done` destroys the store.
  store->Adopt(record.key, "alpha", seconds(30),
               [&](AdoptOutcome outcome, std::optional<DialogRecord>) {
                 ++first_calls;
                 EXPECT_EQ(outcome, AdoptOutcome::kAdopted);
                 store.reset();
               });
  store->Adopt(record.key, "alpha", seconds(30),
               [&](AdoptOutcome, std::optional<DialogRecord>) { ++second_calls; });
  ASSERT_TRUE(RunUntil([&] { return first_calls > 0; }));
  RunFor(milliseconds(50));
  EXPECT_EQ(first_calls, 1);
  EXPECT_EQ(second_calls, 0);
  EXPECT_EQ(store, nullptr);
}

TEST_F(RedisDialogStoreTest, DoneMayUseTheStoreAgain) {
  RedisStoreStats stats;
  std::unique_ptr<RedisDialogStore> store = ConnectedStore(&stats);
  const DialogRecord record = MakeRecord("alpha", 14);
  SaveAndWait(*store, stats, record);
  std::shared_ptr<AdoptResult> second;
  int first_calls = 0;
  store->Adopt(record.key, "bravo", seconds(30),
               [&](AdoptOutcome outcome, std::optional<DialogRecord> adopted) {
                 ++first_calls;
                 ASSERT_EQ(outcome, AdoptOutcome::kAdopted);
                 store->Save(*adopted, seconds(30));
                 second = StartAdopt(*store, record.key, "charlie");
               });
  ASSERT_TRUE(RunUntil([&] { return second != nullptr && second->calls > 0; }));
  EXPECT_EQ(first_calls, 1);
  EXPECT_EQ(second->outcome, AdoptOutcome::kOwnedByOther) << OutcomeName(second->outcome);
  EXPECT_EQ(Failures(stats), 0u);
}

}  // namespace
}  // namespace b2bua
