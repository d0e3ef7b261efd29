// libFuzzer target for the B2BUA core: a caller and three callees drive calls through the
// real TransactionLayer and CallEngine, on a fake clock, with messages built from the fuzz
// input: templates whose fields the input chooses (statuses, Contacts, tags, CSeqs), answers
// to whatever the B2BUA last sent, and raw bytes. Any crash or undefined behaviour shows
// under ASan+UBSan. After the script, time runs past every timer: a call, dialog or
// transaction still alive then is a leak, and the target traps. Route "5" forks equal-q
// redirect targets in parallel, so branches race, cancel and answer across callees. The caller sends from a
// trusted or an untrusted address, as the input says, through the edge checks a shard
// applies (EdgeGuard) and the call limits of the config; once every call has ended, a
// share of a limit still held is a leak too.

#include <fuzzer/FuzzedDataProvider.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "b2bua/call_engine.h"
#include "b2bua/config.h"
#include "b2bua/edge_guard.h"
#include "b2bua/log.h"
#include "b2bua/shard_counters.h"
#include "proto/clock.h"
#include "proto/dns_resolver.h"
#include "proto/net_address.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"
#include "proto/sip_validate.h"
#include "proto/timer_wheel.h"
#include "proto/transaction.h"
#include "proto/transport.h"

namespace {

using namespace std::chrono_literals;
using b2bua::CallEngine;
using b2bua::ShardContext;
using b2bua::ShardCounters;
using b2bua::proto::Method;
using b2bua::proto::Peer;
using b2bua::proto::SipMessage;
using b2bua::proto::SipParser;

constexpr std::string_view kConfig = R"yaml(
access:
  trusted: [127.0.0.1/32]
  callers: [127.0.0.0/8]
  max_calls_per_source: 2
  flood: { window: 2s, max_requests: 40, block_for: 5s }
limits: { max_calls: 8, max_call_duration: 60s, no_answer_timeout: 20s, calls_per_second: 6 }
redirect:
  mode: follow
  max_depth: 3
  max_targets: 4
  target_timeout: 5s
  deny: { domains: [], cidrs: ["192.0.2.0/24"] }
  cache_301: { entries: 4, ttl: 30s }
probe: { options_interval: 0 }
routes:
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5070"]
  - prefix: "9"
    next_hops: ["sip:127.0.0.1:5071", "sip:127.0.0.1:5072;transport=tcp"]
    max_calls: 1
    overflow_to: "99"
  - prefix: "99"
    next_hops: ["sip:127.0.0.1:5072"]
    calls_per_second: 1
    callers: [127.0.0.1/32]
  - prefix: "7"
    action: redirect
    contacts: ["<sip:7@127.0.0.1:5071>;q=0.5"]
  - prefix: "8"
    next_hops: ["sip:trunk.example.net", "sip:127.0.0.1:5071"]
  - prefix: "5"
    next_hops: ["sip:127.0.0.1:5070"]
    redirect: { fork: parallel_equal_q, max_parallel: 2, target_timeout: 3s }
)yaml";

constexpr uint16_t kCallerPort = 5061;
constexpr uint16_t kCalleePorts[] = {5070, 5071, 5072};

Peer Loopback(uint16_t port) {
  Peer peer;
  b2bua::proto::NetAddress::ParseIp("127.0.0.1", port, &peer.address);
  return peer;
}

// B2BUA_FUZZ_TRACE=1 prints every message in and out: how a crash input is read.
const bool kTrace = std::getenv("B2BUA_FUZZ_TRACE") != nullptr;

void Trace(std::string_view what, uint16_t port, std::string_view bytes) {
  if (kTrace)
    std::fprintf(stderr, "---- %.*s %u\n%.*s\n", static_cast<int>(what.size()), what.data(),
                 port, static_cast<int>(bytes.size()), bytes.data());
}

