// The user-space cost of whole calls through one shard's real code path, without sockets:
// every message is parsed by the shard's SipParser, validated, passed through the real
// TransactionLayer and CallEngine, and what the B2BUA sends is serialised as it would go
// out; the peers' messages are written by the production builder (WriteResponse) and by
// hand. Time is a fake clock moved past every timer, so each call's transactions and
// timers are created and retired as on a live shard. What the kernel costs per call
// (datagrams, wake-ups) is not here: bench/sipp measures that.
//
// Reported per call (one iteration = one call): the time the shard's code took (manual
// time: the peers' side of the bench, writing requests and parsing what the B2BUA sent, is
// not counted) and `allocs_per_call`, heap allocations made by the shard's code (counted by
// this binary's global operator new while that code runs; the copy of each outgoing
// message into the bench's outbox is not counted, as a real transport writes it into a
// reused send buffer). Budget (issue 17): 10 µs and 5 allocations per basic call.

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "b2bua/call_engine.h"
#include "b2bua/config.h"
#include "b2bua/dialog_record.h"
#include "b2bua/dialog_store.h"
#include "b2bua/log.h"
#include "b2bua/shard_counters.h"
#include "benchmark/benchmark.h"
#include "proto/clock.h"
#include "proto/sip_builder.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"
#include "proto/sip_validate.h"
#include "proto/timer_wheel.h"
#include "proto/transaction.h"

// This binary counts allocations by replacing the global operator new and delete over
// malloc and free; GCC cannot see that they pair and warns on the sized delete.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {
std::atomic<uint64_t> g_allocations{0};
thread_local bool g_counting = false;  // the shard's code is running
}  // namespace

