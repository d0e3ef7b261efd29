// Tests b2bua/call_engine.{h,cc}: call bridging, failover and 3xx redirect following by the
// B2BUA core, driven through the real proto::TransactionLayer. Every message the callers and
// callees send is written as text and parsed by the production SipParser; everything the
// B2BUA sends is captured by a recording MessageSink and parsed again for the assertions.
// Time only moves through FakeClock and TimerWheel::Advance(): no test sleeps.

#include "b2bua/call_engine.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "b2bua/config.h"
#include "b2bua/shard_counters.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/clock.h"
#include "proto/dns_resolver.h"
#include "proto/net_address.h"
#include "proto/sip_chars.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"
#include "proto/sip_validate.h"
#include "proto/timer_wheel.h"
#include "proto/transaction.h"
#include "proto/transport.h"

namespace b2bua {
namespace {

using namespace std::chrono_literals;
using proto::Method;
using proto::Peer;
using proto::SipMessage;
using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

constexpr std::string_view kLoopback = "127.0.0.1";
constexpr uint16_t kB2buaPort = 5060;
constexpr uint16_t kCallerPort = 5061;

constexpr std::string_view kOfferSdp =
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.101\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n";

constexpr std::string_view kAnswerSdp =
    "v=0\r\n"
    "o=bob 2808844564 2808844564 IN IP4 192.0.2.201\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.201\r\n"
    "t=0 0\r\n"
    "m=audio 3456 RTP/AVP 0\r\n"
    "a=rtpmap:0 PCMU/8000\r\n";

Peer PeerAt(std::string_view ip, uint16_t port) {
  Peer peer;
  EXPECT_TRUE(proto::NetAddress::ParseIp(ip, port, &peer.address)) << ip;
  peer.transport = proto::TransportKind::kUdp;
  return peer;
}

Peer LoopbackPeer(uint16_t port) { return PeerAt(kLoopback, port); }

// ---------------------------------------------------------------------------------------
// What the B2BUA sent.

// One datagram the B2BUA sent, parsed again. Owns the bytes its views point into; copies
// share them.
class Sent {
 public:
  Sent(const Peer& to, std::string_view bytes, proto::TimePoint at)
      : to_(to),
        at_(at),
        bytes_(std::make_shared<std::string>(bytes)),
        msg_(std::make_shared<SipMessage>()) {
    result_ = proto::SipParser().Parse(*bytes_, proto::Framing::kDatagram, msg_.get());
  }

  bool parsed() const { return result_.ok(); }
  const Peer& to() const { return to_; }
  uint16_t port() const { return to_.address.port(); }
  std::string ip() const { return to_.address.IpString(); }
  proto::TimePoint at() const { return at_; }
  const std::string& bytes() const { return *bytes_; }
  const SipMessage& msg() const { return *msg_; }

  bool IsRequest(Method method) const {
    return parsed() && msg_->is_request() && msg_->method() == method;
  }
  bool IsResponse() const { return parsed() && msg_->is_response(); }
  int status() const { return IsResponse() ? msg_->status_code() : 0; }
  std::string request_uri() const { return std::string(msg_->request_uri().text); }
  std::string call_id() const { return std::string(msg_->call_id()); }
  std::string from() const { return std::string(msg_->from().text); }
  std::string to_header() const { return std::string(msg_->to().text); }
  std::string from_tag() const { return std::string(msg_->from().tag); }
  std::string to_tag() const { return std::string(msg_->to().tag); }
  std::string branch() const {
    return msg_->top_via() ? std::string(msg_->top_via()->branch) : std::string();
  }
  uint32_t cseq() const { return msg_->cseq().number; }
  std::string cseq_method() const { return std::string(msg_->cseq().method_text); }
  std::string body() const { return std::string(msg_->body()); }
  std::string contact_uri() const {
    return msg_->contact_count() ? std::string(msg_->contacts()[0].address.uri.text)
                                 : std::string();
  }

  /// The first header called `name` (compact forms resolved), or "" when absent.
  std::string Header(std::string_view name) const {
    const proto::HeaderField* h = msg_->FindHeader(name);
    return h ? std::string(h->value) : std::string();
  }
  bool HasHeader(std::string_view name) const { return msg_->FindHeader(name) != nullptr; }
  /// Every header line called `name`, values as on the wire, in order.
  std::vector<std::string> Headers(std::string_view name) const {
    std::vector<std::string> values;
    const proto::HeaderId id = proto::LookupHeaderId(name);
    for (size_t i = 0; i < msg_->header_count(); ++i) {
      const proto::HeaderField& h = msg_->headers()[i];
      bool match = id != proto::HeaderId::kOther ? h.id == id
                                                 : proto::EqualsIgnoreCase(h.name, name);
      if (match) values.emplace_back(h.value);
    }
    return values;
  }

 private:
  Peer to_;
  proto::TimePoint at_;
  std::shared_ptr<std::string> bytes_;
  std::shared_ptr<SipMessage> msg_;
  proto::ParseResult result_;
};

// Shows a sent message as its text in assertion failures.
void PrintTo(const Sent& sent, std::ostream* os) {
  *os << "to " << sent.to().address.ToString() << ":\n" << sent.bytes();
}

// Keeps every datagram with the time it left. Never calls back into the layer.
class RecordingSink final : public proto::MessageSink {
 public:
  explicit RecordingSink(const proto::Clock& clock) : clock_(clock) {}

  bool Send(const Peer& to, std::string_view bytes) override {
    sent_.emplace_back(to, bytes, clock_.Now());
    EXPECT_TRUE(sent_.back().parsed()) << "the B2BUA sent an unparsable message:\n" << bytes;
    return true;
  }

  std::vector<Sent> Take() { return std::exchange(sent_, {}); }