class Sink final : public b2bua::proto::MessageSink {
 public:
  bool Send(const Peer& to, std::string_view bytes) override {
    Trace("b2bua sends to", to.address.port(), bytes);
    if (sent.size() == 64) sent.pop_front();
    sent.push_back({to.address.port(), std::string(bytes)});
    return true;
  }
  struct Sent {
    uint16_t port;
    std::string bytes;
  };
  std::deque<Sent> sent;
};

// Header value `name` of a message text, "" when absent (the first match; compact forms
// are not needed: everything parsed here was written by the B2BUA or by this file).
std::string HeaderOf(std::string_view text, std::string_view name) {
  const std::string key = "\r\n" + std::string(name) + ": ";
  const size_t at = text.find(key);
  if (at == std::string_view::npos) return {};
  const size_t start = at + key.size();
  const size_t end = text.find("\r\n", start);
  return std::string(text.substr(start, end == std::string_view::npos ? 0 : end - start));
}

std::string Body(FuzzedDataProvider& in) {
  return in.ConsumeBool() ? "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                            "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
                          : "";
}

std::string WithBody(std::string head, const std::string& body) {
  if (!body.empty()) head += "Content-Type: application/sdp\r\n";
  head += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  return head;
}

// Host names resolve when the script says so, to what it says: answers arrive late, in
// any order, or never, as from a real DNS server.
class ScriptedResolver final : public b2bua::TargetResolver {
 public:
  void Resolve(std::string_view host, uint16_t port,
               std::optional<b2bua::proto::TransportKind> transport, bool sips,
               b2bua::proto::ResolveCallback callback) override {
    if (pending_.size() == 8) pending_.pop_front();  // dropped: never answered
    pending_.push_back(std::move(callback));
  }

  void AnswerOne(FuzzedDataProvider& in) {
    if (pending_.empty()) return;
    const size_t index = in.ConsumeIntegralInRange<size_t>(0, pending_.size() - 1);
    b2bua::proto::ResolveCallback callback = std::move(pending_[index]);
    pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(index));
    b2bua::proto::ResolvedTargets result;
    result.status = static_cast<b2bua::proto::ResolveStatus>(in.ConsumeIntegralInRange<int>(0, 3));
    if (result.status == b2bua::proto::ResolveStatus::kOk) {
      static constexpr std::string_view kAddresses[] = {"127.0.0.1:5070", "127.0.0.1:5071",
                                                        "127.0.0.1:5072", "127.0.0.1:5060",
                                                        "192.0.2.1:5060"};
      const int count = in.ConsumeIntegralInRange<int>(1, 3);
      for (int i = 0; i < count; ++i) {
        b2bua::proto::ResolvedTarget target;
        b2bua::proto::NetAddress::ParseIpPort(
            kAddresses[in.ConsumeIntegralInRange<size_t>(0, std::size(kAddresses) - 1)],
            &target.address);
        target.transport = in.ConsumeBool() ? b2bua::proto::TransportKind::kUdp
                                            : b2bua::proto::TransportKind::kTcp;
        result.targets.push_back(target);
      }
    }
    callback(result);
  }

  // What a resolver owes at shutdown: every pending answer, as a timeout.
  void TimeOutAll() {
    while (!pending_.empty()) {
      b2bua::proto::ResolveCallback callback = std::move(pending_.front());
      pending_.pop_front();
      b2bua::proto::ResolvedTargets result;
      result.status = b2bua::proto::ResolveStatus::kTimeout;
      callback(result);
    }
  }

 private:
  std::deque<b2bua::proto::ResolveCallback> pending_;
};

class World {
 public:
  explicit World(std::shared_ptr<const b2bua::Config> config) {
    ShardContext context;
    context.clock = &clock_;
    context.timers = &wheel_;
    context.sink = &sink_;
    context.counters = &counters_;
    context.resolver = &resolver_;
    context.call_limits = &limits_;
    b2bua::proto::NetAddress::ParseIp("127.0.0.1", 5060, &context.local_address);
    config_ = config;
    engine_ = std::make_unique<CallEngine>(context, std::move(config));
    layer_ = std::make_unique<b2bua::proto::TransactionLayer>(
        b2bua::proto::TransactionConfig{}, wheel_, sink_, *engine_);
    engine_->SetTransactionLayer(layer_.get());
  }