void* operator new(std::size_t size) {
  if (g_counting) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace b2bua {
namespace {

using namespace std::chrono_literals;

// Counts the time and allocations of the shard's code between its construction and its
// destruction into `*total_ns`.
class Measured {
 public:
  explicit Measured(int64_t* total_ns)
      : total_ns_(total_ns), start_(std::chrono::steady_clock::now()) {
    g_counting = true;
  }
  ~Measured() {
    g_counting = false;
    *total_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now() - start_)
                      .count();
  }

 private:
  int64_t* total_ns_;
  std::chrono::steady_clock::time_point start_;
};

constexpr std::string_view kSdp =
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

proto::Peer Loopback(uint16_t port) {
  proto::Peer peer;
  proto::NetAddress::ParseIp("127.0.0.1", port, &peer.address);
  return peer;
}

// Keeps what the B2BUA sent during one step, as it would leave the shard.
class Outbox final : public proto::MessageSink {
 public:
  bool Send(const proto::Peer& to, std::string_view bytes) override {
    const bool counting = g_counting;
    g_counting = false;
    messages.push_back({to.address.port(), std::string(bytes)});
    g_counting = counting;
    return true;
  }
  struct Message {
    uint16_t port;
    std::string bytes;
  };
  std::vector<Message> messages;
};

// The cluster's dialog store up to its socket: each write encodes the record as the Redis
// store does; what hiredis and the kernel add is in the sipp figures (bench/README.md).
class EncodingStore final : public DialogStore, public WallClock {
 public:
  void Save(const DialogRecord& record, proto::Duration) override {
    bytes_ += EncodeDialogRecord(record).size();
  }
  void Remove(std::string_view key) override { bytes_ += key.size(); }
  void Adopt(std::string_view, std::string_view, proto::Duration,
             std::function<void(AdoptOutcome, std::optional<DialogRecord>)> done) override {
    done(AdoptOutcome::kUnavailable, std::nullopt);
  }
  bool connected() const override { return true; }
  int64_t NowUnixMs() const override { return 1'800'000'000'000; }
  size_t bytes_ = 0;
};

// One shard's engine and transaction layer, and the two peers: a caller on 5061 and a
// callee (or a redirector then a callee) on 5070/5071. `clustered`: confirmed calls are
// written to a dialog store (cluster mode).
class CallPath {
 public:
  explicit CallPath(std::string_view yaml, bool clustered = false) : wheel_(clock_, 10ms) {
    config_ = *ParseConfig(yaml, "bench.yaml");
    ShardContext context;
    context.clock = &clock_;
    context.timers = &wheel_;
    context.sink = &outbox_;
    context.counters = &counters_;
    if (clustered) {
      context.dialog_store = &store_;
      context.wall_clock = &store_;
      context.instance_id = "1";
      context.boot_epoch = 0x6b17;
      context.front = "127.0.0.1:5060";
    }
    proto::NetAddress::ParseIp("127.0.0.1", 5060, &context.local_address);
    engine_ = std::make_unique<CallEngine>(context, config_);
    proto::TransactionConfig txn;
    layer_ = std::make_unique<proto::TransactionLayer>(txn, wheel_, outbox_, *engine_);
    engine_->SetTransactionLayer(layer_.get());
  }

  // A basic call, or one first redirected by a 302: INVITE, (302, ACK, INVITE), 180, 200,
  // ACK, BYE, 200. Its transactions end when time next passes (Settle()).
  bool Call(uint64_t n, bool redirected) {
    const std::string id = std::to_string(n);
    const std::string from = "<sip:alice@127.0.0.1>;tag=a" + id;
    Deliver(Request("INVITE", "sip:1000@127.0.0.1:5060", "z9hG4bKi" + id, from,
                    "<sip:1000@127.0.0.1>", "bench-" + id, 1, kSdp),
            5061);
    const SentMessage* invite = Find(5070, "INVITE ");
    if (invite == nullptr) return false;
    if (redirected) {
      Respond(*invite, 302, "Moved Temporarily", "r" + id,
              "Contact: <sip:moved@127.0.0.1:5071>\r\n", 5070);
      invite = Find(5071, "INVITE ");
      if (invite == nullptr) return false;
    }
    const uint16_t callee = redirected ? 5071 : 5070;
    const std::string contact = "Contact: <sip:bob@127.0.0.1:" + std::to_string(callee) + ">\r\n";
    Respond(*invite, 180, "Ringing", "b" + id, contact, callee);
    Respond(*invite, 200, "OK", "b" + id, contact, callee);
    const SentMessage* ok = Find(5061, "SIP/2.0 200 ");
    if (ok == nullptr) return false;
    const std::string to = std::string(ok->message->to().text);
    Deliver(Request("ACK", "sip:b2bua@127.0.0.1:5060", "z9hG4bKk" + id, from, to,
                    "bench-" + id, 1, {}),
            5061);
    Deliver(Request("BYE", "sip:b2bua@127.0.0.1:5060", "z9hG4bKy" + id, from, to,
                    "bench-" + id, 2, {}),
            5061);
    const SentMessage* bye = Find(callee, "BYE ");
    if (bye == nullptr) return false;
    Respond(*bye, 200, "OK", {}, {}, callee);
    if (Find(5061, "SIP/2.0 200 ") == nullptr) return false;
    outbox_.messages.clear();
    return true;
  }

  // Time passes every timer of the calls made since the last Settle() (Timer K, J, H,
  // ...), one tick of the wheel at a time as on a shard; true when no call is left.
  bool Settle() {
    for (int i = 0; i < 4000; ++i) {
      clock_.Advance(10ms);
      Measured measured(&shard_ns_);
      wheel_.Advance();
      engine_->CollectEndedCalls();
    }
    outbox_.messages.clear();
    return engine_->active_calls() == 0;
  }

 private:
  struct SentMessage {
    std::string bytes;
    std::unique_ptr<proto::SipMessage> message;
  };

  static std::string Request(std::string_view method, std::string_view uri,
                             const std::string& branch, const std::string& from,
                             const std::string& to, const std::string& call_id, int cseq,
                             std::string_view body) {
    std::string out = std::string(method) + " " + std::string(uri) + " SIP/2.0\r\n" +
                      "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=" + branch + ";rport\r\n" +
                      "Max-Forwards: 70\r\nFrom: " + from + "\r\nTo: " + to +
                      "\r\nCall-ID: " + call_id + "\r\nCSeq: " + std::to_string(cseq) + " " +
                      std::string(method) + "\r\nContact: <sip:alice@127.0.0.1:5061>\r\n";
    if (!body.empty()) out += "Content-Type: application/sdp\r\n";
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    out += body;
    return out;
  }

  // The last message sent to `port` that starts with `start`, parsed.
  const SentMessage* Find(uint16_t port, std::string_view start) {
    for (auto it = outbox_.messages.rbegin(); it != outbox_.messages.rend(); ++it) {
      if (it->port != port || !it->bytes.starts_with(start)) continue;
      found_.bytes = it->bytes;
      found_.message = std::make_unique<proto::SipMessage>();
      if (!parser_.Parse(found_.bytes, proto::Framing::kDatagram, found_.message.get()).ok())
        return nullptr;
      return &found_;
    }
    return nullptr;
  }

  void Respond(const SentMessage& request, int code, std::string_view reason,
               std::string_view tag, std::string_view extra, uint16_t from_port) {
    char buffer[4096];
    proto::MessageWriter writer(buffer, sizeof(buffer));
    proto::WriteResponse(*request.message, code, reason, tag, extra, writer);
    Deliver(std::string(writer.view()), from_port);
  }

  // As the shard does it: parse, validate, the transaction layer, the end of the turn.
  void Deliver(std::string text, uint16_t from_port) {
    inbound_ = std::move(text);
    Measured measured(&shard_ns_);
    if (!parser_.Parse(inbound_, proto::Framing::kDatagram, &message_).ok()) return;
    if (message_.is_request()) {
      if (proto::ValidateRequest(message_, policy_)) return;
    } else if (proto::ValidateResponse(message_)) {
      return;
    }
    layer_->OnMessage(message_, Loopback(from_port));
    engine_->CollectEndedCalls();
  }

  proto::FakeClock clock_;
  proto::TimerWheel wheel_;
  Outbox outbox_;
  ShardCounters counters_;
  EncodingStore store_;
  std::shared_ptr<const Config> config_;
  std::unique_ptr<CallEngine> engine_;
  std::unique_ptr<proto::TransactionLayer> layer_;
  proto::SipParser parser_;
  proto::SipMessage message_;
  proto::RequestPolicy policy_{""};
  std::string inbound_;
  SentMessage found_;

 public:
  int64_t shard_ns_ = 0;  // time spent in the shard's code so far
};

constexpr std::string_view kConfig = R"yaml(
probe: { options_interval: 0 }
redirect: { send_181: false, allow: { cidrs: [127.0.0.0/8] }, deny_self: false }
routes:
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5070"]
)yaml";

/** Measure one whole call through the engine and transaction layer, basic (0), redirected
    once by a 302 (1), or basic in cluster mode, written to and removed from the dialog
    store (2); counts heap allocations per call. */
void BM_WholeCall(benchmark::State& state) {
  SetLogLevel(LogLevel::kError);
  const bool redirected = state.range(0) == 1;
  const bool clustered = state.range(0) == 2;
  // The timers of 400 calls are run together, as on a shard carrying 400 calls in the
  // 40 s their transactions live: the wheel's ticks are shared, not paid per call.
  constexpr uint64_t kCallsPerSettle = 400;
  CallPath path(kConfig, clustered);
  uint64_t n = 0;
  for (uint64_t i = 0; i < kCallsPerSettle; ++i) path.Call(n++, redirected);  // warm up
  path.Settle();
  const uint64_t before = g_allocations.load(std::memory_order_relaxed);
  for (auto _ : state) {
    const int64_t start = path.shard_ns_;
    if (!path.Call(n++, redirected) || (n % kCallsPerSettle == 0 && !path.Settle())) {
      state.SkipWithError("a call did not complete");
      return;
    }
    state.SetIterationTime(static_cast<double>(path.shard_ns_ - start) / 1e9);
  }
  const uint64_t allocations = g_allocations.load(std::memory_order_relaxed) - before;
  state.counters["allocs_per_call"] =
      benchmark::Counter(static_cast<double>(allocations) / state.iterations());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_WholeCall)->Arg(0)->Arg(1)->Arg(2)->UseManualTime();

}  // namespace
}  // namespace b2bua