 private:
  const proto::Clock& clock_;
  std::vector<Sent> sent_;
};

std::vector<Sent> RequestsTo(const std::vector<Sent>& all, uint16_t port, Method method) {
  std::vector<Sent> out;
  for (const Sent& s : all)
    if (s.port() == port && s.IsRequest(method)) out.push_back(s);
  return out;
}

std::vector<Sent> RequestsOf(const std::vector<Sent>& all, Method method) {
  std::vector<Sent> out;
  for (const Sent& s : all)
    if (s.IsRequest(method)) out.push_back(s);
  return out;
}

std::vector<Sent> ResponsesTo(const std::vector<Sent>& all, uint16_t port) {
  std::vector<Sent> out;
  for (const Sent& s : all)
    if (s.port() == port && s.IsResponse()) out.push_back(s);
  return out;
}

std::vector<int> Statuses(const std::vector<Sent>& responses) {
  std::vector<int> out;
  for (const Sent& s : responses) out.push_back(s.status());
  return out;
}

// The responses among `responses` with `status`.
std::vector<Sent> WithStatus(const std::vector<Sent>& responses, int status) {
  std::vector<Sent> out;
  for (const Sent& s : responses)
    if (s.status() == status) out.push_back(s);
  return out;
}

// `all` without retransmissions: the first of each run of identical datagrams to one peer.
std::vector<Sent> Unique(const std::vector<Sent>& all) {
  std::vector<Sent> out;
  for (const Sent& s : all) {
    bool seen = false;
    for (const Sent& kept : out) seen = seen || (kept.to() == s.to() && kept.bytes() == s.bytes());
    if (!seen) out.push_back(s);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// What the callers and callees send.

// A response to `request` (something the B2BUA sent), as its recipient writes it
// (RFC 3261 8.2.6): every Via line, From, To (with `to_tag` added when To has none),
// Call-ID and CSeq copied, then `extra` lines ("Name: value\r\n" each) and the body.
std::string ResponseTo(const Sent& request, int status, std::string_view reason,
                       std::string_view to_tag, std::string_view extra = {},
                       std::string_view body = {}) {
  const SipMessage& m = request.msg();
  std::string out = "SIP/2.0 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  for (size_t i = 0; i < m.header_count(); ++i)
    if (m.headers()[i].id == proto::HeaderId::kVia)
      out += "Via: " + std::string(m.headers()[i].value) + "\r\n";
  out += "From: " + std::string(m.from().text) + "\r\n";
  out += "To: " + std::string(m.to().text);
  if (m.to().tag.empty() && status > 100 && !to_tag.empty()) out += ";tag=" + std::string(to_tag);
  out += "\r\n";
  out += "Call-ID: " + std::string(m.call_id()) + "\r\n";
  out += "CSeq: " + std::to_string(m.cseq().number) + " " + std::string(m.cseq().method_text) +
         "\r\n";
  out += std::string(extra);
  if (!body.empty()) out += "Content-Type: application/sdp\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
  return out;
}

// The calling UA, at 127.0.0.1:5061 unless told otherwise.
struct Caller {
  std::string request_uri = "sip:bob@127.0.0.1:5070";
  std::string call_id = "a84b4c76e66710@pc33.atlanta.example.com";
  std::string from_tag = "1928301774";
  std::string branch = "z9hG4bKnashds8";
  uint32_t cseq = 314159;
  int max_forwards = 70;
  bool rport = true;
  uint16_t via_port = kCallerPort;
  uint16_t source_port = kCallerPort;
  std::string extra;   // more header lines for the INVITE
  std::string to_tag;  // learned from the B2BUA's responses
  uint32_t next_cseq = 314160;
  int requests = 0;

  static constexpr std::string_view kFrom =
      "\"Alice Liddell\" <sip:alice@atlanta.example.com>";
  static constexpr std::string_view kTo = "\"Bob\" <sip:bob@biloxi.example.com>";
  static constexpr std::string_view kContactUri = "sip:alice@127.0.0.1:5061";

  Peer peer() const { return LoopbackPeer(source_port); }
  std::string From() const { return std::string(kFrom) + ";tag=" + from_tag; }
  std::string To() const {
    return to_tag.empty() ? std::string(kTo) : std::string(kTo) + ";tag=" + to_tag;
  }
  std::string Via(std::string_view via_branch) const {
    return "Via: SIP/2.0/UDP 127.0.0.1:" + std::to_string(via_port) +
           ";branch=" + std::string(via_branch) + (rport ? ";rport" : "") + "\r\n";
  }

  std::string Invite() const {
    return "INVITE " + request_uri + " SIP/2.0\r\n" + Via(branch) +
           "Max-Forwards: " + std::to_string(max_forwards) + "\r\n"
           "From: " + From() + "\r\n"
           "To: " + std::string(kTo) + "\r\n"
           "Call-ID: " + call_id + "\r\n"
           "CSeq: " + std::to_string(cseq) + " INVITE\r\n"
           "Contact: <" + std::string(kContactUri) + ">\r\n"
           "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
           "Supported: timer\r\n"
           "User-Agent: CallerUA/1.0\r\n"
           "X-Caller-Secret: 42\r\n" +
           extra +
           "Content-Type: application/sdp\r\n"
           "Content-Length: " + std::to_string(kOfferSdp.size()) + "\r\n\r\n" +
           std::string(kOfferSdp);
  }

  // The ACK for a 2xx: a transaction of its own (new branch), sent to our Contact.
  std::string Ack2xx() {
    return "ACK sip:b2bua@127.0.0.1:5060 SIP/2.0\r\n" +
           Via("z9hG4bKcallerack" + std::to_string(++requests)) +
           "Max-Forwards: 70\r\n"
           "From: " + From() + "\r\n"
           "To: " + To() + "\r\n"
           "Call-ID: " + call_id + "\r\n"
           "CSeq: " + std::to_string(cseq) + " ACK\r\n"
           "Content-Length: 0\r\n\r\n";
  }

  // The ACK for a final failure: part of the INVITE transaction (same branch).
  std::string AckFailure() const {
    return "ACK " + request_uri + " SIP/2.0\r\n" + Via(branch) +
           "Max-Forwards: 70\r\n"
           "From: " + From() + "\r\n"
           "To: " + To() + "\r\n"
           "Call-ID: " + call_id + "\r\n"
           "CSeq: " + std::to_string(cseq) + " ACK\r\n"
           "Content-Length: 0\r\n\r\n";
  }

  std::string Cancel() const {
    return "CANCEL " + request_uri + " SIP/2.0\r\n" + Via(branch) +
           "Max-Forwards: 70\r\n"
           "From: " + From() + "\r\n"
           "To: " + std::string(kTo) + "\r\n"
           "Call-ID: " + call_id + "\r\n"
           "CSeq: " + std::to_string(cseq) + " CANCEL\r\n"
           "Content-Length: 0\r\n\r\n";
  }

  std::string Bye() { return InDialog("BYE"); }

  // A request in the confirmed dialog: new branch, next CSeq (remembered in last_cseq).
  // An INVITE (re-INVITE) carries our Contact and `body` as SDP.
  std::string InDialog(std::string_view method, std::string_view body = {}) {
    last_cseq = next_cseq++;
    std::string out = std::string(method) + " sip:b2bua@127.0.0.1:5060 SIP/2.0\r\n" +
                      Via("z9hG4bKcaller" + std::string(method) + std::to_string(++requests)) +
                      "Max-Forwards: 70\r\n"
                      "From: " + From() + "\r\n"
                      "To: " + To() + "\r\n"
                      "Call-ID: " + call_id + "\r\n"
                      "CSeq: " + std::to_string(last_cseq) + " " + std::string(method) + "\r\n";
    if (method == "INVITE") out += "Contact: <" + std::string(kContactUri) + ">\r\n";
    if (!body.empty()) out += "Content-Type: application/sdp\r\n";
    return out + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
           std::string(body);
  }

  // The ACK for the 2xx of the re-INVITE with CSeq `invite_cseq`.
  std::string AckReInvite(uint32_t invite_cseq) {
    return "ACK sip:b2bua@127.0.0.1:5060 SIP/2.0\r\n" +
           Via("z9hG4bKcallerack" + std::to_string(++requests)) +
           "Max-Forwards: 70\r\n"
           "From: " + From() + "\r\n"
           "To: " + To() + "\r\n"
           "Call-ID: " + call_id + "\r\n"
           "CSeq: " + std::to_string(invite_cseq) + " ACK\r\n"
           "Content-Length: 0\r\n\r\n";
  }

  uint32_t last_cseq = 0;
};

// A called UA at 127.0.0.1:`port`; it answers what the B2BUA sent it.
struct Callee {
  uint16_t port = 5070;
  std::string user = "bob";
  std::string tag = "b0b";
  int requests = 0;

  Peer peer() const { return LoopbackPeer(port); }
  std::string ContactUri() const {
    return "sip:" + user + "-ua@127.0.0.1:" + std::to_string(port);
  }

  // A response to the B-leg `invite`; provisional and 2xx answers carry our Contact.
  std::string Answer(const Sent& invite, int status, std::string_view reason,
                     std::string_view body = {}, std::string_view extra = {}) const {
    std::string lines(extra);
    if (status > 100 && status < 300) lines += "Contact: <" + ContactUri() + ">\r\n";
    return ResponseTo(invite, status, reason, tag, lines, body);
  }

  // A 3xx to `invite` with `contact_lines` ("Contact: ...\r\n" each).
  std::string Redirect(const Sent& invite, int status, std::string_view contact_lines) const {
    std::string_view reason = status == 301 ? "Moved Permanently" : "Moved Temporarily";
    return ResponseTo(invite, status, reason, tag, contact_lines);
  }

  // A response to any other request the B2BUA sent (BYE, CANCEL).
  std::string Ok(const Sent& request) const { return ResponseTo(request, 200, "OK", tag); }

  // A BYE in the dialog `invite` (the B-leg INVITE we answered 2xx) created.
  std::string Bye(const Sent& invite) { return InDialog(invite, "BYE"); }

  // A request in the dialog `invite` created, from our side of it. CSeq 101, 102...;
  // an INVITE carries our Contact and `body` as SDP.
  std::string InDialog(const Sent& invite, std::string_view method, std::string_view body = {}) {
    ++requests;
    last_cseq = 100 + static_cast<uint32_t>(requests);
    std::string out =
        std::string(method) + " " + invite.contact_uri() + " SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:" + std::to_string(port) + ";branch=z9hG4bKcallee" +
        std::to_string(port) + "x" + std::to_string(requests) + ";rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: " + invite.to_header() + ";tag=" + tag + "\r\n"
        "To: " + invite.from() + "\r\n"
        "Call-ID: " + invite.call_id() + "\r\n"
        "CSeq: " + std::to_string(last_cseq) + " " + std::string(method) + "\r\n";
    if (method == "INVITE") out += "Contact: <" + ContactUri() + ">\r\n";
    if (!body.empty()) out += "Content-Type: application/sdp\r\n";
    return out + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
           std::string(body);
  }

  // The ACK for the 2xx to our re-INVITE with CSeq `invite_cseq`.
  std::string AckReInvite(const Sent& invite, uint32_t invite_cseq) {
    ++requests;
    return "ACK " + invite.contact_uri() + " SIP/2.0\r\n"
           "Via: SIP/2.0/UDP 127.0.0.1:" + std::to_string(port) + ";branch=z9hG4bKcallee" +
           std::to_string(port) + "x" + std::to_string(requests) + ";rport\r\n"
           "Max-Forwards: 70\r\n"
           "From: " + invite.to_header() + ";tag=" + tag + "\r\n"
           "To: " + invite.from() + "\r\n"
           "Call-ID: " + invite.call_id() + "\r\n"
           "CSeq: " + std::to_string(invite_cseq) + " ACK\r\n"
           "Content-Length: 0\r\n\r\n";
  }

  uint32_t last_cseq = 0;
};

// ---------------------------------------------------------------------------------------
// Name resolution.

// Plays the shard's RFC 3263 resolver. Records every request; a name listed in `inline_`
// is answered before Resolve() returns (a cache hit), any other waits until the test
// calls Answer() (a DNS round trip).
class FakeResolver final : public TargetResolver {
 public:
  struct Request {
    std::string host;
    uint16_t port = 0;
    std::optional<proto::TransportKind> transport;
    bool sips = false;
    proto::ResolveCallback callback;  // empty once answered
  };

  void Resolve(std::string_view host, uint16_t port,
               std::optional<proto::TransportKind> transport, bool sips,
               proto::ResolveCallback callback) override {
    requests.push_back({std::string(host), port, transport, sips, std::move(callback)});
    for (const auto& [name, result] : inline_)
      if (name == host) return Answer(requests.size() - 1, result);
  }

  /// Answers request `index` now. The engine may resolve again from inside the callback,
  /// so the callback is moved out of `requests` before it runs.
  void Answer(size_t index, const proto::ResolvedTargets& result) {
    ASSERT_LT(index, requests.size());
    ASSERT_TRUE(requests[index].callback) << "request " << index << " was answered already";
    proto::ResolveCallback callback = std::move(requests[index].callback);
    requests[index].callback = nullptr;
    callback(result);
  }

  /// From now on `host` is answered with `result` inside Resolve().
  void AnswerInline(std::string host, proto::ResolvedTargets result) {
    inline_.emplace_back(std::move(host), std::move(result));
  }

  std::vector<std::string> hosts() const {
    std::vector<std::string> out;
    for (const Request& r : requests) out.push_back(r.host);
    return out;
  }

  std::vector<Request> requests;

 private:
  std::vector<std::pair<std::string, proto::ResolvedTargets>> inline_;
};

// A successful resolution to UDP targets given as "IP:PORT", best first.
proto::ResolvedTargets ResolvedTo(std::initializer_list<std::string_view> ip_ports) {
  proto::ResolvedTargets result;
  result.status = proto::ResolveStatus::kOk;
  for (std::string_view ip_port : ip_ports) {
    proto::ResolvedTarget target;
    EXPECT_TRUE(proto::NetAddress::ParseIpPort(ip_port, &target.address)) << ip_port;
    result.targets.push_back(target);
  }
  return result;
}

proto::ResolvedTargets ResolveFailed(proto::ResolveStatus status) {
  proto::ResolvedTargets result;
  result.status = status;
  return result;
}

// ---------------------------------------------------------------------------------------
// The harness: one shard's engine and transaction layer on a fake clock.

class CallEngineTest : public ::testing::Test {
 protected:
  CallEngineTest()
      : wheel_(clock_), sink_(clock_), counters_(std::make_unique<ShardCounters>()) {}

  // No scenario may reach a path the engine counts as its own bug.
  void TearDown() override { EXPECT_EQ(counters_->internal_bugs.Get(), 0u); }

  /// Builds the engine and its transaction layer from `yaml` (the config file text).
  void Start(std::string_view yaml = {}, uint32_t shard_index = 0, uint32_t shard_count = 1) {
    absl::StatusOr<std::shared_ptr<const Config>> parsed = ParseConfig(yaml, "test.yaml");
    ASSERT_TRUE(parsed.ok()) << parsed.status().message();
    config_ = *parsed;
    ShardContext context;
    context.shard_index = shard_index;
    context.shard_count = shard_count;
    context.clock = &clock_;
    context.timers = &wheel_;
    context.sink = &sink_;
    context.counters = counters_.get();
    context.call_records = &records_;
    context.resolver = resolver_;
    context.call_limits = &call_limits_;
    context.redirect_share = redirect_share_;
    ASSERT_TRUE(proto::NetAddress::ParseIp(kLoopback, kB2buaPort, &context.local_address));
    engine_ = std::make_unique<CallEngine>(context, config_);
    proto::TransactionConfig txn;
    txn.t1 = config_->timers.t1;
    txn.t2 = config_->timers.t2;
    txn.t4 = config_->timers.t4;
    layer_ = std::make_unique<proto::TransactionLayer>(txn, wheel_, sink_, *engine_);
    engine_->SetTransactionLayer(layer_.get());
  }

  /// Receives `text` from `from`, as the shard does: parse, validate, hand to the layer,
  /// then end the turn. The receive buffer is scribbled over afterwards, so a view the
  /// engine kept into it would show.
  void Deliver(std::string text, const Peer& from) {
    inbound_ = std::move(text);
    proto::ParseResult result =
        parser_.Parse(inbound_, proto::Framing::kDatagram, inbound_msg_.get());
    ASSERT_EQ(result.status, proto::ParseStatus::kComplete)
        << proto::DefectText(result.problem.defect) << "\n" << inbound_;
    if (inbound_msg_->is_request()) {
      proto::Problem problem = proto::ValidateRequest(*inbound_msg_, proto::RequestPolicy{});
      ASSERT_FALSE(problem) << proto::DefectText(problem.defect) << "\n" << inbound_;
    } else {
      proto::Problem problem = proto::ValidateResponse(*inbound_msg_);
      ASSERT_FALSE(problem) << proto::DefectText(problem.defect) << "\n" << inbound_;
    }
    layer_->OnMessage(*inbound_msg_, from);
    engine_->CollectEndedCalls();
    inbound_.assign(inbound_.size(), '#');
  }

  /// Moves the clock by `by`, firing every timer on the way at (or just after) its
  /// deadline, and ending the turn after each batch.
  void Advance(proto::Duration by) {
    const proto::TimePoint end = clock_.Now() + by;
    wheel_.Advance();
    engine_->CollectEndedCalls();
    while (clock_.Now() < end) {
      proto::TimePoint to = end;
      std::optional<proto::TimePoint> next = wheel_.NextDeadline();
      if (next && *next < end) to = std::min(end, std::max(*next, clock_.Now() + 1ms));
      clock_.Set(to);
      wheel_.Advance();
      engine_->CollectEndedCalls();
    }
  }

  std::vector<Sent> TakeSent() { return sink_.Take(); }

  uint64_t Ended(CallOutcome outcome) const {
    return counters_->calls_ended[static_cast<size_t>(outcome)].Get();
  }
  uint64_t Targets(TargetOutcome outcome) const {
    return counters_->redirect_targets[static_cast<size_t>(outcome)].Get();
  }
  uint64_t Failures(RedirectFailure failure) const {
    return counters_->redirect_failures[static_cast<size_t>(failure)].Get();
  }
  uint64_t RedirectsReceived(RedirectCode code) const {
    return counters_->redirects_received[static_cast<size_t>(code)].Get();
  }

  /// The caller's INVITE goes out; returns the one B-leg INVITE sent to `callee_port`.
  std::optional<Sent> Invite(Caller& caller, uint16_t callee_port = 5070) {
    Deliver(caller.Invite(), caller.peer());
    std::vector<Sent> out = TakeSent();
    std::vector<Sent> invites = RequestsTo(out, callee_port, Method::kInvite);
    EXPECT_EQ(invites.size(), 1u) << "INVITEs sent to " << callee_port;
    if (invites.size() != 1) return std::nullopt;
    return invites[0];
  }

  /// A whole set-up: INVITE, 180, 200, caller's ACK. Returns the B-leg INVITE; the caller
  /// has learned its To tag and the outbox is empty.
  std::optional<Sent> EstablishCall(Caller& caller, const Callee& callee) {
    std::optional<Sent> invite = Invite(caller, callee.port);
    if (!invite) return std::nullopt;
    Deliver(callee.Answer(*invite, 180, "Ringing"), callee.peer());
    Deliver(callee.Answer(*invite, 200, "OK", kAnswerSdp), callee.peer());
    std::vector<Sent> to_caller = WithStatus(ResponsesTo(TakeSent(), caller.source_port), 200);
    EXPECT_EQ(to_caller.size(), 1u);
    if (to_caller.empty()) return std::nullopt;
    caller.to_tag = to_caller[0].to_tag();
    Deliver(caller.Ack2xx(), caller.peer());
    TakeSent();
    return invite;
  }

  proto::FakeClock clock_;
  proto::TimerWheel wheel_;
  RecordingSink sink_;
  // Host names are resolved through this when a test sets it before Start(); null (the
  // default) leaves the engine without a resolver, as before names were supported.
  TargetResolver* resolver_ = nullptr;
  std::unique_ptr<ShardCounters> counters_;
  SharedCallLimits call_limits_;
  // Set before Start() to see what the engine shares with the other shards.
  RedirectShare* redirect_share_ = nullptr;
  struct RecordedLines final : CallRecordSink {
    void OnCallRecord(std::string_view line) override { lines.emplace_back(line); }
    std::vector<std::string> lines;
  } records_;
  std::shared_ptr<const Config> config_;
  // Destroyed before the engine, which it calls back.
  std::unique_ptr<CallEngine> engine_;
  std::unique_ptr<proto::TransactionLayer> layer_;

  proto::SipParser parser_;
  std::string inbound_;
  std::unique_ptr<SipMessage> inbound_msg_ = std::make_unique<SipMessage>();
};

// Tests that fail against the current b2bua/call_engine.cc. Each is named after the
// behaviour it expects and carries a "BUG:" comment naming the code at fault; they stay
// enabled so that the failures stay visible until the engine is fixed.
class CallEngineEdgeTest : public CallEngineTest {};

// The checks every redirect retry must pass against the B-leg INVITE before it
// (RFC 3261 8.1.3.4: same Call-ID, From and To, new CSeq and branch, Request-URI = target).
void ExpectRetryOf(const Sent& previous, const Sent& retry, std::string_view target) {
  EXPECT_EQ(retry.request_uri(), target);
  EXPECT_EQ(retry.call_id(), previous.call_id());
  EXPECT_EQ(retry.from(), previous.from());
  EXPECT_EQ(retry.to_header(), previous.to_header());
  EXPECT_GT(retry.cseq(), previous.cseq());
  EXPECT_NE(retry.branch(), previous.branch());
  EXPECT_THAT(retry.branch(), StartsWith("z9hG4bK"));
}

// ---------------------------------------------------------------------------------------
// Basic calls.

TEST_F(CallEngineTest, BasicCallIsBridgedWithTopologyHidden) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;

  Deliver(caller.Invite(), caller.peer());
  std::vector<Sent> out = TakeSent();
  ASSERT_FALSE(out.empty());
  // 100 Trying goes back at once, before anything else.
  EXPECT_EQ(out[0].port(), kCallerPort);
  EXPECT_EQ(out[0].status(), 100);
  EXPECT_EQ(out[0].call_id(), caller.call_id);
  std::vector<Sent> invites = RequestsTo(out, 5070, Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  const Sent& b = invites[0];
  EXPECT_EQ(b.ip(), "127.0.0.1");

  // The B-leg INVITE: the caller's Request-URI (no routes), a dialog of its own.
  EXPECT_EQ(b.request_uri(), caller.request_uri);
  EXPECT_NE(b.call_id(), caller.call_id);
  EXPECT_FALSE(b.call_id().empty());
  EXPECT_NE(b.from_tag(), caller.from_tag);
  EXPECT_FALSE(b.from_tag().empty());
  EXPECT_TRUE(b.to_tag().empty());
  ASSERT_EQ(b.msg().via_count(), 1u);
  const proto::Via& via = *b.msg().top_via();
  EXPECT_EQ(via.host, "127.0.0.1");
  EXPECT_EQ(via.port, kB2buaPort);
  EXPECT_THAT(std::string(via.branch), StartsWith("z9hG4bK"));
  EXPECT_EQ(b.Header("Contact"), "<sip:b2bua@127.0.0.1:5060>");
  EXPECT_EQ(b.msg().max_forwards(), caller.max_forwards - 1);
  EXPECT_EQ(b.msg().from().display_name, "Alice Liddell");
  EXPECT_EQ(b.msg().from().uri.text, "sip:alice@atlanta.example.com");
  EXPECT_EQ(b.msg().to().display_name, "Bob");
  EXPECT_EQ(b.msg().to().uri.text, "sip:bob@biloxi.example.com");
  EXPECT_EQ(b.body(), kOfferSdp);
  EXPECT_EQ(b.msg().content_type(), "application/sdp");
  EXPECT_EQ(b.cseq_method(), "INVITE");
  // Headers on the default pass list go through; unknown ones do not.
  EXPECT_EQ(b.Header("User-Agent"), "CallerUA/1.0");
  EXPECT_FALSE(b.HasHeader("X-Caller-Secret"));
  EXPECT_FALSE(b.HasHeader("History-Info"));

  // Topology hiding: nothing that names the caller's dialog or address.
  for (std::string_view secret :
       {std::string_view(caller.call_id), std::string_view(caller.from_tag),
        std::string_view(caller.branch), std::string_view("127.0.0.1:5061"),
        Caller::kContactUri}) {
    EXPECT_THAT(b.bytes(), Not(HasSubstr(std::string(secret)))) << secret;
  }

  // 180: relayed with our To tag and Contact, not the callee's.
  Deliver(bob.Answer(b, 180, "Ringing"), bob.peer());
  out = TakeSent();
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  const Sent ringing = to_caller[0];
  EXPECT_EQ(ringing.status(), 180);
  EXPECT_EQ(ringing.call_id(), caller.call_id);
  EXPECT_EQ(ringing.from_tag(), caller.from_tag);
  EXPECT_EQ(ringing.cseq(), caller.cseq);
  EXPECT_EQ(ringing.branch(), caller.branch);
  EXPECT_FALSE(ringing.to_tag().empty());
  EXPECT_NE(ringing.to_tag(), bob.tag);
  EXPECT_EQ(ringing.Header("Contact"), "<sip:b2bua@127.0.0.1:5060>");
  EXPECT_THAT(ringing.bytes(), Not(HasSubstr(bob.ContactUri())));
  EXPECT_THAT(ringing.bytes(), Not(HasSubstr(b.call_id())));

  // 200: relayed with the answer SDP, our Contact, the same To tag as the 180.
  Deliver(bob.Answer(b, 200, "OK", kAnswerSdp), bob.peer());
  out = TakeSent();
  to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  const Sent ok = to_caller[0];
  EXPECT_EQ(ok.status(), 200);
  EXPECT_EQ(ok.body(), kAnswerSdp);
  EXPECT_EQ(ok.msg().content_type(), "application/sdp");
  EXPECT_EQ(ok.Header("Contact"), "<sip:b2bua@127.0.0.1:5060>");
  EXPECT_EQ(ok.to_tag(), ringing.to_tag());
  EXPECT_EQ(ok.call_id(), caller.call_id);
  EXPECT_THAT(ok.bytes(), Not(HasSubstr(bob.ContactUri())));
  EXPECT_THAT(ok.bytes(), Not(HasSubstr(bob.tag)));
  // Nothing goes to the callee before the caller's ACK (the ACK is end to end).
  EXPECT_THAT(RequestsTo(out, 5070, Method::kAck), IsEmpty());
  EXPECT_EQ(counters_->calls_active.Get(), 1u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 2u);

  // Caller's ACK: an ACK on the B-leg, to the callee's Contact, CSeq of the INVITE.
  caller.to_tag = ok.to_tag();
  Deliver(caller.Ack2xx(), caller.peer());
  out = TakeSent();
  std::vector<Sent> acks = RequestsTo(out, 5070, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].request_uri(), bob.ContactUri());
  EXPECT_EQ(acks[0].cseq(), b.cseq());
  EXPECT_EQ(acks[0].cseq_method(), "ACK");
  EXPECT_EQ(acks[0].call_id(), b.call_id());
  EXPECT_EQ(acks[0].from_tag(), b.from_tag());
  EXPECT_EQ(acks[0].to_tag(), bob.tag);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());

  // A 200 retransmitted by the callee after our ACK is ACKed again, not relayed.
  Deliver(bob.Answer(b, 200, "OK", kAnswerSdp), bob.peer());
  out = TakeSent();
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  std::vector<Sent> re_acks = RequestsTo(out, 5070, Method::kAck);
  ASSERT_EQ(re_acks.size(), 1u);
  EXPECT_EQ(re_acks[0].bytes(), acks[0].bytes());

  // Caller's BYE: answered 200, and a BYE goes to the callee in the B-leg dialog.
  Deliver(caller.Bye(), caller.peer());
  out = TakeSent();
  to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].cseq_method(), "BYE");
  std::vector<Sent> byes = RequestsTo(out, 5070, Method::kBye);
  ASSERT_EQ(byes.size(), 1u);
  EXPECT_EQ(byes[0].request_uri(), bob.ContactUri());
  EXPECT_EQ(byes[0].call_id(), b.call_id());
  EXPECT_EQ(byes[0].from_tag(), b.from_tag());
  EXPECT_EQ(byes[0].to_tag(), bob.tag);
  EXPECT_GT(byes[0].cseq(), b.cseq());
  Deliver(bob.Ok(byes[0]), bob.peer());