  ~World() {
    layer_.reset();
    engine_.reset();
  }

  void Run(FuzzedDataProvider& in) {
    for (int step = 0; step < 64 && in.remaining_bytes() > 0; ++step) {
      switch (in.ConsumeIntegralInRange<int>(0, 11)) {
        case 0: CallerInvite(in); break;
        case 1: CallerInDialog(in, "ACK"); break;
        case 2: CallerInDialog(in, "BYE"); break;
        case 3: CallerCancel(in); break;
        case 4: CalleeAnswers(in); break;
        case 5: CalleeAnswers(in); break;
        case 6: CalleeInDialog(in); break;
        case 7: AnswerWhatWasSentTo(in, kCallerPort); break;
        case 8: {
          const int ms = in.ConsumeIntegralInRange<int>(0, 40000);
          if (kTrace) std::fprintf(stderr, "---- advance %d ms\n", ms);
          Advance(std::chrono::milliseconds(ms));
          break;
        }
        case 9: resolver_.AnswerOne(in); break;
        case 10: caller_untrusted_ = !caller_untrusted_; break;
        default: {
          const uint16_t port = in.ConsumeBool() ? kCallerPort : kCalleePorts[0];
          Deliver(in.ConsumeRandomLengthString(2048), port);
        }
      }
      engine_->CollectEndedCalls();
    }
  }

  // Time runs past Timer C, the maximum duration and every transaction timer.
  void Settle() {
    // A real resolver answers every query within its timeout.
    resolver_.TimeOutAll();
    for (int second = 0; second < 200; ++second) {
      Advance(1s);
      if (kTrace && second % 10 == 0)
        std::fprintf(stderr, "---- settle %d s: %zu calls, %zu transactions\n", second,
                     engine_->active_calls(), layer_->size());
    }
    engine_->CollectEndedCalls();
    bool limits_held = limits_.per_source.Count(UntrustedCaller().address) != 0;
    for (const b2bua::Route& route : config_->routes.routes())
      limits_held = limits_held || route.load->calls.active() != 0;
    if (limits_held) {
      std::fprintf(stderr, "a call limit is still held after every call ended\n");
      __builtin_trap();
    }
    if (engine_->active_calls() != 0 || layer_->size() != 0 ||
        counters_.calls_active.Get() != 0 || counters_.dialogs_active.Get() != 0 ||
        counters_.internal_bugs.Get() != 0) {
      std::fprintf(stderr, "left behind: %zu calls, %zu transactions, calls_active %llu, "
                   "dialogs_active %llu, internal_bugs %llu\n", engine_->active_calls(),
                   layer_->size(), static_cast<unsigned long long>(counters_.calls_active.Get()),
                   static_cast<unsigned long long>(counters_.dialogs_active.Get()),
                   static_cast<unsigned long long>(counters_.internal_bugs.Get()));
      __builtin_trap();
    }
  }

 private:
  struct CallerCall {
    std::string invite;  // the last INVITE sent, for retransmission and CANCEL
    std::string call_id;
    std::string from;
    std::string to_tag;  // from the B2BUA's last response with one
    uint32_t cseq = 1;
    bool started = false;
  };

  void Deliver(std::string text, uint16_t from_port) {
    buffer_ = std::move(text);
    Trace("delivered from", from_port, buffer_);
    if (parser_.Parse(buffer_, b2bua::proto::Framing::kDatagram, &message_).status !=
        b2bua::proto::ParseStatus::kComplete)
      return;
    // What a shard checks before the transaction layer sees a message.
    if (message_.is_request()) {
      std::string_view unsupported;
      if (b2bua::proto::ValidateRequest(message_, b2bua::proto::RequestPolicy{}, &unsupported))
        return;
    } else if (b2bua::proto::ValidateResponse(message_)) {
      return;
    }
    Peer from = Loopback(from_port);
    if (from_port == kCallerPort && caller_untrusted_) from = UntrustedCaller();
    // The edge a shard applies before anything else: the caller may be refused or dropped.
    if (message_.is_request() &&
        edge_.Admit(config_->access, message_, from.address, clock_.Now()) !=
            b2bua::EdgeVerdict::kAccept)
      return;
    layer_->OnMessage(message_, from);
    LearnCallerTags();
  }