  EXPECT_EQ(Ended(CallOutcome::kAnswered), 1u);
  EXPECT_EQ(counters_->calls_active.Get(), 0u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 0u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(CallEngineTest, CallerLeg2xxIsRetransmittedWithDoublingIntervalUntilAck) {
  ASSERT_NO_FATAL_FAILURE(Start());  // T1 500ms, T2 4s
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> oks = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200);
  ASSERT_EQ(oks.size(), 1u);

  // The callee's own retransmissions of its 200 are not relayed: the core paces the A-leg.
  Advance(200ms);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  EXPECT_THAT(ResponsesTo(TakeSent(), kCallerPort), IsEmpty());

  Advance(15s);  // up to t0 + 15.2s: re-sent at t0 + 0.5, 1.5, 3.5, 7.5 and 11.5s
  std::vector<Sent> more = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200);
  ASSERT_EQ(more.size(), 5u);
  oks.insert(oks.end(), more.begin(), more.end());
  // Intervals T1, 2T1, 4T1, then capped at T2 (RFC 3261 13.3.1.4). One wheel tick of slack.
  const std::vector<proto::Duration> expected = {500ms, 1000ms, 2000ms, 4000ms, 4000ms};
  for (size_t i = 0; i < expected.size(); ++i) {
    proto::Duration gap = oks[i + 1].at() - oks[i].at();
    EXPECT_GE(gap, expected[i] - 1ms) << "retransmission " << i + 1;
    EXPECT_LE(gap, expected[i] + 10ms) << "retransmission " << i + 1;
    EXPECT_EQ(oks[i + 1].bytes(), oks[0].bytes()) << "retransmission " << i + 1;
  }

  caller.to_tag = oks[0].to_tag();
  Deliver(caller.Ack2xx(), caller.peer());
  EXPECT_EQ(RequestsTo(TakeSent(), 5070, Method::kAck).size(), 1u);
  Advance(30s);
  EXPECT_THAT(ResponsesTo(TakeSent(), kCallerPort), IsEmpty());
  EXPECT_EQ(engine_->active_calls(), 1u);
}

TEST_F(CallEngineTest, CalleeStill2xxRetransmittingAfter64T1IsAckedAgainNotHungUp) {
  ASSERT_NO_FATAL_FAILURE(Start());  // T1 500ms: the stored ACK is kept for 32 s
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> oks = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200);
  ASSERT_EQ(oks.size(), 1u);
  caller.to_tag = oks[0].to_tag();
  Deliver(caller.Ack2xx(), caller.peer());
  std::vector<Sent> acks = RequestsTo(TakeSent(), 5070, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);

  Advance(10s);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> again = RequestsTo(TakeSent(), 5070, Method::kAck);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].bytes(), acks[0].bytes());  // within 64*T1: the very same ACK

  Advance(40s);  // the stored ACK is forgotten; a late retransmission still gets one
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> late = RequestsTo(out, 5070, Method::kAck);
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].request_uri(), acks[0].request_uri());
  EXPECT_EQ(late[0].call_id(), acks[0].call_id());
  EXPECT_EQ(late[0].cseq(), acks[0].cseq());
  EXPECT_EQ(late[0].from_tag(), acks[0].from_tag());
  EXPECT_EQ(late[0].to_tag(), bob.tag);
  EXPECT_THAT(RequestsTo(out, 5070, Method::kBye), IsEmpty());
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  EXPECT_EQ(engine_->active_calls(), 1u);
}

// RFC 3261 15: a callee must not send BYE before its 2xx. One that does gets 481; the
// caller's INVITE still gets its final answer, so no transaction waits forever.
TEST_F(CallEngineTest, CalleeByeBeforeAnsweringGets481AndTheCallGoesOn) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  TakeSent();
  Deliver(bob.Bye(*b), bob.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> to_bob = ResponsesTo(out, 5070);
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].status(), 481);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  EXPECT_EQ(engine_->active_calls(), 1u);

  Deliver(bob.Answer(*b, 486, "Busy Here"), bob.peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 486);
  EXPECT_EQ(engine_->active_calls(), 0u);
  Advance(40s);
  EXPECT_EQ(layer_->size(), 0u) << "no transaction left waiting";
}

TEST_F(CallEngineTest, CalleeByeIsRelayedToCallerInTheCallersDialog) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);

  Deliver(bob.Bye(*b), bob.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> to_bob = ResponsesTo(out, 5070);
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].status(), 200);
  EXPECT_EQ(to_bob[0].cseq_method(), "BYE");

  std::vector<Sent> byes = RequestsTo(out, kCallerPort, Method::kBye);
  ASSERT_EQ(byes.size(), 1u);
  const Sent& bye = byes[0];
  EXPECT_EQ(bye.request_uri(), Caller::kContactUri);
  EXPECT_EQ(bye.call_id(), caller.call_id);
  // From/To swapped: we are the caller's "Bob" with the tag it learned from our 200.
  EXPECT_EQ(bye.msg().from().uri.text, "sip:bob@biloxi.example.com");
  EXPECT_EQ(bye.from_tag(), caller.to_tag);
  EXPECT_EQ(bye.msg().to().uri.text, "sip:alice@atlanta.example.com");
  EXPECT_EQ(bye.to_tag(), caller.from_tag);
  EXPECT_GT(bye.msg().max_forwards(), 0);
  EXPECT_THAT(bye.bytes(), Not(HasSubstr(b->call_id())));
  EXPECT_THAT(bye.bytes(), Not(HasSubstr(bob.tag)));
  Deliver(ResponseTo(bye, 200, "OK", {}), caller.peer());

  EXPECT_EQ(Ended(CallOutcome::kAnswered), 1u);
  EXPECT_EQ(counters_->calls_active.Get(), 0u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 0u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

// ---------------------------------------------------------------------------------------
// CANCEL.

TEST_F(CallEngineTest, CallerCancelAfterRingingCancelsTheBLeg) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  TakeSent();

  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 2u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].cseq_method(), "CANCEL");
  EXPECT_EQ(to_caller[1].status(), 487);
  EXPECT_EQ(to_caller[1].cseq_method(), "INVITE");
  std::vector<Sent> cancels = RequestsTo(out, 5070, Method::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].branch(), b->branch());
  EXPECT_EQ(cancels[0].cseq(), b->cseq());
  EXPECT_EQ(cancels[0].request_uri(), b->request_uri());
  EXPECT_EQ(cancels[0].call_id(), b->call_id());
  EXPECT_EQ(cancels[0].from(), b->from());

  caller.to_tag = to_caller[1].to_tag();
  Deliver(caller.AckFailure(), caller.peer());
  Deliver(bob.Ok(cancels[0]), bob.peer());
  Deliver(bob.Answer(*b, 487, "Request Terminated"), bob.peer());
  out = TakeSent();
  // The 487 is ACKed by the INVITE client transaction (same branch, the callee's tag).
  std::vector<Sent> acks = RequestsTo(out, 5070, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].branch(), b->branch());
  EXPECT_EQ(acks[0].to_tag(), bob.tag);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());

  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(Ended(CallOutcome::kCancelled), 1u);
  EXPECT_EQ(counters_->calls_active.Get(), 0u);
}

TEST_F(CallEngineTest, CancelBeforeAnyProvisionalIsHeldUntilTheCalleeRings) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);

  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(200, 487));
  // RFC 3261 9.1: no CANCEL before a provisional response.
  EXPECT_THAT(RequestsTo(out, 5070, Method::kCancel), IsEmpty());

  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  out = TakeSent();
  std::vector<Sent> cancels = RequestsTo(out, 5070, Method::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].branch(), b->branch());
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty()) << "180 after the 487 is not relayed";

  Deliver(bob.Ok(cancels[0]), bob.peer());
  Deliver(bob.Answer(*b, 487, "Request Terminated"), bob.peer());
  EXPECT_EQ(RequestsTo(TakeSent(), 5070, Method::kAck).size(), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(Ended(CallOutcome::kCancelled), 1u);
}

TEST_F(CallEngineTest, AnswerCrossingTheCallersCancelIsAckedAndReleased) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> cancels = RequestsTo(TakeSent(), 5070, Method::kCancel);
  ASSERT_EQ(cancels.size(), 1u);

  // The callee answered before it saw the CANCEL.
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kAck).size(), 1u);
  std::vector<Sent> byes = RequestsTo(out, 5070, Method::kBye);
  ASSERT_EQ(byes.size(), 1u);
  EXPECT_EQ(byes[0].to_tag(), bob.tag);
  EXPECT_EQ(byes[0].request_uri(), bob.ContactUri());
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  Deliver(bob.Ok(cancels[0]), bob.peer());
  Deliver(bob.Ok(byes[0]), bob.peer());

  Advance(40s);
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(counters_->calls_active.Get(), 0u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 0u);
}

// ---------------------------------------------------------------------------------------
// Final failures and next-hop failover.

TEST_F(CallEngineTest, BusyIsRelayedToTheCaller) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 486, "Busy Here"), bob.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kAck).size(), 1u);
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 486);
  EXPECT_EQ(to_caller[0].call_id(), caller.call_id);
  EXPECT_FALSE(to_caller[0].to_tag().empty());
  EXPECT_NE(to_caller[0].to_tag(), bob.tag);
  EXPECT_EQ(Ended(CallOutcome::kRejected), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);

  caller.to_tag = to_caller[0].to_tag();
  Deliver(caller.AckFailure(), caller.peer());
  EXPECT_THAT(TakeSent(), IsEmpty());
}

TEST_F(CallEngineTest, ServiceUnavailableFromTheOnlyHopEndsTheCall) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 503, "Service Unavailable"), bob.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  // RFC 3261 16.7 would turn a 503 into 500; relaying it is the other accepted choice.
  EXPECT_THAT(to_caller[0].status(), AnyOf(500, 503));
  EXPECT_EQ(RequestsOf(out, Method::kInvite).size(), 0u) << "there is no other hop";
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(counters_->calls_active.Get(), 0u);
}

TEST_F(CallEngineTest, RouteFailsOverToTheNextHopOn503) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: "555"
    next_hops: ["sip:127.0.0.1:5070", "sip:127.0.0.1:5071"]
)yaml"));
  Caller caller;
  caller.request_uri = "sip:5551234@b2bua.example.net";
  Callee a{5070, "hop-a", "hopa"};
  Callee b{5071, "hop-b", "hopb"};
  std::optional<Sent> first = Invite(caller, 5070);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->request_uri(), caller.request_uri);

  Deliver(a.Answer(*first, 503, "Service Unavailable"), a.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kAck).size(), 1u);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  std::vector<Sent> second = RequestsTo(out, 5071, Method::kInvite);
  ASSERT_EQ(second.size(), 1u);
  ExpectRetryOf(*first, second[0], caller.request_uri);
  EXPECT_EQ(second[0].body(), kOfferSdp);

  Deliver(b.Answer(second[0], 200, "OK", kAnswerSdp), b.peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].body(), kAnswerSdp);
  caller.to_tag = to_caller[0].to_tag();
  Deliver(caller.Ack2xx(), caller.peer());
  std::vector<Sent> acks = RequestsTo(TakeSent(), 5071, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].cseq(), second[0].cseq());
}

// ---------------------------------------------------------------------------------------
// Redirects.

constexpr std::string_view kThreeContacts =
    "Contact: <sip:t1@127.0.0.1:5071>;q=0.2\r\n"
    "Contact: <sip:t2@127.0.0.1:5072>;q=1.0, <sip:t3@127.0.0.1:5073>;q=0.5\r\n";

TEST_F(CallEngineTest, RedirectIsFollowedInQOrderUntilATargetAnswers) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  Callee t2{5072, "t2", "tag2"};
  Callee t3{5073, "t3", "tag3"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);

  Deliver(bob.Redirect(*first, 302, kThreeContacts), bob.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kAck).size(), 1u) << "the 302 is ACKed";
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u) << "the 3xx is not relayed";
  EXPECT_EQ(to_caller[0].status(), 181);
  const std::string a_tag = to_caller[0].to_tag();
  EXPECT_FALSE(a_tag.empty());
  EXPECT_THAT(RequestsTo(out, 5071, Method::kInvite), IsEmpty());
  EXPECT_THAT(RequestsTo(out, 5073, Method::kInvite), IsEmpty());
  std::vector<Sent> to_t2 = RequestsTo(out, 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u) << "highest q first";
  ExpectRetryOf(*first, to_t2[0], "sip:t2@127.0.0.1:5072");
  EXPECT_EQ(to_t2[0].body(), kOfferSdp);
  EXPECT_EQ(to_t2[0].msg().max_forwards(), caller.max_forwards - 2);
  std::string history = to_t2[0].Header("History-Info");
  EXPECT_THAT(history, HasSubstr(caller.request_uri));
  EXPECT_THAT(history, HasSubstr("sip:t2@127.0.0.1:5072"));
  EXPECT_THAT(history, HasSubstr("rc=302"));

  Deliver(t2.Answer(to_t2[0], 503, "Service Unavailable"), t2.peer());
  out = TakeSent();
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  std::vector<Sent> to_t3 = RequestsTo(out, 5073, Method::kInvite);
  ASSERT_EQ(to_t3.size(), 1u);
  ExpectRetryOf(to_t2[0], to_t3[0], "sip:t3@127.0.0.1:5073");
  EXPECT_THAT(to_t3[0].Header("History-Info"), HasSubstr("sip:t3@127.0.0.1:5073"));

  Deliver(t3.Answer(to_t3[0], 486, "Busy Here"), t3.peer());
  out = TakeSent();
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  std::vector<Sent> to_t1 = RequestsTo(out, 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);
  ExpectRetryOf(to_t3[0], to_t1[0], "sip:t1@127.0.0.1:5071");
  EXPECT_THAT(to_t1[0].Header("History-Info"), HasSubstr("sip:t1@127.0.0.1:5071"));

  Deliver(t1.Answer(to_t1[0], 200, "OK", kAnswerSdp), t1.peer());
  to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].body(), kAnswerSdp);
  EXPECT_EQ(to_caller[0].to_tag(), a_tag);
  caller.to_tag = a_tag;
  Deliver(caller.Ack2xx(), caller.peer());
  std::vector<Sent> acks = RequestsTo(TakeSent(), 5071, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].cseq(), to_t1[0].cseq());

  EXPECT_EQ(RedirectsReceived(RedirectCode::k302), 1u);
  EXPECT_EQ(Targets(TargetOutcome::kFailed), 2u);
  EXPECT_EQ(Targets(TargetOutcome::kAnswered), 1u);
  EXPECT_EQ(counters_->redirects_sent.Get(), 0u);

  // The call record lists every hop in the order tried, with q, state and status.
  EXPECT_THAT(records_.lines, IsEmpty()) << "written when the call ends, not before";
  caller.to_tag = a_tag;
  Deliver(caller.Bye(), caller.peer());
  ASSERT_EQ(records_.lines.size(), 1u);
  const std::string& line = records_.lines[0];
  EXPECT_THAT(line, HasSubstr("outcome=answered"));
  EXPECT_THAT(line, HasSubstr("depth=1"));
  const size_t hop_t2 = line.find("{target=\"sip:t2@127.0.0.1:5072\" q=1.000 state=failed status=503");
  const size_t hop_t3 = line.find("{target=\"sip:t3@127.0.0.1:5073\" q=0.500 state=failed status=486");
  const size_t hop_t1 = line.find("{target=\"sip:t1@127.0.0.1:5071\" q=0.200 state=answered status=200");
  ASSERT_NE(hop_t2, std::string::npos) << line;
  ASSERT_NE(hop_t3, std::string::npos) << line;
  ASSERT_NE(hop_t1, std::string::npos) << line;
  EXPECT_LT(hop_t2, hop_t3);
  EXPECT_LT(hop_t3, hop_t1);
}

// RFC 3261 12.1.1: a provisional response with a To tag creates an early dialog, so the
// 181 the B2BUA makes up must carry a Contact like the 180 it relays does.
// Was a bug: b2bua/call_engine.cc OnRedirect() (the 181 block, ~line 950) writes no Contact.
TEST_F(CallEngineEdgeTest, CallIsBeingForwarded181CarriesContact) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), bob.peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 181);
  EXPECT_FALSE(to_caller[0].to_tag().empty());
  EXPECT_EQ(to_caller[0].Header("Contact"), "<sip:b2bua@127.0.0.1:5060>");
}

TEST_F(CallEngineTest, RedirectBackToTheFirstCalleeIsALoopAnswered482) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t1@127.0.0.1:5071>\r\n"), bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);

  Deliver(t1.Redirect(to_t1[0], 302, "Contact: <sip:bob@127.0.0.1:5070>\r\n"), t1.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5070, Method::kInvite), IsEmpty()) << "never back to bob";
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 482);
  EXPECT_THAT(to_caller[0].Header("Reason"), HasSubstr("cause=482"));
  EXPECT_GT(counters_->redirect_loops_detected.Get(), 0u);
  EXPECT_EQ(Failures(RedirectFailure::kLoop), 1u);
  EXPECT_EQ(Targets(TargetOutcome::kSkippedAsLoop), 1u);
  EXPECT_EQ(Ended(CallOutcome::kRedirectFailed), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
  // A call that never got up writes its record from the live search.
  ASSERT_EQ(records_.lines.size(), 1u);
  EXPECT_THAT(records_.lines[0], HasSubstr("outcome=redirect_failed"));
  EXPECT_THAT(records_.lines[0], HasSubstr("depth=2 loops=1"));
  EXPECT_THAT(records_.lines[0],
              HasSubstr("{target=\"sip:t1@127.0.0.1:5071\" q=1.000 state=redirected status=302"));
}

TEST_F(CallEngineTest, ContactNamingTheB2buaItselfIsNeverTried) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  // Both name 127.0.0.1:5060 (the second through the default port).
  Deliver(bob.Redirect(*first, 302,
                       "Contact: <sip:b2bua@127.0.0.1:5060>, <sip:anyone@127.0.0.1>\r\n"),
          bob.peer());
  std::vector<Sent> out = TakeSent();
  for (const Sent& s : out) EXPECT_NE(s.port(), kB2buaPort) << s.bytes();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 482);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_THAT(finals[0].Header("Reason"), HasSubstr("482"));
  EXPECT_EQ(Targets(TargetOutcome::kSkippedAsLoop), 2u);
  EXPECT_EQ(counters_->redirect_loops_detected.Get(), 2u);
  EXPECT_EQ(Failures(RedirectFailure::kLoop), 1u);
}

TEST_F(CallEngineTest, RedirectDeeperThanMaxDepthAnswers483) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {max_depth: 1}\n"));
  Caller caller;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t1@127.0.0.1:5071>\r\n"), bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);

  Deliver(t1.Redirect(to_t1[0], 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), t1.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5072, Method::kInvite), IsEmpty());
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 483);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(Failures(RedirectFailure::kDepth), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(CallEngineTest, RelayModeHandsTheCallerThe3xxContactsByteForByte) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {mode: relay}\n"));
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, kThreeContacts), bob.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_EQ(RequestsOf(out, Method::kInvite).size(), 0u);
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u) << "no 181 either";
  EXPECT_EQ(to_caller[0].status(), 302);
  EXPECT_THAT(to_caller[0].bytes(), HasSubstr(std::string(kThreeContacts)));
  EXPECT_THAT(to_caller[0].Headers("Contact"),
              ElementsAre("<sip:t1@127.0.0.1:5071>;q=0.2",
                          "<sip:t2@127.0.0.1:5072>;q=1.0, <sip:t3@127.0.0.1:5073>;q=0.5"));
  EXPECT_EQ(to_caller[0].call_id(), caller.call_id);
  EXPECT_EQ(counters_->redirects_sent.Get(), 1u);
  EXPECT_EQ(Ended(CallOutcome::kRedirectSent), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

// RFC 3261 8.1.3.4 / 21.3.6: a 305's Contact is the proxy to reach the same target
// through; the Request-URI stays the caller's and the proxy becomes a loose Route.
TEST_F(CallEngineTest, UseProxy305RetriesTheSameTargetThroughTheProxy) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 305, "Contact: <sip:proxy@127.0.0.1:5075>\r\n"), bob.peer());
  std::vector<Sent> via_proxy = RequestsTo(TakeSent(), 5075, Method::kInvite);
  ASSERT_EQ(via_proxy.size(), 1u) << "the retry goes to the proxy";
  EXPECT_EQ(via_proxy[0].request_uri(), caller.request_uri) << "not to a new target";
  EXPECT_EQ(via_proxy[0].Header("Route"), "<sip:proxy@127.0.0.1:5075;lr>");
  EXPECT_EQ(via_proxy[0].call_id(), first->call_id()) << "same B-leg Call-ID";
  EXPECT_GT(via_proxy[0].cseq(), first->cseq());
  EXPECT_EQ(RedirectsReceived(RedirectCode::k305), 1u);
}

// RFC 5806: with `diversion: true` (and History-Info off) each retargeted INVITE names
// the original target in a Diversion header.
TEST_F(CallEngineTest, DiversionNamesTheOriginalTargetWhenConfigured) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {diversion: true, history_info: false}\n"));
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), bob.peer());
  std::vector<Sent> retry = RequestsTo(TakeSent(), 5072, Method::kInvite);
  ASSERT_EQ(retry.size(), 1u);
  EXPECT_EQ(retry[0].Header("Diversion"), "<" + caller.request_uri + ">;reason=unconditional");
  EXPECT_EQ(retry[0].Header("History-Info"), "") << "History-Info is off";
}

// In a chain each retry is diverted from the target that redirected it, and a 305 met
// deep in the chain re-sends that target's own Request-URI through the proxy.
TEST_F(CallEngineTest, DiversionAndUseProxyFollowTheTargetThatRedirected) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {diversion: true}\n"));
  Caller caller;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t1@127.0.0.1:5071>\r\n"), bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);
  EXPECT_EQ(to_t1[0].Header("Diversion"), "<" + caller.request_uri + ">;reason=unconditional");

  Deliver(t1.Redirect(to_t1[0], 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), t1.peer());
  std::vector<Sent> to_t2 = RequestsTo(TakeSent(), 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u);
  EXPECT_EQ(to_t2[0].Header("Diversion"), "<sip:t1@127.0.0.1:5071>;reason=unconditional");
  EXPECT_THAT(to_t2[0].Header("History-Info"),
              StartsWith("<" + caller.request_uri + ">;index=1, <sip:t1@127.0.0.1:5071>"));

  Deliver(t2.Redirect(to_t2[0], 305, "Contact: <sip:proxy@127.0.0.1:5075>\r\n"), t2.peer());
  std::vector<Sent> via_proxy = RequestsTo(TakeSent(), 5075, Method::kInvite);
  ASSERT_EQ(via_proxy.size(), 1u);
  EXPECT_EQ(via_proxy[0].request_uri(), "sip:t2@127.0.0.1:5072") << "t2's request, again";
  EXPECT_EQ(via_proxy[0].Header("Route"), "<sip:proxy@127.0.0.1:5075;lr>");
}

TEST_F(CallEngineTest, TargetInADeniedCidrIsRefusedAndNeverInvited) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(redirect: {deny: {cidrs: ["127.0.0.99/32"]}})yaml"));
  Caller caller;
  Callee bob;
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302,
                       "Contact: <sip:evil@127.0.0.99:5070>;q=1.0\r\n"
                       "Contact: <sip:t2@127.0.0.1:5072>;q=0.5\r\n"),
          bob.peer());
  std::vector<Sent> out = TakeSent();
  for (const Sent& s : out) EXPECT_NE(s.ip(), "127.0.0.99") << s.bytes();
  EXPECT_EQ(Targets(TargetOutcome::kRefusedByPolicy), 1u);
  std::vector<Sent> to_t2 = RequestsTo(out, 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u);
  EXPECT_EQ(to_t2[0].ip(), "127.0.0.1");

  Deliver(t2.Answer(to_t2[0], 200, "OK", kAnswerSdp), t2.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}

TEST_F(CallEngineTest, OnlyDeniedTargetsAnswer403) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(redirect: {deny: {cidrs: ["127.0.0.99/32"]}})yaml"));
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:evil@127.0.0.99:5070>\r\n"), bob.peer());
  std::vector<Sent> out = TakeSent();
  for (const Sent& s : out) EXPECT_NE(s.ip(), "127.0.0.99") << s.bytes();
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 403);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_THAT(finals[0].Header("Reason"), HasSubstr("403"));
  EXPECT_EQ(Failures(RedirectFailure::kAllRefused), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

// Was a bug: b2bua/call_engine.cc OnRedirect() ~line 938 tests `from < 0`, but `from` (line 922)
// is never negative, so no 301 is ever cached.
TEST_F(CallEngineEdgeTest, Permanent301IsCachedForTheNextCallToTheSameUri) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Callee bob;
  Callee t2{5072, "t2", "tag2"};
  {
    Caller first_caller;
    std::optional<Sent> first = Invite(first_caller);
    ASSERT_TRUE(first);
    Deliver(bob.Redirect(*first, 301, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), bob.peer());
    std::vector<Sent> to_t2 = RequestsTo(TakeSent(), 5072, Method::kInvite);
    ASSERT_EQ(to_t2.size(), 1u);
    Deliver(t2.Answer(to_t2[0], 200, "OK", kAnswerSdp), t2.peer());
    std::vector<Sent> oks = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200);
    ASSERT_EQ(oks.size(), 1u);
    first_caller.to_tag = oks[0].to_tag();
    Deliver(first_caller.Ack2xx(), first_caller.peer());
    Deliver(first_caller.Bye(), first_caller.peer());
    std::vector<Sent> byes = RequestsTo(TakeSent(), 5072, Method::kBye);
    ASSERT_EQ(byes.size(), 1u);
    Deliver(t2.Ok(byes[0]), t2.peer());
    ASSERT_EQ(engine_->active_calls(), 0u);
    EXPECT_EQ(RedirectsReceived(RedirectCode::k301), 1u);
  }

  Caller second_caller;
  second_caller.call_id = "second-call@pc33.atlanta.example.com";
  second_caller.from_tag = "77aa";
  second_caller.branch = "z9hG4bKsecond";
  Deliver(second_caller.Invite(), second_caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5070, Method::kInvite), IsEmpty()) << "bob moved permanently";
  std::vector<Sent> to_t2 = RequestsTo(out, 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u);
  EXPECT_EQ(to_t2[0].request_uri(), "sip:t2@127.0.0.1:5072");
  EXPECT_EQ(counters_->redirect_cache_hits.Get(), 1u);
}

TEST_F(CallEngineTest, TargetThatOnlyRingsIsCancelledAfterTargetTimeout) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {target_timeout: 2s}\n"));
  Caller caller;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302,
                       "Contact: <sip:t1@127.0.0.1:5071>;q=1.0, <sip:t2@127.0.0.1:5072>;q=0.5\r\n"),
          bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);
  Deliver(t1.Answer(to_t1[0], 180, "Ringing"), t1.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(180));

  Advance(1900ms);
  EXPECT_THAT(TakeSent(), IsEmpty());
  Advance(200ms);
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> cancels = RequestsTo(out, 5071, Method::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].branch(), to_t1[0].branch());
  EXPECT_EQ(cancels[0].cseq(), to_t1[0].cseq());
  EXPECT_EQ(cancels[0].request_uri(), to_t1[0].request_uri());
  std::vector<Sent> to_t2 = RequestsTo(out, 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u);
  ExpectRetryOf(to_t1[0], to_t2[0], "sip:t2@127.0.0.1:5072");
  EXPECT_EQ(Targets(TargetOutcome::kTimeout), 1u);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());

  Deliver(t1.Ok(cancels[0]), t1.peer());
  Deliver(t1.Answer(to_t1[0], 487, "Request Terminated"), t1.peer());
  out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5071, Method::kAck).size(), 1u);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty()) << "t1's 487 is not the caller's";

  Deliver(t2.Answer(to_t2[0], 200, "OK", kAnswerSdp), t2.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
  EXPECT_EQ(Targets(TargetOutcome::kAnswered), 1u);
}

// A target given up on (per-target timeout) may answer 2xx before our CANCEL reaches it.
// RFC 3261 15 / 9.1: the UAC must still ACK that 2xx and then end the dialog with BYE,
// otherwise the callee believes it is in a call nobody will ever hang up.
// Was a bug: b2bua/call_engine.cc OnResponse() ~line 794 hands every id but b_invite to
// OnRelayedResponse(), which drops it: the abandoned target's 2xx is never ACKed or BYEd.
TEST_F(CallEngineEdgeTest, LateAnswerFromATimedOutTargetIsAckedAndReleased) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {target_timeout: 2s}\n"));
  Caller caller;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302,
                       "Contact: <sip:t1@127.0.0.1:5071>;q=1.0, <sip:t2@127.0.0.1:5072>;q=0.5\r\n"),
          bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);
  Deliver(t1.Answer(to_t1[0], 180, "Ringing"), t1.peer());
  Advance(2100ms);
  std::vector<Sent> out = TakeSent();
  ASSERT_EQ(RequestsTo(out, 5071, Method::kCancel).size(), 1u);
  ASSERT_EQ(RequestsTo(out, 5072, Method::kInvite).size(), 1u);

  Deliver(t1.Answer(to_t1[0], 200, "OK", kAnswerSdp), t1.peer());
  out = TakeSent();
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty()) << "the caller is not bridged to t1";
  EXPECT_EQ(RequestsTo(out, 5071, Method::kAck).size(), 1u) << "the 2xx must be ACKed";
  EXPECT_EQ(RequestsTo(out, 5071, Method::kBye).size(), 1u) << "and the dialog released";
}

TEST_F(CallEngineTest, RouteWithRedirectActionAnswers302WithTheConfiguredContacts) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: "800"
    action: redirect
    redirect_code: 302
    contacts: ["<sip:1001@127.0.0.1:5071>;q=0.9", "<sip:1002@127.0.0.1:5072>;q=0.5"]
)yaml"));
  Caller caller;
  caller.request_uri = "sip:8001234@b2bua.example.net";
  Deliver(caller.Invite(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 302);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_THAT(finals[0].Headers("Contact"),
              ElementsAre("<sip:1001@127.0.0.1:5071>;q=0.9", "<sip:1002@127.0.0.1:5072>;q=0.5"));
  EXPECT_FALSE(finals[0].to_tag().empty());
  EXPECT_EQ(counters_->redirects_sent.Get(), 1u);
  EXPECT_EQ(Ended(CallOutcome::kRedirectSent), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);

  caller.to_tag = finals[0].to_tag();
  Deliver(caller.AckFailure(), caller.peer());
  EXPECT_THAT(TakeSent(), IsEmpty()) << "the ACK of the 302 ends its transaction";
}

// Every redirect hop draws on the caller's Max-Forwards budget: 3 at the caller leaves 2
// for the first callee, 1 after one redirect, 0 after two.
TEST_F(CallEngineTest, RedirectChainConsumesTheCallersMaxForwards) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  caller.max_forwards = 3;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->msg().max_forwards(), 2);

  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t1@127.0.0.1:5071>\r\n"), bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);
  EXPECT_EQ(to_t1[0].msg().max_forwards(), 1);

  Deliver(t1.Redirect(to_t1[0], 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), t1.peer());
  std::vector<Sent> to_t2 = RequestsTo(TakeSent(), 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u);
  EXPECT_EQ(to_t2[0].msg().max_forwards(), 0);

  // No budget left: the next target is never sent a request.
  Deliver(t2.Redirect(to_t2[0], 302, "Contact: <sip:t3@127.0.0.1:5073>\r\n"), t2.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5073, Method::kInvite), IsEmpty());
  for (const Sent& s : RequestsOf(out, Method::kInvite)) EXPECT_GE(s.msg().max_forwards(), 0);
  EXPECT_EQ(WithStatus(ResponsesTo(out, kCallerPort), 200).size(), 0u);
  EXPECT_EQ(engine_->active_calls(), 0u) << "the call ended with a final answer";
}

// When the budget is what stops the search, the caller should learn that with 483 Too Many
// Hops (RFC 3261 16.3 / 8.2.2 semantics), as for max_depth, not with a generic 480.
// Was a bug: b2bua/call_engine.cc SendBLegInvite() ~line 552 gives up silently; FinishSearch()
// then answers 480 "redirect exhausted".
TEST_F(CallEngineEdgeTest, ExhaustedMaxForwardsBudgetAnswers483) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  caller.max_forwards = 2;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->msg().max_forwards(), 1);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t1@127.0.0.1:5071>\r\n"), bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);
  EXPECT_EQ(to_t1[0].msg().max_forwards(), 0);
  Deliver(t1.Redirect(to_t1[0], 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), t1.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5072, Method::kInvite), IsEmpty());
  std::vector<Sent> finals;
  for (const Sent& s : ResponsesTo(out, kCallerPort))
    if (s.status() >= 200) finals.push_back(s);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].status(), 483);
}

// ---------------------------------------------------------------------------------------
// Requests outside a call.