  // The caller learns the To tag of our answers, so that its ACK and BYE match.
  void LearnCallerTags() {
    for (const Sink::Sent& sent : sink_.sent) {
      if (sent.port != kCallerPort || !sent.bytes.starts_with("SIP/2.0 ")) continue;
      const std::string call_id = HeaderOf(sent.bytes, "Call-ID");
      const std::string to = HeaderOf(sent.bytes, "To");
      const size_t tag = to.find(";tag=");
      for (CallerCall& call : calls_)
        if (call.call_id == call_id && tag != std::string::npos) call.to_tag = to.substr(tag + 5);
    }
  }

  static Peer UntrustedCaller() {
    Peer peer;
    b2bua::proto::NetAddress::ParseIp("127.0.0.2", kCallerPort, &peer.address);
    return peer;
  }

  void Advance(std::chrono::milliseconds by) {
    for (b2bua::proto::Duration left = by; left > b2bua::proto::Duration::zero(); left -= 10ms) {
      clock_.Advance(10ms);
      wheel_.Advance();
    }
  }

  CallerCall& PickCall(FuzzedDataProvider& in) {
    return calls_[in.ConsumeIntegralInRange<size_t>(0, std::size(calls_) - 1)];
  }

  void CallerInvite(FuzzedDataProvider& in) {
    const size_t index = in.ConsumeIntegralInRange<size_t>(0, std::size(calls_) - 1);
    CallerCall& call = calls_[index];
    if (call.started && in.ConsumeBool()) {
      Deliver(call.invite, kCallerPort);  // a retransmission, or a re-INVITE's repeat
      return;
    }
    static constexpr std::string_view kUsers[] = {"1000", "9000", "7000", "8000", "5000",
                                                  "", "%41b"};
    const std::string user(kUsers[in.ConsumeIntegralInRange<size_t>(0, std::size(kUsers) - 1)]);
    if (!call.started || in.ConsumeBool()) {
      call = CallerCall{};
      call.call_id = "fz-" + std::to_string(index) + "-" + std::to_string(++serial_);
      call.from = "<sip:alice@127.0.0.1>;tag=a" + std::to_string(serial_);
      call.started = true;
    } else {
      ++call.cseq;  // a re-INVITE inside the dialog
    }
    std::string head = "INVITE sip:" + user + (user.empty() ? "" : "@") + "127.0.0.1:5060" +
                       " SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-c" +
                       std::to_string(++serial_) + ";rport\r\nMax-Forwards: " +
                       std::to_string(in.ConsumeIntegralInRange<int>(0, 70)) +
                       "\r\nFrom: " + call.from + "\r\nTo: <sip:" + user + "@127.0.0.1>" +
                       (call.to_tag.empty() ? "" : ";tag=" + call.to_tag) +
                       "\r\nCall-ID: " + call.call_id + "\r\nCSeq: " +
                       std::to_string(call.cseq) + " INVITE\r\nContact: <sip:alice@127.0.0.1:5061>\r\n";
    if (in.ConsumeBool()) head += in.ConsumeRandomLengthString(64) + "\r\n";
    call.invite = WithBody(std::move(head), Body(in));
    Deliver(call.invite, kCallerPort);
  }