TEST_F(CallEngineTest, OptionsOutOfDialogIsAnswered200WithAllow) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Deliver(
      "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
      "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKopt1;rport\r\n"
      "Max-Forwards: 70\r\n"
      "From: <sip:monitor@example.org>;tag=m1\r\n"
      "To: <sip:127.0.0.1:5060>\r\n"
      "Call-ID: options-1@example.org\r\n"
      "CSeq: 1 OPTIONS\r\n"
      "Content-Length: 0\r\n\r\n",
      LoopbackPeer(kCallerPort));
  std::vector<Sent> out = TakeSent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].port(), kCallerPort);
  EXPECT_EQ(out[0].status(), 200);
  EXPECT_EQ(out[0].cseq_method(), "OPTIONS");
  EXPECT_EQ(out[0].call_id(), "options-1@example.org");
  EXPECT_THAT(out[0].Header("Allow"), HasSubstr("INVITE"));
  EXPECT_FALSE(out[0].to_tag().empty());
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(CallEngineTest, RegisterIsAnswered405WithAllow) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Deliver(
      "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
      "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKreg1;rport\r\n"
      "Max-Forwards: 70\r\n"
      "From: <sip:alice@example.org>;tag=r1\r\n"
      "To: <sip:alice@example.org>\r\n"
      "Call-ID: register-1@example.org\r\n"
      "CSeq: 1 REGISTER\r\n"
      "Contact: <sip:alice@127.0.0.1:5061>\r\n"
      "Expires: 3600\r\n"
      "Content-Length: 0\r\n\r\n",
      LoopbackPeer(kCallerPort));
  std::vector<Sent> out = TakeSent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status(), 405);
  EXPECT_EQ(out[0].cseq_method(), "REGISTER");
  std::string allow = out[0].Header("Allow");
  EXPECT_THAT(allow, HasSubstr("INVITE"));
  EXPECT_THAT(allow, Not(HasSubstr("REGISTER")));
}

// ---------------------------------------------------------------------------------------
// Protocol details beyond the happy path.

// RFC 3261 12.1.1: the UAS copies the request's Record-Route into every response that
// creates a dialog, so that the caller's ACK and BYE go back through the proxy that asked
// to stay in the path. Requests from the B2BUA to the caller use that route set.
// Was a bug: b2bua/call_engine.cc ResponseHead::Capture() ~line 161 keeps no Record-Route.
TEST_F(CallEngineEdgeTest, CallersRecordRouteIsCopiedIntoDialogCreatingResponses) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  caller.extra = "Record-Route: <sip:127.0.0.1:5090;lr>\r\n";
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->HasHeader("Record-Route")) << "hop by hop: not copied to the B-leg";
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 2u);
  EXPECT_EQ(to_caller[0].Header("Record-Route"), "<sip:127.0.0.1:5090;lr>") << "180";
  EXPECT_EQ(to_caller[1].Header("Record-Route"), "<sip:127.0.0.1:5090;lr>") << "200";

  caller.to_tag = to_caller[1].to_tag();
  Deliver(caller.Ack2xx(), caller.peer());
  TakeSent();
  Deliver(bob.Bye(*b), bob.peer());
  std::vector<Sent> byes = RequestsOf(TakeSent(), Method::kBye);
  ASSERT_EQ(byes.size(), 1u);
  EXPECT_EQ(byes[0].Header("Route"), "<sip:127.0.0.1:5090;lr>");
}

// RFC 3261 15: the caller may BYE an early dialog. The INVITE still needs its final answer
// (15.1.2 recommends 487) and the callee leg must be cancelled; nothing was answered, so
// the call must not count as answered.
// Was a bug: b2bua/call_engine.cc OnInDialogRequest() ~line 1146 answers the BYE and ends the call
// as answered, without a final answer to the INVITE or a CANCEL to the callee.
TEST_F(CallEngineEdgeTest, CallerByeInEarlyDialogCancelsTheCalleeAndEndsTheInvite) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  std::vector<Sent> ringing = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(ringing.size(), 1u);
  caller.to_tag = ringing[0].to_tag();

  Deliver(caller.Bye(), caller.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  std::vector<int> bye_answers, invite_answers;
  for (const Sent& s : to_caller)
    (s.cseq_method() == "BYE" ? bye_answers : invite_answers).push_back(s.status());
  EXPECT_THAT(bye_answers, ElementsAre(200));
  EXPECT_THAT(invite_answers, ElementsAre(487));
  EXPECT_EQ(RequestsTo(out, 5070, Method::kCancel).size(), 1u);
  EXPECT_EQ(Ended(CallOutcome::kAnswered), 0u);
  // Left as is, both INVITE transactions sit in Proceeding, where no timer ends them.
  Advance(40s);
  EXPECT_EQ(layer_->size(), 0u);
}

// RFC 3261 13.3.1.4: without an ACK for 64*T1 the dialog is confirmed but the session
// SHOULD be ended with a BYE; the B2BUA has two dialogs to end.
// Was a bug: b2bua/call_engine.cc OnTimer(kA2xxRetransmit) ~line 1275 gives up after 11 sends
// (35.5s with T1 500ms) and sends BYE on the B-leg only.
TEST_F(CallEngineEdgeTest, MissingCallerAckEndsBothLegsWithBye) {
  ASSERT_NO_FATAL_FAILURE(Start());  // T1 500ms: 64*T1 = 32s
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> oks = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200);
  ASSERT_EQ(oks.size(), 1u);
  const proto::TimePoint answered_at = oks[0].at();
  Advance(40s);
  std::vector<Sent> out = TakeSent();
  // The callee gets one BYE (and its retransmissions, since nobody answers it here).
  std::vector<Sent> callee_byes = RequestsTo(out, 5070, Method::kBye);
  ASSERT_FALSE(callee_byes.empty());
  for (const Sent& bye : callee_byes) EXPECT_EQ(bye.branch(), callee_byes[0].branch());
  EXPECT_EQ(RequestsTo(out, 5070, Method::kAck).size(), 1u) << "the callee's 2xx is ACKed";
  EXPECT_LE(callee_byes[0].at() - answered_at, 32s + 10ms) << "given up after 64*T1";
  EXPECT_FALSE(RequestsTo(out, kCallerPort, Method::kBye).empty()) << "the caller's dialog";
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 0u);
}

// RFC 3261 17.2.1 / 18.2.2: a 2xx and its retransmissions go where the transaction layer
// sends responses (Via sent-by port when the client did not ask for rport), not to the
// request's source port.
// Was a bug: b2bua/call_engine.cc SendA2xx() ~line 1229 sends to call.a.peer (the source address)
// while the layer sent the first 2xx to ResponseDestination().
TEST_F(CallEngineEdgeTest, CallerLeg2xxRetransmissionsGoWhereTheFirst2xxWent) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  caller.rport = false;
  caller.source_port = 40000;  // sent from an ephemeral port; Via says 5061
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> out = TakeSent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status(), 200);
  const uint16_t port = out[0].port();
  EXPECT_EQ(port, kCallerPort);
  Advance(600ms);
  out = TakeSent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status(), 200);
  EXPECT_EQ(out[0].port(), port);
}

// ---------------------------------------------------------------------------------------
// In-dialog requests.

// A re-INVITE the callee is still ringing on when the call ends is cancelled (an INVITE
// client transaction in Proceeding has no timer of its own) and the caller's gets 487.
TEST_F(CallEngineTest, ReInviteInFlightWhenTheCallEndsIsCancelled) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);
  Deliver(caller.InDialog("INVITE", kOfferSdp), caller.peer());
  const uint32_t reinvite_cseq = caller.last_cseq;
  std::vector<Sent> reinvites = RequestsTo(TakeSent(), 5070, Method::kInvite);
  ASSERT_EQ(reinvites.size(), 1u);
  Deliver(bob.Answer(reinvites[0], 100, "Trying"), bob.peer());
  TakeSent();

  Deliver(bob.Bye(*b), bob.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> cancels = RequestsTo(out, 5070, Method::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].cseq(), reinvites[0].cseq());
  EXPECT_EQ(cancels[0].branch(), reinvites[0].branch());
  EXPECT_EQ(cancels[0].to_tag(), bob.tag);
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_FALSE(to_caller.empty());
  EXPECT_EQ(to_caller[0].status(), 487);
  EXPECT_EQ(to_caller[0].cseq(), reinvite_cseq);
  EXPECT_EQ(engine_->active_calls(), 0u);
  Advance(70s);  // the callee never answers the CANCEL nor the re-INVITE: 64*T1 gives up
  EXPECT_EQ(layer_->size(), 0u) << "no transaction left waiting";
}

TEST_F(CallEngineTest, ReInviteFromCallerIsRelayedAndAckedEndToEnd) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);

  Deliver(caller.InDialog("INVITE", kOfferSdp), caller.peer());
  const uint32_t reinvite_cseq = caller.last_cseq;
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(100));
  std::vector<Sent> reinvites = RequestsTo(out, 5070, Method::kInvite);
  ASSERT_EQ(reinvites.size(), 1u);
  const Sent& re = reinvites[0];
  EXPECT_EQ(re.request_uri(), bob.ContactUri());
  EXPECT_EQ(re.call_id(), b->call_id());
  EXPECT_EQ(re.from_tag(), b->from_tag());
  EXPECT_EQ(re.to_tag(), bob.tag);
  EXPECT_GT(re.cseq(), b->cseq());
  EXPECT_EQ(re.body(), kOfferSdp);
  EXPECT_EQ(re.Header("Contact"), "<sip:b2bua@127.0.0.1:5060>");

  Deliver(bob.Answer(re, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].cseq(), reinvite_cseq);
  EXPECT_EQ(to_caller[0].to_tag(), caller.to_tag);
  EXPECT_EQ(to_caller[0].body(), kAnswerSdp);
  EXPECT_EQ(to_caller[0].Header("Contact"), "<sip:b2bua@127.0.0.1:5060>");

  Deliver(caller.AckReInvite(reinvite_cseq), caller.peer());
  std::vector<Sent> acks = RequestsTo(TakeSent(), 5070, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].cseq(), re.cseq());
  EXPECT_EQ(acks[0].to_tag(), bob.tag);
}

TEST_F(CallEngineTest, ReInviteFromCalleeIsRelayedAndAckedEndToEnd) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);

  Deliver(bob.InDialog(*b, "INVITE", kAnswerSdp), bob.peer());
  const uint32_t reinvite_cseq = bob.last_cseq;
  std::vector<Sent> reinvites = RequestsTo(TakeSent(), kCallerPort, Method::kInvite);
  ASSERT_EQ(reinvites.size(), 1u);
  const Sent& re = reinvites[0];
  EXPECT_EQ(re.request_uri(), Caller::kContactUri);
  EXPECT_EQ(re.call_id(), caller.call_id);
  EXPECT_EQ(re.from_tag(), caller.to_tag);
  EXPECT_EQ(re.to_tag(), caller.from_tag);
  EXPECT_EQ(re.body(), kAnswerSdp);

  Deliver(ResponseTo(re, 200, "OK", {},
                     "Contact: <" + std::string(Caller::kContactUri) + ">\r\n", kOfferSdp),
          caller.peer());
  std::vector<Sent> to_bob = ResponsesTo(TakeSent(), 5070);
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].status(), 200);
  EXPECT_EQ(to_bob[0].cseq(), reinvite_cseq);
  EXPECT_EQ(to_bob[0].body(), kOfferSdp);

  Deliver(bob.AckReInvite(*b, reinvite_cseq), bob.peer());
  std::vector<Sent> acks = RequestsTo(TakeSent(), kCallerPort, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].cseq(), re.cseq());
  EXPECT_EQ(acks[0].call_id(), caller.call_id);
}

// RFC 3261 13.3.1.4 / RFC 6026: the 2xx to any INVITE, re-INVITEs included, is the TU's to
// retransmit until the ACK; the transaction layer only absorbs the INVITE retransmissions.
// Was a bug: b2bua/call_engine.cc OnRelayedResponse() ~line 1212 sends a re-INVITE's 2xx once and
// nothing retransmits it.
TEST_F(CallEngineEdgeTest, ReInvite2xxToCallerIsRetransmittedUntilAck) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);
  Deliver(caller.InDialog("INVITE", kOfferSdp), caller.peer());
  std::vector<Sent> reinvites = RequestsTo(TakeSent(), 5070, Method::kInvite);
  ASSERT_EQ(reinvites.size(), 1u);
  Deliver(bob.Answer(reinvites[0], 200, "OK", kAnswerSdp), bob.peer());
  ASSERT_EQ(WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200).size(), 1u);
  Advance(600ms);
  EXPECT_EQ(WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200).size(), 1u)
      << "the 2xx to the re-INVITE is re-sent after T1";
}

TEST_F(CallEngineTest, InfoIsRelayedBothWays) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);

  Deliver(caller.InDialog("INFO"), caller.peer());
  const uint32_t info_cseq = caller.last_cseq;
  std::vector<Sent> infos = RequestsTo(TakeSent(), 5070, Method::kInfo);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].call_id(), b->call_id());
  EXPECT_EQ(infos[0].to_tag(), bob.tag);
  Deliver(bob.Ok(infos[0]), bob.peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].cseq(), info_cseq);
  EXPECT_EQ(to_caller[0].cseq_method(), "INFO");

  Deliver(bob.InDialog(*b, "INFO"), bob.peer());
  infos = RequestsTo(TakeSent(), kCallerPort, Method::kInfo);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].call_id(), caller.call_id);
  Deliver(ResponseTo(infos[0], 200, "OK", {}), caller.peer());
  std::vector<Sent> to_bob = ResponsesTo(TakeSent(), 5070);
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].status(), 200);
  EXPECT_EQ(to_bob[0].cseq(), bob.last_cseq);
}

// RFC 3261 15.1.2: when the call ends, a request still waiting for the other leg's
// answer gets 487, so its server transaction does not wait forever.
TEST_F(CallEngineTest, RequestStillRelayedWhenTheCallEndsGets487) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);
  Deliver(bob.InDialog(*b, "INFO"), bob.peer());
  const uint32_t info_cseq = bob.last_cseq;
  ASSERT_EQ(RequestsTo(TakeSent(), kCallerPort, Method::kInfo).size(), 1u);
  // The caller never answers the INFO and hangs up.
  Deliver(caller.Bye(), caller.peer());
  std::vector<Sent> to_bob = ResponsesTo(TakeSent(), 5070);
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].status(), 487);
  EXPECT_EQ(to_bob[0].cseq(), info_cseq);
  EXPECT_EQ(to_bob[0].cseq_method(), "INFO");
  EXPECT_EQ(engine_->active_calls(), 0u);
  Advance(40s);
  EXPECT_EQ(layer_->size(), 0u) << "no transaction left waiting";
}

// The caller may send in-dialog requests as soon as it has the 2xx; its ACK still carries
// the INVITE's CSeq (RFC 3261 13.2.2.4) and must still confirm the call.
TEST_F(CallEngineTest, AckAfterAnInDialogRequestStillConfirmsTheCall) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> oks = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200);
  ASSERT_EQ(oks.size(), 1u);
  caller.to_tag = oks[0].to_tag();

  Deliver(caller.InDialog("INFO"), caller.peer());
  std::vector<Sent> infos = RequestsTo(TakeSent(), 5070, Method::kInfo);
  ASSERT_EQ(infos.size(), 1u);
  Deliver(bob.Ok(infos[0]), bob.peer());
  TakeSent();

  Deliver(caller.Ack2xx(), caller.peer());
  std::vector<Sent> acks = RequestsTo(TakeSent(), 5070, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].cseq(), b->cseq());
  Advance(10s);
  EXPECT_THAT(ResponsesTo(TakeSent(), kCallerPort), IsEmpty()) << "2xx retransmissions stopped";
}

// ---------------------------------------------------------------------------------------
// Timers of the core.

TEST_F(CallEngineTest, NoAnswerTimeoutCancelsTheCalleeAndAnswers408) {
  ASSERT_NO_FATAL_FAILURE(Start("limits: {no_answer_timeout: 5s}\n"));
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  TakeSent();
  Advance(4900ms);
  EXPECT_THAT(TakeSent(), IsEmpty());
  Advance(200ms);
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> cancels = RequestsTo(out, 5070, Method::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].branch(), b->branch());
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 408);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_THAT(finals[0].Header("Reason"), HasSubstr("408"));
  EXPECT_EQ(Ended(CallOutcome::kNoAnswer), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);

  Deliver(bob.Ok(cancels[0]), bob.peer());
  Deliver(bob.Answer(*b, 487, "Request Terminated"), bob.peer());
  out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kAck).size(), 1u);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
}

TEST_F(CallEngineTest, MaxCallDurationHangsUpBothLegs) {
  ASSERT_NO_FATAL_FAILURE(Start("limits: {max_call_duration: 60s}\n"));
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);
  Advance(59s);
  EXPECT_THAT(TakeSent(), IsEmpty());
  Advance(2s);
  std::vector<Sent> out = TakeSent();
  // Unique(): nobody answers the BYEs here, so they are retransmitted.
  std::vector<Sent> to_bob = Unique(RequestsTo(out, 5070, Method::kBye));
  std::vector<Sent> to_caller = Unique(RequestsTo(out, kCallerPort, Method::kBye));
  ASSERT_EQ(to_bob.size(), 1u);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_bob[0].call_id(), b->call_id());
  EXPECT_EQ(to_caller[0].call_id(), caller.call_id);
  EXPECT_EQ(to_caller[0].to_tag(), caller.from_tag);
  EXPECT_EQ(Ended(CallOutcome::kAnswered), 1u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 0u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

// Timer B ends the only attempt: the caller gets 408, and the call is counted as
// unreachable ("every next hop timed out or failed at the transport", CallOutcome).
// Was a bug: b2bua/call_engine.cc OnInviteFinalFailure() ~line 961 records a timeout as best_status
// 408, so FinishSearch() never reaches its kUnreachable branch and counts kRejected.
TEST_F(CallEngineEdgeTest, SilentHopTimesOutWith408CountedAsUnreachable) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Advance(31s);
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  for (const Sent& s : RequestsTo(out, 5070, Method::kInvite))
    EXPECT_EQ(s.bytes(), b->bytes()) << "only retransmissions (Timer A)";
  Advance(2s);
  // Unique(): the caller does not ACK here, so Timer G re-sends the 408.
  std::vector<Sent> finals = Unique(WithStatus(ResponsesTo(TakeSent(), kCallerPort), 408));
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(Ended(CallOutcome::kUnreachable), 1u);
  EXPECT_EQ(Ended(CallOutcome::kRejected), 0u);
}

TEST_F(CallEngineTest, RouteFailsOverWhenTheFirstHopTimesOut) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: "555"
    next_hops: ["sip:127.0.0.1:5070", "sip:127.0.0.1:5071"]
)yaml"));
  Caller caller;
  caller.request_uri = "sip:5551234@b2bua.example.net";
  Callee hop_b{5071, "hop-b", "hopb"};
  std::optional<Sent> first = Invite(caller, 5070);
  ASSERT_TRUE(first);
  Advance(31s);
  EXPECT_THAT(RequestsTo(TakeSent(), 5071, Method::kInvite), IsEmpty());
  Advance(2s);  // Timer B: 64*T1
  std::vector<Sent> second = Unique(RequestsTo(TakeSent(), 5071, Method::kInvite));
  ASSERT_EQ(second.size(), 1u) << "one INVITE and its Timer A retransmissions";
  ExpectRetryOf(*first, second[0], caller.request_uri);
  Deliver(hop_b.Answer(second[0], 200, "OK", kAnswerSdp), hop_b.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}

// ---------------------------------------------------------------------------------------
// Admission, loops and sharding.

TEST_F(CallEngineTest, RetransmittedInviteDoesNotStartASecondCall) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  TakeSent();
  Deliver(caller.Invite(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(180)) << "last provisional";
  EXPECT_EQ(engine_->active_calls(), 1u);
}

TEST_F(CallEngineTest, DrainingRefusesNewCallsWith503) {
  ASSERT_NO_FATAL_FAILURE(Start());
  engine_->StartDraining();
  Caller caller;
  Deliver(caller.Invite(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 503);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_TRUE(finals[0].HasHeader("Retry-After"));
  EXPECT_EQ(Ended(CallOutcome::kOverload), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(CallEngineTest, CallsOverMaxCallsAreRefusedWith503) {
  ASSERT_NO_FATAL_FAILURE(Start("limits: {max_calls: 1}\n"));
  Caller first;
  ASSERT_TRUE(Invite(first));
  Caller second;
  second.call_id = "second@pc33.atlanta.example.com";
  second.branch = "z9hG4bKsecond";
  Deliver(second.Invite(), second.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 503);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].call_id(), second.call_id);
  EXPECT_EQ(engine_->active_calls(), 1u);
}

// Our own B-leg INVITE, sent back to us by a proxy at 5070, is a spiral that would never end.
TEST_F(CallEngineTest, InviteCarryingOurOwnViaIsAnswered482) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  std::string looped = b->bytes();
  looped.insert(looped.find("\r\n") + 2,
                "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKproxyloop\r\n");
  Deliver(looped, LoopbackPeer(5070));
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  std::vector<Sent> answers = ResponsesTo(out, 5070);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].status(), 100);
  EXPECT_EQ(answers[1].status(), 482);
  EXPECT_EQ(engine_->active_calls(), 1u) << "the real call is untouched";
}

TEST_F(CallEngineTest, BLegCallIdNamesTheShardThatOwnsTheCall) {
  ASSERT_NO_FATAL_FAILURE(Start({}, /*shard_index=*/3, /*shard_count=*/4));
  Caller caller;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  EXPECT_EQ(ShardForCallId(b->call_id(), 4), 3u) << b->call_id();
  EXPECT_EQ(ShardForCallId(b->call_id(), 1), 0u);
}

// ---------------------------------------------------------------------------------------
// The application's redirect policy.

// Parks every target; the test plays the application that decides later.
class ParkingPolicy final : public RedirectPolicy {
 public:
  PolicyDecision Decide(const Target& target, uint64_t call_cookie) override {
    asked.push_back(target.request_uri);
    cookie = call_cookie;
    return PolicyDecision::kPending;
  }
  std::vector<std::string> asked;
  uint64_t cookie = 0;
};

TEST_F(CallEngineTest, ParkedRedirectDecisionResumesTheSearch) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ParkingPolicy policy;
  engine_->SetRedirectPolicy(&policy);
  Caller caller;
  Callee bob;
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), bob.peer());
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty());
  EXPECT_THAT(policy.asked, ElementsAre("sip:t2@127.0.0.1:5072"));

  engine_->ResumeRedirect(policy.cookie, PolicyDecision::kAccept);
  std::vector<Sent> to_t2 = RequestsTo(TakeSent(), 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u);
  ExpectRetryOf(*first, to_t2[0], "sip:t2@127.0.0.1:5072");
  Deliver(t2.Answer(to_t2[0], 200, "OK", kAnswerSdp), t2.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}

// The caller gives up while the application is still deciding: the call ends at once, and
// a decision arriving afterwards must not send an INVITE nobody is waiting for.
// Was a bug: b2bua/call_engine.cc OnCancel() ~line 1031 still sees the 3xx'd INVITE in b_invite and
// waits 64*T1 for a 487 that cannot come; ResumeRedirect() ~line 694 ignores `cancelled`.
TEST_F(CallEngineEdgeTest, CancelWhileRedirectDecisionIsPendingEndsTheCall) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ParkingPolicy policy;
  engine_->SetRedirectPolicy(&policy);
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), bob.peer());
  TakeSent();
  ASSERT_THAT(policy.asked, ElementsAre("sip:t2@127.0.0.1:5072"));

  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(200, 487));
  EXPECT_THAT(RequestsOf(out, Method::kCancel), IsEmpty()) << "no INVITE is pending";
  EXPECT_EQ(engine_->active_calls(), 0u) << "nothing left to wait for";

  engine_->ResumeRedirect(policy.cookie, PolicyDecision::kAccept);
  engine_->CollectEndedCalls();
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty());
  Advance(40s);
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(Ended(CallOutcome::kCancelled), 1u);
}

// ---------------------------------------------------------------------------------------
// Soak.

TEST_F(CallEngineTest, ThousandSequentialCallsLeaveNoCallTransactionOrTimerBehind) {
  ASSERT_NO_FATAL_FAILURE(Start());
  constexpr int kCalls = 1000;
  int answered = 0;
  for (int i = 0; i < kCalls; ++i) {
    Caller caller;
    caller.call_id = "soak-" + std::to_string(i) + "@pc33.atlanta.example.com";
    caller.from_tag = "ft" + std::to_string(i);
    caller.branch = "z9hG4bKsoak" + std::to_string(i);
    caller.requests = i * 10;
    Callee bob;
    bob.tag = "bt" + std::to_string(i);
    bob.requests = i * 10;
    std::optional<Sent> b = EstablishCall(caller, bob);
    ASSERT_TRUE(b) << "call " << i;
    Advance(10ms);
    if (i % 2 == 0) {
      Deliver(caller.Bye(), caller.peer());
      std::vector<Sent> byes = RequestsTo(TakeSent(), 5070, Method::kBye);
      ASSERT_EQ(byes.size(), 1u) << "call " << i;
      Deliver(bob.Ok(byes[0]), bob.peer());
    } else {
      Deliver(bob.Bye(*b), bob.peer());
      std::vector<Sent> byes = RequestsTo(TakeSent(), kCallerPort, Method::kBye);
      ASSERT_EQ(byes.size(), 1u) << "call " << i;
      Deliver(ResponseTo(byes[0], 200, "OK", {}), caller.peer());
    }
    TakeSent();
    ++answered;
    Advance(10ms);
  }
  EXPECT_EQ(answered, kCalls);
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(counters_->calls_active.Get(), 0u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 0u);
  EXPECT_EQ(Ended(CallOutcome::kAnswered), static_cast<uint64_t>(kCalls));

  // Timers L, M, J and K (64*T1 at most) run out; nothing may be left after them.
  Advance(40s);
  TakeSent();
  EXPECT_EQ(layer_->size(), 0u);
  EXPECT_EQ(wheel_.size(), 0u);
  EXPECT_EQ(layer_->counters().server_created, static_cast<uint64_t>(2 * kCalls));
  EXPECT_EQ(layer_->counters().client_created, static_cast<uint64_t>(2 * kCalls));
}

// ---------------------------------------------------------------------------------------
// Next hops and redirect targets named by host name (RFC 3263 through TargetResolver).

// The engine with a FakeResolver in its context; every other fixture runs without one.
class CallEngineDnsTest : public CallEngineTest {
 protected:
  CallEngineDnsTest() { resolver_ = &dns_; }

  /// Delivers the DNS answer to request `index`, then ends the turn as the shard does.
  void AnswerDns(size_t index, const proto::ResolvedTargets& result) {
    dns_.Answer(index, result);
    engine_->CollectEndedCalls();
  }

  /// A caller of its own (Call-ID, tags, branch) for the n-th call of a test.
  static Caller NthCaller(int n) {
    Caller caller;
    caller.request_uri = "sip:5551234@b2bua.example.net";
    caller.call_id = "dns-" + std::to_string(n) + "@pc33.atlanta.example.com";
    caller.from_tag = "dnsft" + std::to_string(n);
    caller.branch = "z9hG4bKdns" + std::to_string(n);
    caller.requests = n * 10;
    return caller;
  }

  FakeResolver dns_;
};

// Tests that fail against the current engine; each names the code at fault.
class CallEngineDnsEdgeTest : public CallEngineDnsTest {};

constexpr std::string_view kTrunkRoute = R"yaml(
routes:
  - prefix: ""
    next_hops: ["sip:trunk.example.test:5070"]
)yaml";

constexpr std::string_view kTwoTrunkRoute = R"yaml(
routes:
  - prefix: ""
    next_hops: ["sip:trunk1.example.test:5070", "sip:trunk2.example.test:5071"]
)yaml";

TEST_F(CallEngineDnsTest, NextHopNamedByHostIsInvitedAtTheResolvedAddress) {
  // 127.0.0.2, not the 127.0.0.1 every callee of this file uses: the address can only
  // come from the resolver.
  dns_.AnswerInline("trunk.example.test", ResolvedTo({"127.0.0.2:5070"}));
  ASSERT_NO_FATAL_FAILURE(Start(kTrunkRoute));
  Caller caller = NthCaller(1);
  Callee trunk{5070, "trunk", "trk"};
  const Peer trunk_peer = PeerAt("127.0.0.2", 5070);

  Deliver(caller.Invite(), caller.peer());
  ASSERT_EQ(dns_.requests.size(), 1u);
  EXPECT_EQ(dns_.requests[0].host, "trunk.example.test");
  EXPECT_EQ(dns_.requests[0].port, 5070);
  EXPECT_EQ(dns_.requests[0].transport, std::nullopt);
  EXPECT_FALSE(dns_.requests[0].sips);
  std::vector<Sent> invites = RequestsOf(TakeSent(), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].to(), trunk_peer);
  EXPECT_EQ(invites[0].request_uri(), caller.request_uri);
  EXPECT_EQ(invites[0].body(), kOfferSdp);

  Deliver(trunk.Answer(invites[0], 200, "OK", kAnswerSdp), trunk_peer);
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_THAT(Statuses(to_caller), ElementsAre(200));
  caller.to_tag = to_caller[0].to_tag();
  Deliver(caller.Ack2xx(), caller.peer());
  std::vector<Sent> acks = RequestsOf(TakeSent(), Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].to(), trunk_peer);
  EXPECT_EQ(acks[0].cseq(), invites[0].cseq());
}

TEST_F(CallEngineDnsTest, NextHopResolvedAfterARoundTripStillGetsTheInvite) {
  ASSERT_NO_FATAL_FAILURE(Start(kTrunkRoute));
  Caller caller = NthCaller(1);
  Callee trunk{5070, "trunk", "trk"};

  Deliver(caller.Invite(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty()) << "nothing to send to yet";
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(100));
  ASSERT_THAT(dns_.hosts(), ElementsAre("trunk.example.test"));
  EXPECT_EQ(engine_->active_calls(), 1u);

  Advance(300ms);  // the shard runs other calls meanwhile
  AnswerDns(0, ResolvedTo({"127.0.0.1:5070"}));
  std::vector<Sent> invites = RequestsTo(TakeSent(), 5070, Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].ip(), "127.0.0.1");
  Deliver(trunk.Answer(invites[0], 200, "OK", kAnswerSdp), trunk.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}

class CallEngineDnsFailoverTest : public CallEngineDnsTest,
                                  public ::testing::WithParamInterface<proto::ResolveStatus> {};

TEST_P(CallEngineDnsFailoverTest, FirstHopThatDoesNotResolveFailsOverToTheSecond) {
  ASSERT_NO_FATAL_FAILURE(Start(kTwoTrunkRoute));
  Caller caller = NthCaller(1);
  Callee second{5071, "trunk2", "trk2"};

  Deliver(caller.Invite(), caller.peer());
  TakeSent();
  ASSERT_THAT(dns_.hosts(), ElementsAre("trunk1.example.test"));
  AnswerDns(0, ResolveFailed(GetParam()));
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty()) << "a second hop is left";
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  ASSERT_THAT(dns_.hosts(), ElementsAre("trunk1.example.test", "trunk2.example.test"));
  EXPECT_EQ(dns_.requests[1].port, 5071);

  AnswerDns(1, ResolvedTo({"127.0.0.1:5071"}));
  std::vector<Sent> invites = RequestsOf(TakeSent(), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].to(), second.peer());
  EXPECT_EQ(invites[0].request_uri(), caller.request_uri);
  Deliver(second.Answer(invites[0], 200, "OK", kAnswerSdp), second.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}

INSTANTIATE_TEST_SUITE_P(NxdomainAndTimeout, CallEngineDnsFailoverTest,
                         ::testing::Values(proto::ResolveStatus::kNotFound,
                                           proto::ResolveStatus::kTimeout),
                         [](const ::testing::TestParamInfo<proto::ResolveStatus>& info) {
                           return info.param == proto::ResolveStatus::kNotFound ? "Nxdomain"
                                                                                : "Timeout";
                         });

TEST_F(CallEngineDnsTest, RedirectTargetNamedByHostIsResolvedAndInvited) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  Callee moved{5072, "bob", "mvd"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  EXPECT_THAT(dns_.requests, IsEmpty()) << "the first hop is an IP literal";

  Deliver(bob.Redirect(*first, 302, "Contact: <sip:bob@moved.example.test>\r\n"), bob.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  ASSERT_EQ(dns_.requests.size(), 1u);
  EXPECT_EQ(dns_.requests[0].host, "moved.example.test");
  EXPECT_EQ(dns_.requests[0].port, 0) << "no port in the Contact: RFC 3263 picks it";
  EXPECT_FALSE(dns_.requests[0].sips);

  AnswerDns(0, ResolvedTo({"127.0.0.1:5072"}));
  std::vector<Sent> invites = RequestsOf(TakeSent(), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].to(), moved.peer());
  ExpectRetryOf(*first, invites[0], "sip:bob@moved.example.test");
  EXPECT_THAT(invites[0].Header("History-Info"), HasSubstr("sip:bob@moved.example.test"));

  Deliver(moved.Answer(invites[0], 200, "OK", kAnswerSdp), moved.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
  EXPECT_EQ(Targets(TargetOutcome::kAnswered), 1u);
  EXPECT_EQ(Targets(TargetOutcome::kFailed), 0u);
}

// The name passes the domain rules; the address it leads to must pass the CIDR rules.
TEST_F(CallEngineDnsTest, RedirectTargetResolvingIntoADeniedCidrIsRefused) {
  dns_.AnswerInline("moved.example.test", ResolvedTo({"127.0.0.9:5060"}));
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(redirect: {deny: {cidrs: ["127.0.0.0/8"]}})yaml"));
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:bob@moved.example.test>\r\n"), bob.peer());
  std::vector<Sent> out = TakeSent();
  ASSERT_THAT(dns_.hosts(), ElementsAre("moved.example.test"));
  for (const Sent& s : out) EXPECT_NE(s.ip(), "127.0.0.9") << s.bytes();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  EXPECT_EQ(Targets(TargetOutcome::kRefusedByPolicy), 1u);
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 403);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(Failures(RedirectFailure::kAllRefused), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(CallEngineDnsTest, CancelWhileTheNextHopResolvesAnswers487AndTheLateAnswerSendsNothing) {
  ASSERT_NO_FATAL_FAILURE(Start(kTrunkRoute));
  Caller caller = NthCaller(1);
  Deliver(caller.Invite(), caller.peer());
  TakeSent();
  ASSERT_EQ(dns_.requests.size(), 1u);

  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(200, 487));
  EXPECT_THAT(RequestsOf(out, Method::kCancel), IsEmpty()) << "no INVITE went out";
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(Ended(CallOutcome::kCancelled), 1u);
  caller.to_tag = WithStatus(ResponsesTo(out, kCallerPort), 487)[0].to_tag();
  Deliver(caller.AckFailure(), caller.peer());

  AnswerDns(0, ResolvedTo({"127.0.0.1:5070"}));
  EXPECT_THAT(TakeSent(), IsEmpty());
  Advance(40s);
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty());
}