  void CallerInDialog(FuzzedDataProvider& in, std::string_view method) {
    CallerCall& call = PickCall(in);
    if (!call.started) return;
    // ACK takes the INVITE's CSeq; a BYE the next one.
    const uint32_t cseq = method == "ACK" ? call.cseq : ++call.cseq;
    std::string head = std::string(method) +
                       " sip:b2bua@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP "
                       "127.0.0.1:5061;branch=z9hG4bK-d" + std::to_string(++serial_) +
                       "\r\nMax-Forwards: 70\r\nFrom: " + call.from + "\r\nTo: <sip:x@127.0.0.1>" +
                       (call.to_tag.empty() ? "" : ";tag=" + call.to_tag) + "\r\nCall-ID: " +
                       call.call_id + "\r\nCSeq: " + std::to_string(cseq) + " " +
                       std::string(method) + "\r\n";
    Deliver(WithBody(std::move(head), method == "ACK" ? Body(in) : ""), kCallerPort);
  }

  void CallerCancel(FuzzedDataProvider& in) {
    CallerCall& call = PickCall(in);
    if (call.invite.empty()) return;
    // Same branch, Call-ID, From, To and CSeq number as the INVITE (RFC 3261 9.1).
    std::string cancel = "CANCEL sip:x@127.0.0.1:5060 SIP/2.0\r\nVia: " +
                         HeaderOf(call.invite, "Via") + "\r\nMax-Forwards: 70\r\nFrom: " +
                         HeaderOf(call.invite, "From") + "\r\nTo: " + HeaderOf(call.invite, "To") +
                         "\r\nCall-ID: " + call.call_id + "\r\nCSeq: " +
                         std::to_string(call.cseq) + " CANCEL\r\nContent-Length: 0\r\n\r\n";
    Deliver(std::move(cancel), kCallerPort);
  }

  // A callee answers the last request the B2BUA sent it.
  void CalleeAnswers(FuzzedDataProvider& in) {
    AnswerWhatWasSentTo(in, kCalleePorts[in.ConsumeIntegralInRange<size_t>(0, 2)]);
  }

  void AnswerWhatWasSentTo(FuzzedDataProvider& in, uint16_t port) {
    const std::string* request = LastRequestTo(port, in.ConsumeBool());
    if (request == nullptr) return;
    static constexpr int kStatuses[] = {100, 180, 183, 200, 200, 301, 302, 302, 305, 380,
                                        404, 408, 480, 486, 487, 491, 500, 503, 600, 603};
    const int status = in.ConsumeBool()
                           ? kStatuses[in.ConsumeIntegralInRange<size_t>(0, std::size(kStatuses) - 1)]
                           : in.ConsumeIntegralInRange<int>(100, 699);
    std::string to = HeaderOf(*request, "To");
    if (to.find(";tag=") == std::string::npos && status > 100)
      to += ";tag=t" + std::to_string(port) + (in.ConsumeBool() ? "b" : "");
    std::string head = "SIP/2.0 " + std::to_string(status) + " Fuzz\r\n";
    // Every Via of the request, in order.
    for (size_t at = request->find("\r\nVia: "); at != std::string::npos;
         at = request->find("\r\nVia: ", at + 2))
      head += "Via: " + request->substr(at + 7, request->find("\r\n", at + 2) - at - 7) + "\r\n";
    head += "From: " + HeaderOf(*request, "From") + "\r\nTo: " + to + "\r\nCall-ID: " +
            HeaderOf(*request, "Call-ID") + "\r\nCSeq: " + HeaderOf(*request, "CSeq") + "\r\n";
    if (status >= 300 && status < 400) {
      static constexpr std::string_view kContacts[] = {
          "<sip:t1@127.0.0.1:5071>;q=0.5", "<sip:t2@127.0.0.1:5072>", "<sip:self@127.0.0.1:5060>",
          "<sip:back@127.0.0.1:5070>;q=1", "<tel:+15551234>", "<sip:x@192.0.2.1>;q=0",
          "<sip:name.invalid>", "<sip:t1@127.0.0.1:5071;transport=tcp>;q=0.9;expires=60",
          "<sip:t3@callee.example.net>;q=0.7",
          // Equal q on every callee: a parallel group on route "5".
          "<sip:p0@127.0.0.1:5070>;q=0.8", "<sip:p1@127.0.0.1:5071>;q=0.8",
          "<sip:p2@127.0.0.1:5072>;q=0.8"};
      const int count = in.ConsumeIntegralInRange<int>(0, 4);
      for (int i = 0; i < count; ++i)
        head += "Contact: " +
                std::string(kContacts[in.ConsumeIntegralInRange<size_t>(0, std::size(kContacts) - 1)]) +
                "\r\n";
      if (in.ConsumeBool()) head += "Contact: " + in.ConsumeRandomLengthString(48) + "\r\n";
    } else if (status < 300 && status > 100) {
      head += "Contact: <sip:callee@127.0.0.1:" + std::to_string(port) + ">\r\n";
    }
    if (status == 503 && in.ConsumeBool()) head += "Retry-After: 30\r\n";
    Deliver(WithBody(std::move(head), status >= 180 && status < 300 ? Body(in) : ""), port);
  }