TEST_F(CallEngineDnsTest, CancelWhileARedirectTargetResolvesAnswers487AndTheLateAnswerIsIgnored) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:bob@moved.example.test>\r\n"), bob.peer());
  TakeSent();
  ASSERT_EQ(dns_.requests.size(), 1u);

  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(200, 487));
  EXPECT_THAT(RequestsOf(out, Method::kCancel), IsEmpty()) << "the 302 ended the only INVITE";
  EXPECT_EQ(engine_->active_calls(), 0u);

  AnswerDns(0, ResolvedTo({"127.0.0.1:5072"}));
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty());
  EXPECT_EQ(Ended(CallOutcome::kCancelled), 1u);
}

// deny_self (the default) holds for names too: a name leading back to our own listen
// address is skipped, and the search goes on.
TEST_F(CallEngineDnsTest, RedirectTargetResolvingToTheB2buaItselfIsNeverSent) {
  dns_.AnswerInline("self.example.test", ResolvedTo({"127.0.0.1:5060"}));
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302,
                       "Contact: <sip:bob@self.example.test>;q=1.0\r\n"
                       "Contact: <sip:t2@127.0.0.1:5072>;q=0.5\r\n"),
          bob.peer());
  std::vector<Sent> out = TakeSent();
  ASSERT_THAT(dns_.hosts(), ElementsAre("self.example.test"));
  for (const Sent& s : out) EXPECT_NE(s.port(), kB2buaPort) << s.bytes();
  std::vector<Sent> invites = RequestsOf(out, Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].to(), t2.peer());
  Deliver(t2.Answer(invites[0], 200, "OK", kAnswerSdp), t2.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}

TEST_F(CallEngineDnsTest, NextHopAnswering503WithRetryAfterIsSkippedUntilItExpires) {
  dns_.AnswerInline("trunk1.example.test", ResolvedTo({"127.0.0.1:5070"}));
  dns_.AnswerInline("trunk2.example.test", ResolvedTo({"127.0.0.1:5071"}));
  ASSERT_NO_FATAL_FAILURE(Start(kTwoTrunkRoute));
  Callee hop1{5070, "trunk1", "trk1"};
  Callee hop2{5071, "trunk2", "trk2"};

  // Hop 2 answers each call 486; the caller ACKs so nothing is retransmitted.
  auto busy_at_hop2 = [&](Caller& caller, const Sent& invite) {
    Deliver(hop2.Answer(invite, 486, "Busy Here"), hop2.peer());
    std::vector<Sent> finals = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 486);
    ASSERT_EQ(finals.size(), 1u);
    caller.to_tag = finals[0].to_tag();
    Deliver(caller.AckFailure(), caller.peer());
    TakeSent();
  };

  Caller first = NthCaller(1);
  std::optional<Sent> to_hop1 = Invite(first, 5070);
  ASSERT_TRUE(to_hop1);
  Deliver(hop1.Answer(*to_hop1, 503, "Service Unavailable", {}, "Retry-After: 30\r\n"),
          hop1.peer());
  std::vector<Sent> to_hop2 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_hop2.size(), 1u) << "503 fails over";
  ASSERT_NO_FATAL_FAILURE(busy_at_hop2(first, to_hop2[0]));

  Advance(29s);
  Caller second = NthCaller(2);
  Deliver(second.Invite(), second.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5070, Method::kInvite), IsEmpty()) << "hop 1 rests for 30 s";
  to_hop2 = RequestsTo(out, 5071, Method::kInvite);
  ASSERT_EQ(to_hop2.size(), 1u);
  ASSERT_NO_FATAL_FAILURE(busy_at_hop2(second, to_hop2[0]));

  Advance(2s);  // 31 s after the 503
  Caller third = NthCaller(3);
  Deliver(third.Invite(), third.peer());
  out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kInvite).size(), 1u) << "hop 1 is back";
  EXPECT_THAT(RequestsTo(out, 5071, Method::kInvite), IsEmpty());
}

TEST_F(CallEngineDnsTest, EveryNextHopRestingAnswers503AndSendsNoInvite) {
  dns_.AnswerInline("trunk1.example.test", ResolvedTo({"127.0.0.1:5070"}));
  dns_.AnswerInline("trunk2.example.test", ResolvedTo({"127.0.0.1:5071"}));
  ASSERT_NO_FATAL_FAILURE(Start(kTwoTrunkRoute));
  Callee hop1{5070, "trunk1", "trk1"};
  Callee hop2{5071, "trunk2", "trk2"};

  Caller first = NthCaller(1);
  std::optional<Sent> to_hop1 = Invite(first, 5070);
  ASSERT_TRUE(to_hop1);
  Deliver(hop1.Answer(*to_hop1, 503, "Service Unavailable", {}, "Retry-After: 30\r\n"),
          hop1.peer());
  std::vector<Sent> to_hop2 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_hop2.size(), 1u);
  Deliver(hop2.Answer(to_hop2[0], 503, "Service Unavailable", {}, "Retry-After: 60\r\n"),
          hop2.peer());
  std::vector<Sent> finals = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 503);
  ASSERT_EQ(finals.size(), 1u);
  first.to_tag = finals[0].to_tag();
  Deliver(first.AckFailure(), first.peer());
  TakeSent();

  Advance(5s);
  const size_t asked = dns_.requests.size();
  Caller second = NthCaller(2);
  Deliver(second.Invite(), second.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  finals = WithStatus(ResponsesTo(out, kCallerPort), 503);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].call_id(), second.call_id);
  EXPECT_TRUE(finals[0].HasHeader("Retry-After"));
  EXPECT_EQ(dns_.requests.size(), asked + 2) << "both names were looked at";
  EXPECT_EQ(Ended(CallOutcome::kUnreachable), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

// Hop 1 timed out (Timer B), hop 2 is still being resolved when the caller cancels: no
// INVITE is out, so the call must end at once, as when the first hop is resolving.
// Was a bug: b2bua/call_engine.cc OnClientFailure() (~line 1253) leaves the dead transaction in
// `call.b_invite`; CancelBLeg() (~line 1290) then "cancels" it (SendCancel() ignores an
// unknown id), returns true and CancelCall() waits 64*T1 on kCancelGuard for a 487 that
// cannot come: the call stays active 32 s. Fix: set `call.b_invite = kNoTransaction` in
// OnClientFailure() before OnInviteFinalFailure(), as OnInviteResponse() does for finals.
TEST_F(CallEngineDnsEdgeTest, CancelWhileResolvingAfterATimedOutHopEndsTheCallAtOnce) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5070", "sip:trunk2.example.test:5071"]
)yaml"));
  Caller caller = NthCaller(1);
  std::optional<Sent> first = Invite(caller, 5070);
  ASSERT_TRUE(first);
  Advance(33s);  // Timer B (64*T1) ends hop 1
  TakeSent();
  ASSERT_THAT(dns_.hosts(), ElementsAre("trunk2.example.test"));

  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(200, 487));
  EXPECT_THAT(RequestsOf(out, Method::kCancel), IsEmpty());
  EXPECT_EQ(engine_->active_calls(), 0u) << "nothing left to wait for";
  EXPECT_EQ(Ended(CallOutcome::kCancelled), 1u);

  AnswerDns(0, ResolvedTo({"127.0.0.1:5071"}));
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty());
}

// The target being resolved timed out and the search moved on to an IP literal, whose
// INVITE is now the one in progress: the resolution arriving afterwards belongs to an
// abandoned attempt and must not start a second INVITE.
// Was a bug: b2bua/call_engine.cc: OnTimer(kTargetTimeout) (~line 1525) moves on without
// clearing `call.resolving`, and SendAttempt() (~line 735) sends to an IP literal without
// bumping `call.resolve_generation`; OnResolved() (~line 764) therefore accepts the stale
// answer and SendBLegInvite() overwrites b_invite/b.peer: two INVITEs are out, and the
// live target's 200 is taken for a stray and released with ACK+BYE. Fix: in SendAttempt()
// set `call.resolving = false; ++call.resolve_generation;` before any direct send (or
// clear `resolving` wherever an attempt is abandoned: target timeout, failover).
TEST_F(CallEngineDnsEdgeTest, ResolutionArrivingAfterItsTargetTimedOutSendsNoSecondInvite) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {target_timeout: 2s}\n"));
  Caller caller;
  Callee bob;
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302,
                       "Contact: <sip:slow@slow.example.test>;q=1.0\r\n"
                       "Contact: <sip:t2@127.0.0.1:5072>;q=0.5\r\n"),
          bob.peer());
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty());
  ASSERT_THAT(dns_.hosts(), ElementsAre("slow.example.test"));

  Advance(2100ms);
  std::vector<Sent> to_t2 = RequestsTo(TakeSent(), 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u) << "the slow target timed out: next one";

  AnswerDns(0, ResolvedTo({"127.0.0.1:5073"}));
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty())
      << "the slow target was given up on";

  Deliver(t2.Answer(to_t2[0], 200, "OK", kAnswerSdp), t2.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(200));
  EXPECT_THAT(RequestsOf(out, Method::kBye), IsEmpty());
}

// RFC 3263 4.3 and the ResolvedTargets contract (proto/dns_resolver.h): a request that
// fails on one target (timeout, 503) moves on to the next address of the same name.
// Was a bug: b2bua/call_engine.cc OnResolved() (~line 772) sends to the first usable address
// and drops the rest; OnInviteFinalFailure() then only knows the configured hops, so a
// trunk name with two A records is down as soon as its first address is. Fix: keep the
// unused targets of the answer in the Call (e.g. `std::vector<Peer> pending_addresses`)
// and have StartNextAttempt() try them before `call.hops[next_hop]`.
TEST_F(CallEngineDnsEdgeTest, NextHopNameFailsOverToItsSecondAddress) {
  dns_.AnswerInline("trunk.example.test", ResolvedTo({"127.0.0.2:5070", "127.0.0.3:5070"}));
  ASSERT_NO_FATAL_FAILURE(Start(kTrunkRoute));
  Caller caller = NthCaller(1);
  Callee trunk{5070, "trunk", "trk"};
  Deliver(caller.Invite(), caller.peer());
  std::vector<Sent> invites = RequestsOf(TakeSent(), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].ip(), "127.0.0.2");

  Deliver(trunk.Answer(invites[0], 503, "Service Unavailable"), PeerAt("127.0.0.2", 5070));
  std::vector<Sent> out = TakeSent();
  invites = RequestsOf(out, Method::kInvite);
  ASSERT_EQ(invites.size(), 1u) << "the name's second address is left";
  EXPECT_EQ(invites[0].to(), PeerAt("127.0.0.3", 5070));
  EXPECT_THAT(WithStatus(ResponsesTo(out, kCallerPort), 503), IsEmpty());
}

// A 301 to a name is cached like one to an address; the next call goes to the name.
// Was a bug: b2bua/call_engine.cc OnNewInvite() (~line 560) counts redirect_cache_hits before
// checking the cached target, then uses it only when IsIpLiteral(target): a cached name
// is ignored (the call goes to the redirector again) although the hit is counted. Fix:
// drop the IsIpLiteral() condition (SendAttempt() resolves names) and count the hit only
// when the cached target replaces the hops.
TEST_F(CallEngineDnsEdgeTest, Permanent301ToANameIsCachedForTheNextCall) {
  dns_.AnswerInline("moved.example.test", ResolvedTo({"127.0.0.1:5072"}));
  ASSERT_NO_FATAL_FAILURE(Start());
  Callee bob;
  Callee moved{5072, "bob", "mvd"};
  {
    Caller first_caller;
    std::optional<Sent> first = Invite(first_caller);
    ASSERT_TRUE(first);
    Deliver(bob.Redirect(*first, 301, "Contact: <sip:bob@moved.example.test>\r\n"), bob.peer());
    std::vector<Sent> to_moved = RequestsTo(TakeSent(), 5072, Method::kInvite);
    ASSERT_EQ(to_moved.size(), 1u);
    Deliver(moved.Answer(to_moved[0], 486, "Busy Here"), moved.peer());
    std::vector<Sent> finals = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 486);
    ASSERT_EQ(finals.size(), 1u);
    first_caller.to_tag = finals[0].to_tag();
    Deliver(first_caller.AckFailure(), first_caller.peer());
    TakeSent();
    ASSERT_EQ(engine_->active_calls(), 0u);
  }

  Caller second_caller;
  second_caller.call_id = "second-call@pc33.atlanta.example.com";
  second_caller.from_tag = "77aa";
  second_caller.branch = "z9hG4bKsecond";
  Deliver(second_caller.Invite(), second_caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5070, Method::kInvite), IsEmpty()) << "bob moved permanently";
  std::vector<Sent> to_moved = RequestsTo(out, 5072, Method::kInvite);
  ASSERT_EQ(to_moved.size(), 1u);
  EXPECT_EQ(to_moved[0].request_uri(), "sip:bob@moved.example.test");
  EXPECT_EQ(counters_->redirect_cache_hits.Get(), 1u);
}

}  // namespace
}  // namespace b2bua

// ---------------------------------------------------------------------------------------
// The access policy and call limits of a new INVITE (b2bua/access_policy.h,
// b2bua/call_limits.h): relay, route callers, identity headers, caps.

namespace b2bua {
namespace {

// Final answers only: the 100 Trying the transaction layer sends first is not a verdict.
std::vector<Sent> Finals(const std::vector<Sent>& responses) {
  std::vector<Sent> out;
  for (const Sent& r : responses)
    if (r.status() >= 200) out.push_back(r);
  return out;
}
std::vector<int> FinalStatuses(const std::vector<Sent>& responses) {
  return Statuses(Finals(responses));
}

class CallEngineAccessTest : public CallEngineTest {
 protected:
  uint64_t Rejected(RejectReason reason) const {
    return counters_->requests_rejected[static_cast<size_t>(reason)].Get();
  }
  /// Sends the caller's INVITE from `from` and returns what went out.
  std::vector<Sent> InviteFrom(const Caller& caller, const Peer& from) {
    Deliver(caller.Invite(), from);
    return TakeSent();
  }
  static Caller NumberedCaller(int n, std::string_view request_uri) {
    Caller caller;
    caller.request_uri = std::string(request_uri);
    caller.call_id = "acl-" + std::to_string(n) + "@pc33.atlanta.example.com";
    caller.from_tag = "aclft" + std::to_string(n);
    caller.branch = "z9hG4bKacl" + std::to_string(n);
    caller.requests = n * 10;
    return caller;
  }
};

// Without a route the Request-URI host is the next hop only for trusted sources.
TEST_F(CallEngineAccessTest, UntrustedCallerMayNotRelayToTheRequestUri) {
  ASSERT_NO_FATAL_FAILURE(Start("access: { trusted: [127.0.0.2/32], callers: [127.0.0.0/8] }\n"));
  Caller caller = NumberedCaller(1, "sip:+19005551234@127.0.0.1:5070");
  std::vector<Sent> out = InviteFrom(caller, caller.peer());
  EXPECT_TRUE(RequestsOf(out, Method::kInvite).empty());
  std::vector<Sent> answers = Finals(ResponsesTo(out, kCallerPort));
  ASSERT_THAT(FinalStatuses(answers), ElementsAre(403));
  EXPECT_THAT(answers[0].Header("Reason"), HasSubstr("relaying to the Request-URI"));
  EXPECT_EQ(Rejected(RejectReason::kRelayDenied), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(CallEngineAccessTest, TrustedCallerRelaysToTheRequestUri) {
  ASSERT_NO_FATAL_FAILURE(Start("access: { trusted: [127.0.0.1/32] }\n"));
  Caller caller = NumberedCaller(1, "sip:+19005551234@127.0.0.1:5070");
  EXPECT_EQ(RequestsOf(InviteFrom(caller, caller.peer()), Method::kInvite).size(), 1u);
}

TEST_F(CallEngineAccessTest, RelayToNobodyRefusesEvenTrustedCallers) {
  ASSERT_NO_FATAL_FAILURE(
      Start("access: { trusted: [127.0.0.1/32], relay_to_request_uri: nobody }\n"));
  Caller second = NumberedCaller(2, "sip:+19005551234@127.0.0.1:5070");
  std::vector<Sent> out = InviteFrom(second, second.peer());
  EXPECT_TRUE(RequestsOf(out, Method::kInvite).empty());
  EXPECT_THAT(FinalStatuses(ResponsesTo(out, kCallerPort)), ElementsAre(403));
}

TEST_F(CallEngineAccessTest, RouteCallersRestrictTheRoute) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
access: { trusted: [127.0.0.2/32], callers: [127.0.0.0/8] }
routes:
  - prefix: "1900"
    next_hops: ["sip:127.0.0.1:5070"]
    callers: [127.0.0.2/32]
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5070"]
)yaml"));
  Caller premium = NumberedCaller(1, "sip:19005551234@b2bua.example.net");
  std::vector<Sent> out = InviteFrom(premium, premium.peer());
  EXPECT_TRUE(RequestsOf(out, Method::kInvite).empty());
  std::vector<Sent> answers = Finals(ResponsesTo(out, kCallerPort));
  ASSERT_THAT(FinalStatuses(answers), ElementsAre(403));
  EXPECT_THAT(answers[0].Header("Reason"), HasSubstr("route not allowed"));
  // The same caller reaches ordinary numbers through the default route.
  Caller ordinary = NumberedCaller(2, "sip:2125550100@b2bua.example.net");
  EXPECT_EQ(RequestsOf(InviteFrom(ordinary, ordinary.peer()), Method::kInvite).size(), 1u);
  // The trusted peer may call the premium number.
  Caller trunk = NumberedCaller(3, "sip:19005551234@b2bua.example.net");
  EXPECT_EQ(RequestsOf(InviteFrom(trunk, PeerAt("127.0.0.2", kCallerPort)), Method::kInvite)
                .size(),
            1u);
}

constexpr std::string_view kIdentityRoute = R"yaml(
routes:
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5070"]
)yaml";

// RFC 3325: P-Asserted-Identity crosses only from inside the trust domain.
TEST_F(CallEngineAccessTest, AssertedIdentityFromAnUntrustedCallerIsRemoved) {
  ASSERT_NO_FATAL_FAILURE(Start(std::string(kIdentityRoute) +
                                "access: { trusted: [127.0.0.2/32], callers: [127.0.0.0/8] }\n"));
  Caller caller = NumberedCaller(1, "sip:2125550100@b2bua.example.net");
  caller.extra = "P-Asserted-Identity: <sip:+12125550100@carrier.example>\r\n"
                 "P-Preferred-Identity: <sip:+12125550111@carrier.example>\r\n";
  std::vector<Sent> invites = RequestsOf(InviteFrom(caller, caller.peer()), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_FALSE(invites[0].HasHeader("P-Asserted-Identity"));
  // The next hop is outside the trust domain: a preferred identity may go, as what it is.
  EXPECT_EQ(invites[0].Header("P-Preferred-Identity"), "<sip:+12125550111@carrier.example>");
}

TEST_F(CallEngineAccessTest, AssertedIdentityFromATrustedCallerIsKept) {
  ASSERT_NO_FATAL_FAILURE(Start(std::string(kIdentityRoute) +
                                "access: { trusted: [127.0.0.1/32] }\n"));
  Caller caller = NumberedCaller(1, "sip:2125550100@b2bua.example.net");
  caller.extra = "P-Asserted-Identity: <sip:+12125550100@carrier.example>\r\n"
                 "P-Asserted-Identity: <tel:+12125550100>\r\n"
                 "P-Preferred-Identity: <sip:+12125550111@carrier.example>\r\n";
  std::vector<Sent> invites = RequestsOf(InviteFrom(caller, caller.peer()), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_THAT(invites[0].Headers("P-Asserted-Identity"),
              ElementsAre("<sip:+12125550100@carrier.example>", "<tel:+12125550100>"));
  // The next hop is trusted: a preferred identity must not reach it as if we asserted it.
  EXPECT_FALSE(invites[0].HasHeader("P-Preferred-Identity"));
}

TEST_F(CallEngineAccessTest, PrivacyIdKeepsTheAssertedIdentityInsideTheTrustDomain) {
  ASSERT_NO_FATAL_FAILURE(Start(std::string(kIdentityRoute) +
                                "access: { trusted: [127.0.0.3/32] }\n"));
  Caller caller = NumberedCaller(1, "sip:2125550100@b2bua.example.net");
  caller.extra = "P-Asserted-Identity: <sip:+12125550100@carrier.example>\r\n"
                 "Privacy: header;id\r\n";
  std::vector<Sent> invites =
      RequestsOf(InviteFrom(caller, PeerAt("127.0.0.3", kCallerPort)), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_FALSE(invites[0].HasHeader("P-Asserted-Identity"));
  EXPECT_EQ(invites[0].Header("Privacy"), "header;id");

  // Without Privacy: id it goes to the untrusted next hop as well.
  Caller open = NumberedCaller(2, "sip:2125550100@b2bua.example.net");
  open.extra = "P-Asserted-Identity: <sip:+12125550100@carrier.example>\r\n";
  invites = RequestsOf(InviteFrom(open, PeerAt("127.0.0.3", kCallerPort)), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].Header("P-Asserted-Identity"), "<sip:+12125550100@carrier.example>");
}

// STIR/SHAKEN (RFC 8224): the signature and the Date it covers reach the callee untouched,
// and the From and To it signs keep their URIs.
TEST_F(CallEngineAccessTest, IdentityAndDateFromATrustedSourcePassByteForByte) {
  ASSERT_NO_FATAL_FAILURE(Start(kIdentityRoute));
  Caller caller = NumberedCaller(1, "sip:2125550100@b2bua.example.net");
  const std::string identity =
      "eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0In0.eyJhdHRlc3QiOiJBIn0."
      "c2lnbmF0dXJl;info=<https://cert.example.org/passport.cer>;alg=ES256;ppt=shaken";
  const std::string date = "Tue, 01 Dec 2026 10:00:00 GMT";
  caller.extra = "Identity: " + identity + "\r\nDate: " + date + "\r\n";
  std::vector<Sent> invites = RequestsOf(InviteFrom(caller, caller.peer()), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].Header("Identity"), identity);
  EXPECT_EQ(invites[0].Header("Date"), date);
  proto::SipUri from;
  ASSERT_EQ(proto::ParseUri(invites[0].msg().from().uri.text, &from), proto::UriError::kNone);
  EXPECT_EQ(invites[0].msg().from().uri.text, "sip:alice@atlanta.example.com");
  EXPECT_EQ(invites[0].msg().to().uri.text, "sip:bob@biloxi.example.com");
}

TEST_F(CallEngineAccessTest, CallsPerSourceAreCappedForUntrustedSources) {
  ASSERT_NO_FATAL_FAILURE(Start(std::string(kIdentityRoute) +
                                "access: { trusted: [127.0.0.2/32], callers: [127.0.0.0/8], "
                                "max_calls_per_source: 2 }\n"));
  Caller first = NumberedCaller(1, "sip:2125550100@b2bua.example.net");
  Caller second = NumberedCaller(2, "sip:2125550100@b2bua.example.net");
  Caller third = NumberedCaller(3, "sip:2125550100@b2bua.example.net");
  EXPECT_EQ(RequestsOf(InviteFrom(first, first.peer()), Method::kInvite).size(), 1u);
  EXPECT_EQ(RequestsOf(InviteFrom(second, second.peer()), Method::kInvite).size(), 1u);
  std::vector<Sent> out = InviteFrom(third, third.peer());
  EXPECT_TRUE(RequestsOf(out, Method::kInvite).empty());
  std::vector<Sent> answers = Finals(ResponsesTo(out, kCallerPort));
  ASSERT_THAT(FinalStatuses(answers), ElementsAre(503));
  EXPECT_FALSE(answers[0].Header("Retry-After").empty());
  EXPECT_EQ(Rejected(RejectReason::kCallsPerSource), 1u);
  // Another source has its own allowance; a trusted one has none.
  Caller other = NumberedCaller(4, "sip:2125550100@b2bua.example.net");
  EXPECT_EQ(RequestsOf(InviteFrom(other, PeerAt("127.0.0.5", kCallerPort)), Method::kInvite)
                .size(),
            1u);
  for (int n = 5; n < 9; ++n) {
    Caller trunk = NumberedCaller(n, "sip:2125550100@b2bua.example.net");
    EXPECT_EQ(RequestsOf(InviteFrom(trunk, PeerAt("127.0.0.2", kCallerPort)), Method::kInvite)
                  .size(),
              1u);
  }
  // A call that ends gives its place back.
  Deliver(first.Cancel(), first.peer());
  TakeSent();
  Advance(40s);
  TakeSent();
  Caller fourth = NumberedCaller(9, "sip:2125550100@b2bua.example.net");
  EXPECT_EQ(RequestsOf(InviteFrom(fourth, fourth.peer()), Method::kInvite).size(), 1u);
}

TEST_F(CallEngineAccessTest, FullRouteOverflowsToItsOverflowRouteThen503) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: "1900"
    next_hops: ["sip:127.0.0.1:5071"]
    max_calls: 2
    overflow_to: "1"
  - prefix: "1"
    next_hops: ["sip:127.0.0.1:5072"]
    max_calls: 1
)yaml"));
  std::vector<uint16_t> ports;
  for (int n = 1; n <= 4; ++n) {
    Caller caller = NumberedCaller(n, "sip:19005551234@b2bua.example.net");
    std::vector<Sent> out = InviteFrom(caller, caller.peer());
    std::vector<Sent> invites = RequestsOf(out, Method::kInvite);
    if (invites.size() == 1) {
      ports.push_back(invites[0].port());
    } else {
      EXPECT_THAT(FinalStatuses(ResponsesTo(out, kCallerPort)), ElementsAre(503)) << n;
    }
  }
  EXPECT_THAT(ports, ElementsAre(5071, 5071, 5072));
  EXPECT_EQ(Rejected(RejectReason::kRouteLimit), 1u);
}

TEST_F(CallEngineAccessTest, RouteAndGlobalCallRates) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
limits: { calls_per_second: 3 }
routes:
  - prefix: "1900"
    next_hops: ["sip:127.0.0.1:5071"]
    calls_per_second: 1
    overflow_to: ""
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5072"]
)yaml"));
  int n = 0;
  auto call = [&](std::string_view uri) {
    Caller caller = NumberedCaller(++n, uri);
    std::vector<Sent> out = InviteFrom(caller, caller.peer());
    std::vector<Sent> invites = RequestsOf(out, Method::kInvite);
    if (invites.size() == 1) return static_cast<int>(invites[0].port());
    std::vector<int> statuses = FinalStatuses(ResponsesTo(out, kCallerPort));
    return statuses.empty() ? 0 : statuses.back();
  };
  EXPECT_EQ(call("sip:19005551234@x.example"), 5071);
  EXPECT_EQ(call("sip:19005551234@x.example"), 5072);  // over the route's rate: next route
  EXPECT_EQ(call("sip:2125550100@x.example"), 5072);
  EXPECT_EQ(call("sip:2125550100@x.example"), 503);    // over the global rate
  EXPECT_EQ(Rejected(RejectReason::kRate), 1u);
  Advance(1s);
  TakeSent();  // retransmissions of the 503 and of the unanswered INVITEs
  EXPECT_EQ(call("sip:19005551234@x.example"), 5071);
}

}  // namespace
}  // namespace b2bua

namespace b2bua {
namespace {

// Without overflow_to a capped route never leaks its calls into a shorter route that also
// matches: the premium-rate cap holds even with a default route.
TEST_F(CallEngineAccessTest, CappedRouteWithoutOverflowAnswers503) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: "1900"
    next_hops: ["sip:127.0.0.1:5071"]
    max_calls: 1
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5072"]
)yaml"));
  Caller first = NumberedCaller(1, "sip:19005551234@b2bua.example.net");
  std::vector<Sent> invites = RequestsOf(InviteFrom(first, first.peer()), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].port(), 5071);
  Caller second = NumberedCaller(2, "sip:19005551234@b2bua.example.net");
  std::vector<Sent> out = InviteFrom(second, second.peer());
  EXPECT_TRUE(RequestsOf(out, Method::kInvite).empty());
  EXPECT_THAT(FinalStatuses(ResponsesTo(out, kCallerPort)), ElementsAre(503));
  EXPECT_EQ(Rejected(RejectReason::kRouteLimit), 1u);
}

}  // namespace
}  // namespace b2bua

namespace b2bua {
namespace {

// RFC 3261 26.2.2: a sips: Request-URI is never sent over a hop without TLS; the caller
// learns why.
TEST_F(CallEngineAccessTest, SipsRequestUriNeverLeavesOverUdp) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5070"]
)yaml"));
  Caller caller = NumberedCaller(1, "sips:2125550100@b2bua.example.net");
  std::vector<Sent> out = InviteFrom(caller, caller.peer());
  EXPECT_TRUE(RequestsOf(out, Method::kInvite).empty());
  std::vector<Sent> answers = Finals(ResponsesTo(out, kCallerPort));
  ASSERT_THAT(FinalStatuses(answers), ElementsAre(480));
  EXPECT_THAT(answers[0].Header("Reason"), HasSubstr("needs a TLS next hop"));
}

}  // namespace
}  // namespace b2bua

namespace b2bua {
namespace {

// RFC 3261 sets no limit on Via values: a request with hundreds of them is processed, and
// the answer echoes every one, in order (RFC 3261 8.2.6.2).
TEST_F(CallEngineAccessTest, HundredsOfViasAreEchoedInTheAnswer) {
  ASSERT_NO_FATAL_FAILURE(Start(kIdentityRoute));
  Caller caller = NumberedCaller(1, "sip:2125550100@b2bua.example.net");
  std::string vias;
  for (int i = 0; i < 300; ++i)
    vias += "Via: SIP/2.0/UDP 10.1." + std::to_string(i / 200) + "." + std::to_string(i % 200) +
            ";branch=z9hG4bKproxy" + std::to_string(i) + "\r\n";
  std::string invite = caller.Invite();
  const size_t after_first_via = invite.find("\r\n", invite.find("\r\nVia: ") + 2) + 2;
  invite.insert(after_first_via, vias);
  Deliver(invite, caller.peer());
  std::vector<Sent> out = TakeSent();
  ASSERT_EQ(RequestsOf(out, Method::kInvite).size(), 1u);
  std::vector<Sent> answers = ResponsesTo(out, kCallerPort);
  ASSERT_FALSE(answers.empty());
  const std::vector<std::string> echoed = answers[0].Headers("Via");
  ASSERT_EQ(echoed.size(), 301u);
  EXPECT_NE(echoed[300].find("branch=z9hG4bKproxy299"), std::string::npos) << echoed[300];
}

}  // namespace
}  // namespace b2bua

namespace b2bua {
namespace {

struct RecordedShares final : RedirectShare {
  void SharePermanentRedirect(std::string_view request_uri, std::string_view target,
                              proto::TimePoint expires) override {
    shared.push_back({std::string(request_uri), std::string(target), expires});
  }
  struct Share {
    std::string request_uri;
    std::string target;
    proto::TimePoint expires;
  };
  std::vector<Share> shared;
};

// A 301 learned on this shard goes to the other shards (through RedirectShare), with the
// moment it expires; one they learned sends this shard's next call straight to the target.
TEST_F(CallEngineTest, Permanent301IsSharedWithTheOtherShardsBothWays) {
  RecordedShares shares;
  redirect_share_ = &shares;
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {cache_301: {entries: 10, ttl: 10m}}\n"));
  Caller caller;
  Callee bob;
  std::optional<Sent> invite = Invite(caller);
  ASSERT_TRUE(invite);
  Deliver(bob.Redirect(*invite, 301, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), bob.peer());
  TakeSent();
  ASSERT_EQ(shares.shared.size(), 1u);
  EXPECT_EQ(shares.shared[0].request_uri, caller.request_uri);
  EXPECT_EQ(shares.shared[0].target, "sip:t2@127.0.0.1:5072");
  EXPECT_EQ(shares.shared[0].expires, clock_.Now() + std::chrono::minutes(10));

  // What another shard learned about another number.
  engine_->LearnPermanentRedirect("sip:5559999@b2bua.example.net", "sip:moved@127.0.0.1:5073",
                                  clock_.Now() + std::chrono::minutes(5));
  Caller other;
  other.request_uri = "sip:5559999@b2bua.example.net";
  other.call_id = "shared-301@pc33.atlanta.example.com";
  other.from_tag = "sh301";
  other.branch = "z9hG4bKshared301";
  Deliver(other.Invite(), other.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5070, Method::kInvite), IsEmpty());
  std::vector<Sent> moved = RequestsTo(out, 5073, Method::kInvite);
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved[0].request_uri(), "sip:moved@127.0.0.1:5073");
  EXPECT_EQ(counters_->redirect_cache_hits.Get(), 1u);
  // Learned from elsewhere, it is not shared again.
  EXPECT_EQ(shares.shared.size(), 1u);
}

}  // namespace
}  // namespace b2bua