  // A callee sends BYE, re-INVITE or INFO inside the B-leg dialog of its last INVITE.
  void CalleeInDialog(FuzzedDataProvider& in) {
    const uint16_t port = kCalleePorts[in.ConsumeIntegralInRange<size_t>(0, 2)];
    const std::string* invite = nullptr;
    for (const Sink::Sent& sent : sink_.sent)
      if (sent.port == port && sent.bytes.starts_with("INVITE ")) invite = &sent.bytes;
    if (invite == nullptr) return;
    static constexpr std::string_view kMethods[] = {"BYE", "INVITE", "INFO", "UPDATE"};
    const std::string method(kMethods[in.ConsumeIntegralInRange<size_t>(0, 3)]);
    std::string head = method + " sip:b2bua@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:" +
                       std::to_string(port) + ";branch=z9hG4bK-e" + std::to_string(++serial_) +
                       "\r\nMax-Forwards: 70\r\nFrom: " + HeaderOf(*invite, "To") + ";tag=t" +
                       std::to_string(port) + "\r\nTo: " + HeaderOf(*invite, "From") +
                       "\r\nCall-ID: " + HeaderOf(*invite, "Call-ID") + "\r\nCSeq: " +
                       std::to_string(in.ConsumeIntegralInRange<uint32_t>(1, 9)) + " " + method +
                       "\r\nContact: <sip:callee@127.0.0.1:" + std::to_string(port) + ">\r\n";
    Deliver(WithBody(std::move(head), method == "INVITE" ? Body(in) : ""), port);
  }

  const std::string* LastRequestTo(uint16_t port, bool last_invite_only) const {
    const std::string* found = nullptr;
    for (const Sink::Sent& sent : sink_.sent) {
      if (sent.port != port || sent.bytes.starts_with("SIP/2.0 ") ||
          sent.bytes.starts_with("ACK "))
        continue;
      if (last_invite_only && !sent.bytes.starts_with("INVITE ")) continue;
      found = &sent.bytes;
    }
    return found;
  }

  b2bua::proto::FakeClock clock_;
  b2bua::proto::TimerWheel wheel_{clock_, 10ms};
  Sink sink_;
  ScriptedResolver resolver_;
  ShardCounters counters_;
  b2bua::SharedCallLimits limits_;
  b2bua::EdgeGuard edge_;
  std::shared_ptr<const b2bua::Config> config_;
  bool caller_untrusted_ = false;
  std::unique_ptr<CallEngine> engine_;
  std::unique_ptr<b2bua::proto::TransactionLayer> layer_;
  SipParser parser_;
  SipMessage message_;
  std::string buffer_;
  CallerCall calls_[3];
  uint64_t serial_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto* config = [] {
    // Failed calls are the norm here; logging each would only slow the search.
    if (!kTrace) b2bua::SetLogLevel(b2bua::LogLevel::kError);
    auto parsed = b2bua::ParseConfig(kConfig, "fuzz.yaml");
    if (!parsed.ok()) __builtin_trap();
    return new std::shared_ptr<const b2bua::Config>(*parsed);
  }();
  FuzzedDataProvider in(data, size);
  World world(*config);
  world.Run(in);
  world.Settle();
  return 0;
}
