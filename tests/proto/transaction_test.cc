// Tests proto/transaction.{h,cc}: the four RFC 3261 section 17 state machines (with the
// RFC 6026 Accepted states) timer by timer, matching per 17.1.3 and 17.2.3 (including the
// RFC 2543 fallback), CANCEL, the ACK the layer writes for non-2xx finals, the response
// destination rules and re-entrant TU calls. Time moves only through a FakeClock that
// drives the production TimerWheel; what the layer sends is parsed again with SipParser.

#include "proto/transaction.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/clock.h"
#include "proto/net_address.h"
#include "proto/sip_builder.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"
#include "proto/timer_wheel.h"
#include "proto/transport.h"

namespace b2bua::proto {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// A fine wheel tick keeps the timing assertions tight: a timer fires at most one tick late.
constexpr Duration kTick = 1ms;
constexpr Duration kT1 = 500ms;
constexpr Duration kT2 = 4s;
constexpr Duration kT4 = 5s;
constexpr Duration k64T1 = 32s;

// ---------------------------------------------------------------------------------------
// Messages.

// A message parsed into its own storage; the views stay valid as long as this lives.
struct Parsed {
  std::unique_ptr<std::string> bytes;
  std::unique_ptr<SipMessage> message;
  const SipMessage* operator->() const { return message.get(); }
  const SipMessage& operator*() const { return *message; }
};

Parsed Parse(std::string_view bytes) {
  Parsed p{std::make_unique<std::string>(bytes), std::make_unique<SipMessage>()};
  SipParser parser;
  ParseResult result = parser.Parse(*p.bytes, Framing::kDatagram, p.message.get());
  EXPECT_TRUE(result.ok()) << *p.bytes;
  return p;
}

std::vector<std::string> RouteValues(const SipMessage& m) {
  std::vector<std::string> out;
  for (size_t i = 0; i < m.route_count(); ++i) out.emplace_back(m.routes()[i].text);
  return out;
}

constexpr std::string_view kSdp =
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.101\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n";

// A request arriving from the caller side (server transactions), by way of a proxy.
struct RequestSpec {
  std::string method = "INVITE";
  std::string branch = "z9hG4bK776asdhds";  // empty: an RFC 2543 Via without branch
  std::string transport = "UDP";
  std::string sent_by = "192.0.2.101:5060";
  std::string via_params;  // appended to the top Via, e.g. ";rport"
  std::string to_tag;
  std::string from_tag = "1928301774";
  uint32_t cseq = 314159;
  std::string cseq_method;  // defaults to `method`
};

std::string Request(const RequestSpec& s) {
  const std::string& cseq_method = s.cseq_method.empty() ? s.method : s.cseq_method;
  std::string m = s.method + " sip:bob@biloxi.example.com SIP/2.0\r\n";
  m += "Via: SIP/2.0/" + s.transport + " " + s.sent_by;
  if (!s.branch.empty()) m += ";branch=" + s.branch;
  m += s.via_params + "\r\n";
  m += "Via: SIP/2.0/UDP 192.0.2.50:5060;received=192.0.2.50;branch=z9hG4bKa9f1c.0\r\n";
  m += "Max-Forwards: 69\r\n";
  m += "From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=" + s.from_tag + "\r\n";
  m += "To: <sip:bob@biloxi.example.com>";
  if (!s.to_tag.empty()) m += ";tag=" + s.to_tag;
  m += "\r\n";
  m += "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n";
  m += "CSeq: " + std::to_string(s.cseq) + " " + cseq_method + "\r\n";
  if (s.method == "INVITE") {
    m += "Contact: <sip:alice@192.0.2.101:5060;transport=udp>\r\n";
    m += "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n";
    m += "Content-Type: application/sdp\r\n";
    m += "Content-Length: " + std::to_string(kSdp.size()) + "\r\n\r\n";
    m += kSdp;
  } else {
    m += "Content-Length: 0\r\n\r\n";
  }
  return m;
}

RequestSpec Spec(std::string method) {
  RequestSpec s;
  s.method = std::move(method);
  return s;
}

// The ACK an RFC 3261 caller sends for our non-2xx final: same branch, our To tag.
RequestSpec AckFor(RequestSpec invite, std::string to_tag) {
  invite.method = "ACK";
  invite.cseq_method = "ACK";
  invite.to_tag = std::move(to_tag);
  return invite;
}

RequestSpec CancelFor(RequestSpec invite) {
  invite.method = "CANCEL";
  invite.cseq_method = "CANCEL";
  return invite;
}

// What the TU (or the far end) answers to `request`, written by the production builder.
std::string ResponseTo(std::string_view request, int code, std::string_view reason,
                       std::string_view to_tag, std::string_view extra_headers = {}) {
  Parsed parsed = Parse(request);
  std::string out(request.size() + 512, '\0');
  MessageWriter writer(out.data(), out.size());
  WriteResponse(*parsed, code, reason, to_tag, extra_headers, writer);
  EXPECT_FALSE(writer.overflowed());
  out.resize(writer.size());
  return out;
}

constexpr std::string_view kOurTag = "as83kd9bs";   // To tag of the responses our TU writes
constexpr std::string_view kFarTag = "8321234356";  // To tag of the callee's responses
constexpr std::string_view kClientBranch = "z9hG4bKb2b.7f3a91.1";
constexpr std::string_view kRoutes =
    "Route: <sip:edge1.carrier.example.net;lr>\r\n"
    "Route: <sip:core2.carrier.example.net:5070;lr;transport=udp>, "
    "<sip:sbc.biloxi.example.com;lr>\r\n";

// A request the core sends on the callee side (client transactions).
std::string ClientRequest(std::string_view method, std::string_view branch = kClientBranch,
                          std::string_view transport = "UDP", std::string_view routes = kRoutes,
                          std::string_view cseq_method = {}) {
  if (cseq_method.empty()) cseq_method = method;
  std::string m;
  m += method;
  m += " sip:bob@192.0.2.20:5060 SIP/2.0\r\n";
  m += "Via: SIP/2.0/";
  m += transport;
  m += " 198.51.100.1:5060;branch=";
  m += branch;
  m += "\r\n";
  m += routes;
  m += "Max-Forwards: 70\r\n";
  m += "From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n";
  m += "To: <sip:bob@biloxi.example.com>\r\n";
  m += "Call-ID: 3848276298220188511@b2bua.example.org\r\n";
  m += "CSeq: 1 ";
  m += cseq_method;
  m += "\r\n";
  if (method == "INVITE") {
    m += "Contact: <sip:b2bua@198.51.100.1:5060>\r\n";
    m += "Content-Type: application/sdp\r\n";
    m += "Content-Length: " + std::to_string(kSdp.size()) + "\r\n\r\n";
    m += kSdp;
  } else {
    m += "Content-Length: 0\r\n\r\n";
  }
  return m;
}

Peer MakePeer(std::string_view ip_port, TransportKind transport = TransportKind::kUdp,
              uint32_t connection_id = 0) {
  Peer p;
  EXPECT_TRUE(NetAddress::ParseIpPort(ip_port, &p.address)) << ip_port;
  p.transport = transport;
  p.connection_id = connection_id;
  return p;
}

// ---------------------------------------------------------------------------------------
// Fakes.

struct SentMessage {
  Peer to;
  std::string bytes;
  TimePoint at;
};

class FakeSink final : public MessageSink {
 public:
  explicit FakeSink(const Clock& clock) : clock_(clock) {}
  bool Send(const Peer& to, std::string_view bytes) override {
    if (fail) return false;
    sent.push_back({to, std::string(bytes), clock_.Now()});
    return true;
  }

  std::vector<SentMessage> sent;
  bool fail = false;

 private:
  const Clock& clock_;
};

enum class Event { kRequest, kAck, kCancel, kResponse, kStray, kFailure };

struct Callback {
  Event event = Event::kRequest;
  TransactionId id = kNoTransaction;
  uint64_t cookie = 0;
  Method method = Method::kUnknown;  // request method, or CSeq method of a response
  int status = 0;
  ClientFailure failure = ClientFailure::kTimeout;
  std::string bytes;
  Peer source;
  TimePoint at;
};

class RecordingUser final : public TransactionUser {
 public:
  explicit RecordingUser(const Clock& clock) : clock_(clock) {}

  void OnRequest(TransactionId id, const SipMessage& request, const Peer& source) override {
    Record(Event::kRequest, id, 0, request, source);
  }
  void OnAck(const SipMessage& ack, const Peer& source) override {
    Record(Event::kAck, kNoTransaction, 0, ack, source);
  }
  void OnCancel(TransactionId invite, const SipMessage& cancel) override {
    Record(Event::kCancel, invite, 0, cancel, {});
  }
  void OnResponse(TransactionId id, uint64_t cookie, const SipMessage& response) override {
    Record(Event::kResponse, id, cookie, response, {});
  }
  void OnStrayResponse(const SipMessage& response, const Peer& source) override {
    Record(Event::kStray, kNoTransaction, 0, response, source);
  }
  void OnClientFailure(TransactionId id, uint64_t cookie, ClientFailure failure) override {
    Callback c;
    c.event = Event::kFailure;
    c.id = id;
    c.cookie = cookie;
    c.failure = failure;
    Record(std::move(c));
  }

  size_t Count(Event event) const {
    size_t n = 0;
    for (const Callback& c : calls)
      if (c.event == event) ++n;
    return n;
  }

  std::vector<Callback> calls;
  // Runs after each callback is recorded: lets a test call back into the layer.
  std::function<void(const Callback&)> hook;

 private:
  void Record(Event event, TransactionId id, uint64_t cookie, const SipMessage& m,
              const Peer& source) {
    Callback c;
    c.event = event;
    c.id = id;
    c.cookie = cookie;
    c.method = m.is_request() ? m.method() : m.cseq().method;
    c.status = m.is_request() ? 0 : m.status_code();
    c.bytes = std::string(m.raw());
    c.source = source;
    Record(std::move(c));
  }

  void Record(Callback c) {
    c.at = clock_.Now();
    calls.push_back(c);
    if (hook) hook(c);
  }

  const Clock& clock_;
};

// ---------------------------------------------------------------------------------------
// Fixture.

class TransactionLayerTest : public ::testing::Test {
 protected:
  TransactionLayerTest() { Reset(TransactionConfig{}); }

  void Reset(const TransactionConfig& config) {
    layer_.reset();
    layer_ = std::make_unique<TransactionLayer>(config, wheel_, sink_, user_);
  }

  void Deliver(std::string_view bytes, const Peer& from) {
    Parsed parsed = Parse(bytes);
    layer_->OnMessage(*parsed, from);
  }

  // Moves time one tick at a time so that each timer fires within a tick of its deadline.
  void RunFor(Duration duration) {
    for (Duration elapsed{}; elapsed < duration; elapsed += kTick) {
      clock_.Advance(kTick);
      wheel_.Advance();
    }
  }

  // The gaps between consecutive sends from index `first` on.
  std::vector<Duration> Gaps(size_t first = 0) const {
    std::vector<Duration> gaps;
    for (size_t i = first + 1; i < sink_.sent.size(); ++i)
      gaps.push_back(sink_.sent[i].at - sink_.sent[i - 1].at);
    return gaps;
  }

  // Each actual gap is the expected one, fired at most one tick late.
  void ExpectGaps(const std::vector<Duration>& expected, size_t first = 0) const {
    std::vector<Duration> actual = Gaps(first);
    ASSERT_EQ(actual.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_GE(actual[i], expected[i]) << "gap " << i;
      EXPECT_LE(actual[i], expected[i] + kTick) << "gap " << i;
    }
  }

  static void ExpectWithinTick(Duration actual, Duration expected) {
    EXPECT_GE(actual, expected);
    EXPECT_LE(actual, expected + kTick);
  }

  Parsed SentAt(size_t i) const { return Parse(sink_.sent.at(i).bytes); }
  Parsed LastSent() const { return Parse(sink_.sent.back().bytes); }

  // The single server transaction a test delivered a request to.
  TransactionId LastRequestId() const {
    for (auto it = user_.calls.rbegin(); it != user_.calls.rend(); ++it)
      if (it->event == Event::kRequest) return it->id;
    return kNoTransaction;
  }

  TransactionId SendInvite(const Peer& to, uint64_t cookie = 7,
                           std::string_view branch = kClientBranch) {
    std::string transport(TransportName(to.transport));
    return layer_->SendRequest(ClientRequest("INVITE", branch, transport), branch,
                               Method::kInvite, to, cookie);
  }

  FakeClock clock_;
  TimerWheel wheel_{clock_, kTick};
  FakeSink sink_{clock_};
  RecordingUser user_{clock_};
  std::unique_ptr<TransactionLayer> layer_;
  const Peer kCaller = MakePeer("192.0.2.101:5060");
  const Peer kCallee = MakePeer("192.0.2.20:5060");
  const Peer kCalleeTcp = MakePeer("192.0.2.20:5060", TransportKind::kTcp, 31);
};

// ---------------------------------------------------------------------------------------
// INVITE client transaction.

TEST_F(TransactionLayerTest, InviteClientTimerADoublesUntilTimerBTimesOut) {
  const TimePoint start = clock_.Now();
  TransactionId id = SendInvite(kCallee, 42);
  ASSERT_NE(id, kNoTransaction);
  EXPECT_EQ(layer_->size(), 1u);

  RunFor(33s);
  // Sent at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s; Timer B ends it at 32 s.
  ExpectGaps({500ms, 1s, 2s, 4s, 8s, 16s});
  for (const SentMessage& s : sink_.sent) {
    EXPECT_EQ(s.to, kCallee);
    EXPECT_EQ(s.bytes, ClientRequest("INVITE"));
  }
  ASSERT_EQ(user_.calls.size(), 1u);
  EXPECT_EQ(user_.calls[0].event, Event::kFailure);
  EXPECT_EQ(user_.calls[0].id, id);
  EXPECT_EQ(user_.calls[0].cookie, 42u);
  EXPECT_EQ(user_.calls[0].failure, ClientFailure::kTimeout);
  ExpectWithinTick(user_.calls[0].at - start, k64T1);
  EXPECT_EQ(layer_->size(), 0u);
  EXPECT_EQ(wheel_.size(), 0u);
  EXPECT_EQ(layer_->counters().client_created, 1u);
  EXPECT_EQ(layer_->counters().retransmissions_sent, 6u);
  EXPECT_EQ(layer_->counters().timeouts, 1u);

  // A response after the end is stray.
  Deliver(ResponseTo(ClientRequest("INVITE"), 180, "Ringing", kFarTag), kCallee);
  EXPECT_EQ(user_.calls.back().event, Event::kStray);
  EXPECT_EQ(layer_->counters().stray_responses, 1u);
}

TEST_F(TransactionLayerTest, InviteClientDoesNotRetransmitOverTcpButTimerBStillFires) {
  const TimePoint start = clock_.Now();
  TransactionId id = SendInvite(kCalleeTcp);
  ASSERT_NE(id, kNoTransaction);
  RunFor(33s);
  ASSERT_EQ(sink_.sent.size(), 1u);
  EXPECT_EQ(sink_.sent[0].to, kCalleeTcp);
  ASSERT_EQ(user_.calls.size(), 1u);
  EXPECT_EQ(user_.calls[0].event, Event::kFailure);
  ExpectWithinTick(user_.calls[0].at - start, k64T1);
  EXPECT_EQ(layer_->counters().retransmissions_sent, 0u);
}

TEST_F(TransactionLayerTest, InviteClientProvisionalStopsTimersAAndB) {
  TransactionId id = SendInvite(kCallee, 9);
  RunFor(600ms);  // one retransmission
  ASSERT_EQ(sink_.sent.size(), 2u);
  Deliver(ResponseTo(ClientRequest("INVITE"), 100, "Trying", {}), kCallee);
  Deliver(ResponseTo(ClientRequest("INVITE"), 180, "Ringing", kFarTag), kCallee);
  RunFor(60s);
  EXPECT_EQ(sink_.sent.size(), 2u);
  ASSERT_EQ(user_.calls.size(), 2u);
  EXPECT_EQ(user_.calls[0].event, Event::kResponse);
  EXPECT_EQ(user_.calls[0].status, 100);
  EXPECT_EQ(user_.calls[1].status, 180);
  EXPECT_EQ(user_.calls[1].id, id);
  EXPECT_EQ(user_.calls[1].cookie, 9u);
  EXPECT_EQ(layer_->size(), 1u);  // the core's Timer C decides when ringing is too long
}

TEST_F(TransactionLayerTest, InviteClientAcksNon2xxFinalItself) {
  TransactionId id = SendInvite(kCallee);
  const std::string invite_bytes = ClientRequest("INVITE");
  Deliver(ResponseTo(invite_bytes, 486, "Busy Here", kFarTag), kCallee);

  ASSERT_EQ(sink_.sent.size(), 2u);
  EXPECT_EQ(sink_.sent[1].to, kCallee);
  Parsed ack = SentAt(1);
  Parsed invite = Parse(invite_bytes);
  EXPECT_TRUE(ack->is_request());
  EXPECT_EQ(ack->method(), Method::kAck);
  EXPECT_EQ(ack->request_uri().text, invite->request_uri().text);
  ASSERT_EQ(ack->via_count(), 1u);
  EXPECT_EQ(ack->top_via()->branch, kClientBranch);
  EXPECT_EQ(ack->top_via()->text, invite->top_via()->text);
  EXPECT_EQ(ack->from().text, invite->from().text);
  EXPECT_EQ(ack->to().tag, kFarTag);
  EXPECT_EQ(ack->to().uri.text, invite->to().uri.text);
  EXPECT_EQ(ack->call_id(), invite->call_id());
  EXPECT_EQ(ack->cseq().number, 1u);
  EXPECT_EQ(ack->cseq().method, Method::kAck);
  EXPECT_EQ(ack->max_forwards(), 70);
  EXPECT_EQ(ack->content_length(), 0);
  EXPECT_THAT(RouteValues(*ack),
              ElementsAre("<sip:edge1.carrier.example.net;lr>",
                          "<sip:core2.carrier.example.net:5070;lr;transport=udp>",
                          "<sip:sbc.biloxi.example.com;lr>"));
  EXPECT_EQ(ack->FindHeader(HeaderId::kContact), nullptr);
  EXPECT_EQ(ack->FindHeader(HeaderId::kContentType), nullptr);

  ASSERT_EQ(user_.calls.size(), 1u);
  EXPECT_EQ(user_.calls[0].event, Event::kResponse);
  EXPECT_EQ(user_.calls[0].id, id);
  EXPECT_EQ(user_.calls[0].status, 486);
}

TEST_F(TransactionLayerTest, InviteClientAckWithoutRouteHeaders) {
  const std::string invite = ClientRequest("INVITE", kClientBranch, "UDP", "");
  layer_->SendRequest(invite, kClientBranch, Method::kInvite, kCallee, 1);
  Deliver(ResponseTo(invite, 404, "Not Found", kFarTag), kCallee);
  ASSERT_EQ(sink_.sent.size(), 2u);
  Parsed ack = SentAt(1);
  EXPECT_EQ(ack->method(), Method::kAck);
  EXPECT_EQ(ack->route_count(), 0u);
}

TEST_F(TransactionLayerTest, InviteClientReAcksRetransmittedFinalUntilTimerD) {
  const std::string invite = ClientRequest("INVITE");
  const std::string redirect =
      ResponseTo(invite, 302, "Moved Temporarily", kFarTag, "Contact: <sip:bob@192.0.2.30>\r\n");
  SendInvite(kCallee);
  Deliver(redirect, kCallee);
  ASSERT_EQ(sink_.sent.size(), 2u);
  const std::string first_ack = sink_.sent[1].bytes;

  Deliver(redirect, kCallee);
  ASSERT_EQ(sink_.sent.size(), 3u);
  EXPECT_EQ(sink_.sent[2].bytes, first_ack);
  EXPECT_EQ(user_.Count(Event::kResponse), 1u);  // reported once
  EXPECT_EQ(layer_->counters().retransmissions_absorbed, 1u);

  // Timer D: 32 s over UDP.
  RunFor(k64T1 - 2 * kTick);
  Deliver(redirect, kCallee);
  EXPECT_EQ(sink_.sent.size(), 4u);
  EXPECT_EQ(layer_->size(), 1u);
  RunFor(3 * kTick);
  EXPECT_EQ(layer_->size(), 0u);
  Deliver(redirect, kCallee);
  EXPECT_EQ(sink_.sent.size(), 4u);
  EXPECT_EQ(user_.Count(Event::kResponse), 1u);
  EXPECT_EQ(user_.Count(Event::kStray), 1u);
}

TEST_F(TransactionLayerTest, InviteClientTimerDIsZeroOverTcp) {
  TransactionId id = SendInvite(kCalleeTcp);
  Deliver(ResponseTo(ClientRequest("INVITE", kClientBranch, "TCP"), 603, "Decline", kFarTag),
          kCalleeTcp);
  ASSERT_EQ(sink_.sent.size(), 2u);
  EXPECT_EQ(SentAt(1)->method(), Method::kAck);
  EXPECT_EQ(sink_.sent[1].to, kCalleeTcp);
  EXPECT_EQ(layer_->size(), 0u);
  EXPECT_EQ(wheel_.size(), 0u);
  ASSERT_EQ(user_.calls.size(), 1u);
  EXPECT_EQ(user_.calls[0].id, id);
  EXPECT_EQ(user_.calls[0].status, 603);
}

TEST_F(TransactionLayerTest, InviteClientReportsEvery2xxUntilTimerM) {
  TransactionId id = SendInvite(kCallee);
  const std::string ok = ResponseTo(ClientRequest("INVITE"), 200, "OK", kFarTag,
                                    "Contact: <sip:bob@192.0.2.20:5060>\r\n");
  Deliver(ok, kCallee);
  Deliver(ok, kCallee);
  Deliver(ok, kCallee);
  EXPECT_EQ(user_.Count(Event::kResponse), 3u);
  for (const Callback& c : user_.calls) {
    EXPECT_EQ(c.id, id);
    EXPECT_EQ(c.status, 200);
  }
  EXPECT_EQ(sink_.sent.size(), 1u);  // the core ACKs a 2xx, not the layer
  // Accepted absorbs stray non-2xx finals.
  Deliver(ResponseTo(ClientRequest("INVITE"), 500, "Server Error", "other"), kCallee);
  EXPECT_EQ(user_.calls.size(), 3u);
  EXPECT_EQ(sink_.sent.size(), 1u);

  RunFor(k64T1 - 2 * kTick);
  Deliver(ok, kCallee);
  EXPECT_EQ(user_.Count(Event::kResponse), 4u);
  RunFor(3 * kTick);
  EXPECT_EQ(layer_->size(), 0u);
  Deliver(ok, kCallee);
  EXPECT_EQ(user_.Count(Event::kResponse), 4u);
  EXPECT_EQ(user_.Count(Event::kStray), 1u);
  EXPECT_EQ(user_.calls.back().source, kCallee);
}

TEST_F(TransactionLayerTest, InviteClient2xxAfterItsAckIsStray) {
  // A 2xx after the non-2xx we ACKed is not the transaction's; the core may ACK and BYE it.
  const std::string invite = ClientRequest("INVITE");
  SendInvite(kCallee);
  Deliver(ResponseTo(invite, 480, "Temporarily Unavailable", kFarTag), kCallee);
  Deliver(ResponseTo(invite, 200, "OK", "late-2xx"), kCallee);
  EXPECT_EQ(user_.Count(Event::kResponse), 1u);
  ASSERT_EQ(user_.Count(Event::kStray), 1u);
  EXPECT_EQ(user_.calls.back().status, 200);
  EXPECT_EQ(sink_.sent.size(), 2u);  // the INVITE and the ACK for the 480
}

TEST_F(TransactionLayerTest, InviteClientMatchesByBranchAndCSeqMethod) {
  SendInvite(kCallee);
  // Same branch, other CSeq method: not this transaction (17.1.3).
  std::string bye = ClientRequest("BYE");
  Deliver(ResponseTo(bye, 200, "OK", kFarTag), kCallee);
  // Other branch.
  Deliver(ResponseTo(ClientRequest("INVITE", "z9hG4bKother"), 180, "Ringing", kFarTag),
          kCallee);
  EXPECT_EQ(user_.Count(Event::kStray), 2u);
  EXPECT_EQ(user_.Count(Event::kResponse), 0u);
  EXPECT_EQ(layer_->counters().stray_responses, 2u);
}

TEST_F(TransactionLayerTest, SendRequestReturnsNoTransactionWhenTheSendFails) {
  sink_.fail = true;
  EXPECT_EQ(SendInvite(kCallee), kNoTransaction);
  EXPECT_EQ(layer_->size(), 0u);
  EXPECT_EQ(layer_->counters().client_created, 0u);
  RunFor(40s);
  EXPECT_THAT(user_.calls, IsEmpty());
}

TEST_F(TransactionLayerTest, SendRequestRefusesAckAndDuplicateBranches) {
  EXPECT_EQ(layer_->SendRequest(ClientRequest("ACK"), kClientBranch, Method::kAck, kCallee, 0),
            kNoTransaction);
  EXPECT_TRUE(sink_.sent.empty());
  EXPECT_NE(SendInvite(kCallee), kNoTransaction);
  EXPECT_EQ(SendInvite(kCallee), kNoTransaction);
  EXPECT_EQ(sink_.sent.size(), 1u);
  EXPECT_EQ(layer_->size(), 1u);
}

TEST_F(TransactionLayerTest, RetransmissionSendFailureIsATransportError) {
  TransactionId id = SendInvite(kCallee, 5);
  sink_.fail = true;
  RunFor(501ms);
  ASSERT_EQ(user_.calls.size(), 1u);
  EXPECT_EQ(user_.calls[0].event, Event::kFailure);
  EXPECT_EQ(user_.calls[0].id, id);
  EXPECT_EQ(user_.calls[0].cookie, 5u);
  EXPECT_EQ(user_.calls[0].failure, ClientFailure::kTransportError);
  EXPECT_EQ(layer_->size(), 0u);
}

// ---------------------------------------------------------------------------------------
// Non-INVITE client transaction.

TEST_F(TransactionLayerTest, NonInviteClientTimerEDoublesToT2ThenTimerFTimesOut) {
  const TimePoint start = clock_.Now();
  TransactionId id = layer_->SendRequest(ClientRequest("OPTIONS"), kClientBranch,
                                         Method::kOptions, kCallee, 77);
  ASSERT_NE(id, kNoTransaction);
  RunFor(33s);
  // 0, 0.5, 1.5, 3.5, then every T2: 7.5 ... 31.5.
  ExpectGaps({500ms, 1s, 2s, kT2, kT2, kT2, kT2, kT2, kT2, kT2});
  ASSERT_EQ(user_.calls.size(), 1u);
  EXPECT_EQ(user_.calls[0].event, Event::kFailure);
  EXPECT_EQ(user_.calls[0].id, id);
  EXPECT_EQ(user_.calls[0].cookie, 77u);
  EXPECT_EQ(user_.calls[0].failure, ClientFailure::kTimeout);
  ExpectWithinTick(user_.calls[0].at - start, k64T1);
  EXPECT_EQ(layer_->counters().timeouts, 1u);
  EXPECT_EQ(layer_->size(), 0u);
}

TEST_F(TransactionLayerTest, NonInviteClientRetransmitsAtT2AfterAProvisional) {
  const std::string bye = ClientRequest("BYE");
  layer_->SendRequest(bye, kClientBranch, Method::kBye, kCallee, 1);
  RunFor(100ms);
  Deliver(ResponseTo(bye, 100, "Trying", {}), kCallee);
  ASSERT_EQ(user_.calls.size(), 1u);
  EXPECT_EQ(user_.calls[0].status, 100);
  RunFor(13s);
  // The pending Timer E still fires at 0.5 s, then every T2 instead of doubling.
  ExpectGaps({500ms, kT2, kT2, kT2});
}

TEST_F(TransactionLayerTest, NonInviteClientFinalThenTimerK) {
  const std::string bye = ClientRequest("BYE");
  TransactionId id = layer_->SendRequest(bye, kClientBranch, Method::kBye, kCallee, 3);
  RunFor(1s);
  ASSERT_EQ(sink_.sent.size(), 2u);
  const std::string ok = ResponseTo(bye, 200, "OK", kFarTag);
  Deliver(ok, kCallee);
  ASSERT_EQ(user_.calls.size(), 1u);
  EXPECT_EQ(user_.calls[0].event, Event::kResponse);
  EXPECT_EQ(user_.calls[0].id, id);
  EXPECT_EQ(user_.calls[0].cookie, 3u);
  EXPECT_EQ(user_.calls[0].status, 200);

  RunFor(kT4 - 2 * kTick);
  EXPECT_EQ(sink_.sent.size(), 2u);  // no retransmission once Completed
  Deliver(ok, kCallee);               // absorbed by Timer K
  EXPECT_EQ(user_.calls.size(), 1u);
  EXPECT_EQ(layer_->counters().retransmissions_absorbed, 1u);
  RunFor(3 * kTick);
  EXPECT_EQ(layer_->size(), 0u);
  Deliver(ok, kCallee);
  EXPECT_EQ(user_.calls.back().event, Event::kStray);
}

TEST_F(TransactionLayerTest, NonInviteClientOverTcpNeitherRetransmitsNorWaits) {
  const std::string bye = ClientRequest("BYE", kClientBranch, "TCP");
  layer_->SendRequest(bye, kClientBranch, Method::kBye, kCalleeTcp, 3);
  RunFor(10s);
  EXPECT_EQ(sink_.sent.size(), 1u);
  Deliver(ResponseTo(bye, 200, "OK", kFarTag), kCalleeTcp);
  EXPECT_EQ(user_.Count(Event::kResponse), 1u);
  EXPECT_EQ(layer_->size(), 0u);  // Timer K is zero
  EXPECT_EQ(wheel_.size(), 0u);
}

TEST_F(TransactionLayerTest, NonInviteClientTimerFFiresOverTcp) {
  const TimePoint start = clock_.Now();
  layer_->SendRequest(ClientRequest("OPTIONS", kClientBranch, "TCP"), kClientBranch,
                      Method::kOptions, kCalleeTcp, 3);
  RunFor(33s);
  EXPECT_EQ(sink_.sent.size(), 1u);
  ASSERT_EQ(user_.calls.size(), 1u);
  EXPECT_EQ(user_.calls[0].failure, ClientFailure::kTimeout);
  ExpectWithinTick(user_.calls[0].at - start, k64T1);
}

// ---------------------------------------------------------------------------------------
// INVITE server transaction.

TEST_F(TransactionLayerTest, InviteServerSends100TryingAtOnce) {
  Deliver(Request(Spec("INVITE")), kCaller);
  ASSERT_EQ(sink_.sent.size(), 1u);
  EXPECT_EQ(sink_.sent[0].to, kCaller);
  Parsed trying = SentAt(0);
  EXPECT_TRUE(trying->is_response());
  EXPECT_EQ(trying->status_code(), 100);
  EXPECT_TRUE(trying->to().tag.empty());
  EXPECT_EQ(trying->via_count(), 2u);
  EXPECT_EQ(trying->top_via()->branch, "z9hG4bK776asdhds");
  EXPECT_EQ(trying->cseq().number, 314159u);
  EXPECT_EQ(trying->cseq().method, Method::kInvite);

  ASSERT_EQ(user_.calls.size(), 1u);
  EXPECT_EQ(user_.calls[0].event, Event::kRequest);
  EXPECT_EQ(user_.calls[0].method, Method::kInvite);
  EXPECT_NE(user_.calls[0].id, kNoTransaction);
  EXPECT_EQ(user_.calls[0].source, kCaller);
  EXPECT_EQ(layer_->counters().server_created, 1u);
  EXPECT_EQ(layer_->size(), 1u);
}

TEST_F(TransactionLayerTest, InviteServer100TryingCopiesCompactHeaders) {
  // Compact names grow to their long form in the 100: the layer sizes for that.
  std::string invite = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n";
  for (int i = 0; i < 40; ++i)
    invite += "v:SIP/2.0/UDP 192.0.2." + std::to_string(i + 1) + ";branch=z9hG4bKc" +
              std::to_string(i) + "\n";
  invite +=
      "f:<sip:alice@atlanta.example.com>;tag=1\n"
      "t:<sip:bob@biloxi.example.com>\n"
      "i:c1@a\n"
      "CSeq:1 INVITE\n"
      "l:0\n\n";
  Deliver(invite, kCaller);
  ASSERT_EQ(sink_.sent.size(), 1u);
  Parsed trying = SentAt(0);
  EXPECT_EQ(trying->status_code(), 100);
  EXPECT_EQ(trying->via_count(), 40u);
  EXPECT_EQ(trying->call_id(), "c1@a");
}

TEST_F(TransactionLayerTest, InviteServerWithout100TryingWhenDisabled) {
  TransactionConfig config;
  config.send_100_trying = false;
  Reset(config);
  const std::string invite = Request(Spec("INVITE"));
  Deliver(invite, kCaller);
  EXPECT_TRUE(sink_.sent.empty());
  EXPECT_EQ(user_.Count(Event::kRequest), 1u);
  // Nothing to re-send for a retransmission before the TU answers.
  Deliver(invite, kCaller);
  EXPECT_TRUE(sink_.sent.empty());
  EXPECT_EQ(user_.Count(Event::kRequest), 1u);
  EXPECT_EQ(layer_->counters().retransmissions_absorbed, 1u);
}

TEST_F(TransactionLayerTest, NonInviteServerDoesNotSend100Trying) {
  Deliver(Request(Spec("OPTIONS")), kCaller);
  EXPECT_TRUE(sink_.sent.empty());
  EXPECT_EQ(user_.Count(Event::kRequest), 1u);
}

TEST_F(TransactionLayerTest, InviteServerResendsLastResponseToRetransmittedInvite) {
  const std::string invite = Request(Spec("INVITE"));
  Deliver(invite, kCaller);
  TransactionId id = LastRequestId();
  Deliver(invite, kCaller);
  ASSERT_EQ(sink_.sent.size(), 2u);
  EXPECT_EQ(SentAt(1)->status_code(), 100);

  const std::string ringing = ResponseTo(invite, 180, "Ringing", kOurTag);
  EXPECT_TRUE(layer_->Respond(id, 180, ringing));
  Deliver(invite, kCaller);
  ASSERT_EQ(sink_.sent.size(), 4u);
  EXPECT_EQ(sink_.sent[3].bytes, ringing);
  EXPECT_EQ(sink_.sent[3].to, kCaller);

  EXPECT_EQ(user_.Count(Event::kRequest), 1u);
  EXPECT_EQ(layer_->counters().retransmissions_absorbed, 2u);
  EXPECT_EQ(layer_->counters().retransmissions_sent, 2u);
  RunFor(60s);  // no timer retransmits provisionals
  EXPECT_EQ(sink_.sent.size(), 4u);
}

TEST_F(TransactionLayerTest, InviteServerTimerGRetransmitsFinalUntilTimerH) {
  const std::string invite = Request(Spec("INVITE"));
  Deliver(invite, kCaller);
  TransactionId id = LastRequestId();
  const std::string busy = ResponseTo(invite, 486, "Busy Here", kOurTag);
  const TimePoint answered = clock_.Now();
  ASSERT_TRUE(layer_->Respond(id, 486, busy));
  RunFor(33s);
  // 486 at 0, 0.5, 1.5, 3.5, then every T2 up to 31.5 s.
  ExpectGaps({500ms, 1s, 2s, kT2, kT2, kT2, kT2, kT2, kT2, kT2}, 1);
  for (size_t i = 1; i < sink_.sent.size(); ++i) EXPECT_EQ(sink_.sent[i].bytes, busy);
  // Timer H ended it without an ACK: counted, not reported.
  EXPECT_EQ(layer_->size(), 0u);
  EXPECT_EQ(layer_->counters().timeouts, 1u);
  EXPECT_EQ(user_.calls.size(), 1u);
  EXPECT_LE(sink_.sent.back().at - answered, k64T1);
}

TEST_F(TransactionLayerTest, InviteServerTimerHFiresAt64T1) {
  const std::string invite = Request(Spec("INVITE"));
  Deliver(invite, kCaller);
  ASSERT_TRUE(layer_->Respond(LastRequestId(), 486, ResponseTo(invite, 486, "Busy", kOurTag)));
  RunFor(k64T1 - 2 * kTick);
  EXPECT_EQ(layer_->size(), 1u);
  Deliver(invite, kCaller);  // still answered from state
  EXPECT_EQ(SentAt(sink_.sent.size() - 1)->status_code(), 486);
  RunFor(3 * kTick);
  EXPECT_EQ(layer_->size(), 0u);
}

TEST_F(TransactionLayerTest, InviteServerAckConfirmsThenTimerI) {
  const RequestSpec spec = Spec("INVITE");
  const std::string invite = Request(spec);
  Deliver(invite, kCaller);
  TransactionId id = LastRequestId();
  ASSERT_TRUE(layer_->Respond(id, 486, ResponseTo(invite, 486, "Busy Here", kOurTag)));
  RunFor(600ms);
  ASSERT_EQ(sink_.sent.size(), 3u);  // 100, 486, one retransmission

  const std::string ack = Request(AckFor(spec, std::string(kOurTag)));
  Deliver(ack, kCaller);
  EXPECT_EQ(user_.Count(Event::kAck), 0u);  // the transaction's own ACK
  RunFor(kT4 - 2 * kTick);
  EXPECT_EQ(sink_.sent.size(), 3u);  // Timer G stopped
  Deliver(ack, kCaller);             // absorbed in Confirmed
  Deliver(invite, kCaller);          // absorbed, nothing re-sent
  EXPECT_EQ(sink_.sent.size(), 3u);
  EXPECT_EQ(user_.Count(Event::kAck), 0u);
  EXPECT_EQ(user_.Count(Event::kRequest), 1u);
  EXPECT_EQ(layer_->counters().retransmissions_absorbed, 2u);
  EXPECT_EQ(layer_->size(), 1u);

  RunFor(3 * kTick);
  EXPECT_EQ(layer_->size(), 0u);
  Deliver(ack, kCaller);
  EXPECT_EQ(user_.Count(Event::kAck), 1u);
  EXPECT_EQ(layer_->counters().timeouts, 0u);
}

TEST_F(TransactionLayerTest, InviteServerOverTcpSendsFinalOnceAndTimerIIsZero) {
  RequestSpec spec = Spec("INVITE");
  spec.transport = "TCP";
  spec.sent_by = "192.0.2.101:5070";
  const Peer caller = MakePeer("192.0.2.101:5070", TransportKind::kTcp, 12);
  const std::string invite = Request(spec);
  Deliver(invite, caller);
  TransactionId id = LastRequestId();
  ASSERT_EQ(sink_.sent.size(), 1u);
  EXPECT_EQ(sink_.sent[0].to, caller);  // back on the same connection
  ASSERT_TRUE(layer_->Respond(id, 480, ResponseTo(invite, 480, "Temporarily Unavailable",
                                                   kOurTag)));
  RunFor(20s);
  EXPECT_EQ(sink_.sent.size(), 2u);  // no Timer G over TCP
  Deliver(Request(AckFor(spec, std::string(kOurTag))), caller);
  EXPECT_EQ(layer_->size(), 0u);
  EXPECT_EQ(wheel_.size(), 0u);
  EXPECT_EQ(user_.Count(Event::kAck), 0u);
}

TEST_F(TransactionLayerTest, InviteServerTimerHFiresOverTcpToo) {
  RequestSpec spec = Spec("INVITE");
  spec.transport = "TCP";
  const Peer caller = MakePeer("192.0.2.101:5060", TransportKind::kTcp, 12);
  const std::string invite = Request(spec);
  Deliver(invite, caller);
  ASSERT_TRUE(layer_->Respond(LastRequestId(), 486, ResponseTo(invite, 486, "Busy", kOurTag)));
  RunFor(k64T1 + 2 * kTick);
  EXPECT_EQ(layer_->size(), 0u);
  EXPECT_EQ(layer_->counters().timeouts, 1u);
  EXPECT_EQ(sink_.sent.size(), 2u);
}

TEST_F(TransactionLayerTest, InviteServer2xxGoesToAcceptedUntilTimerL) {
  const RequestSpec spec = Spec("INVITE");
  const std::string invite = Request(spec);
  Deliver(invite, kCaller);
  TransactionId id = LastRequestId();
  const std::string ok = ResponseTo(invite, 200, "OK", kOurTag,
                                    "Contact: <sip:b2bua@198.51.100.1:5060>\r\n");
  ASSERT_TRUE(layer_->Respond(id, 200, ok));
  ASSERT_EQ(sink_.sent.size(), 2u);
  EXPECT_EQ(sink_.sent[1].bytes, ok);

  // Retransmitted INVITEs are absorbed silently: the core retransmits the 2xx itself.
  Deliver(invite, kCaller);
  EXPECT_EQ(sink_.sent.size(), 2u);
  EXPECT_EQ(user_.Count(Event::kRequest), 1u);
  EXPECT_FALSE(layer_->Respond(id, 200, ok));
  // The ACK for a 2xx is the core's, with its own branch or with the INVITE's.
  RequestSpec ack_spec = AckFor(spec, std::string(kOurTag));
  ack_spec.branch = "z9hG4bK2xxack.1";
  Deliver(Request(ack_spec), kCaller);
  Deliver(Request(AckFor(spec, std::string(kOurTag))), kCaller);
  EXPECT_EQ(user_.Count(Event::kAck), 2u);

  RunFor(30s);
  EXPECT_EQ(sink_.sent.size(), 2u);  // no Timer G for a 2xx
  RunFor(2s - 2 * kTick);
  EXPECT_EQ(layer_->size(), 1u);
  RunFor(3 * kTick);
  EXPECT_EQ(layer_->size(), 0u);
  // Timer L over: a late copy of the INVITE is a new request to the TU.
  Deliver(invite, kCaller);
  EXPECT_EQ(user_.Count(Event::kRequest), 2u);
  EXPECT_NE(LastRequestId(), id);
}

TEST_F(TransactionLayerTest, InviteServerTimerLRunsOverTcpToo) {
  RequestSpec spec = Spec("INVITE");
  spec.transport = "TCP";
  const Peer caller = MakePeer("192.0.2.101:5060", TransportKind::kTcp, 4);
  const std::string invite = Request(spec);
  Deliver(invite, caller);
  ASSERT_TRUE(layer_->Respond(LastRequestId(), 200, ResponseTo(invite, 200, "OK", kOurTag)));
  RunFor(k64T1 - 2 * kTick);
  EXPECT_EQ(layer_->size(), 1u);
  RunFor(3 * kTick);
  EXPECT_EQ(layer_->size(), 0u);
}

// ---------------------------------------------------------------------------------------
// Non-INVITE server transaction.

TEST_F(TransactionLayerTest, NonInviteServerAbsorbsRetransmissionsAndTimerJ) {
  const std::string bye = Request(Spec("BYE"));
  Deliver(bye, kCaller);
  TransactionId id = LastRequestId();
  Deliver(bye, kCaller);  // Trying: nothing to re-send
  EXPECT_TRUE(sink_.sent.empty());

  const std::string trying = ResponseTo(bye, 100, "Trying", {});
  ASSERT_TRUE(layer_->Respond(id, 100, trying));
  Deliver(bye, kCaller);  // Proceeding: the provisional again
  ASSERT_EQ(sink_.sent.size(), 2u);
  EXPECT_EQ(sink_.sent[1].bytes, trying);

  const std::string ok = ResponseTo(bye, 200, "OK", kOurTag);
  ASSERT_TRUE(layer_->Respond(id, 200, ok));
  Deliver(bye, kCaller);  // Completed: the final again
  ASSERT_EQ(sink_.sent.size(), 4u);
  EXPECT_EQ(sink_.sent[3].bytes, ok);
  EXPECT_EQ(user_.Count(Event::kRequest), 1u);
  EXPECT_EQ(layer_->counters().retransmissions_absorbed, 3u);

  RunFor(k64T1 - 2 * kTick);
  EXPECT_EQ(sink_.sent.size(), 4u);  // finals are only re-sent on request
  EXPECT_EQ(layer_->size(), 1u);
  RunFor(3 * kTick);
  EXPECT_EQ(layer_->size(), 0u);
  Deliver(bye, kCaller);
  EXPECT_EQ(user_.Count(Event::kRequest), 2u);
}

TEST_F(TransactionLayerTest, NonInviteServerTimerJIsZeroOverTcp) {
  RequestSpec spec = Spec("OPTIONS");
  spec.transport = "TCP";
  const Peer caller = MakePeer("192.0.2.101:5060", TransportKind::kTcp, 8);
  const std::string options = Request(spec);
  Deliver(options, caller);
  TransactionId id = LastRequestId();
  ASSERT_TRUE(layer_->Respond(id, 200, ResponseTo(options, 200, "OK", kOurTag)));
  EXPECT_EQ(sink_.sent.back().to, caller);
  EXPECT_EQ(layer_->size(), 0u);
  EXPECT_EQ(layer_->ResponseDestination(id), nullptr);
}

// ---------------------------------------------------------------------------------------
// Server-side matching (17.2.3).

TEST_F(TransactionLayerTest, ServerMatchingUsesSentByAndMethod) {
  RequestSpec a = Spec("INVITE");
  RequestSpec b = a;
  b.sent_by = "192.0.2.102:5060";  // same branch from another client
  RequestSpec c = a;
  c.method = "OPTIONS";  // same branch, other method
  Deliver(Request(a), kCaller);
  Deliver(Request(b), MakePeer("192.0.2.102:5060"));
  Deliver(Request(c), kCaller);
  EXPECT_EQ(user_.Count(Event::kRequest), 3u);
  EXPECT_EQ(layer_->size(), 3u);
  // Host names in sent-by compare case-insensitively.
  RequestSpec named = Spec("OPTIONS");
  named.branch = "z9hG4bKnamed";
  named.sent_by = "pc33.Atlanta.example.com";
  Deliver(Request(named), kCaller);
  named.sent_by = "PC33.atlanta.EXAMPLE.com";
  Deliver(Request(named), kCaller);
  EXPECT_EQ(user_.Count(Event::kRequest), 4u);
}

TEST_F(TransactionLayerTest, Rfc2543RequestRetransmissionMatchedByFallback) {
  RequestSpec spec = Spec("INVITE");
  spec.branch.clear();
  const std::string invite = Request(spec);
  Deliver(invite, kCaller);
  Deliver(invite, kCaller);
  EXPECT_EQ(user_.Count(Event::kRequest), 1u);
  ASSERT_EQ(sink_.sent.size(), 2u);
  EXPECT_EQ(SentAt(1)->status_code(), 100);
  // A new CSeq or From tag is a new request.
  RequestSpec next = spec;
  next.cseq = 314160;
  Deliver(Request(next), kCaller);
  RequestSpec other = spec;
  other.from_tag = "555";
  Deliver(Request(other), kCaller);
  EXPECT_EQ(user_.Count(Event::kRequest), 3u);
  // An RFC 2543 branch without the cookie also takes the fallback.
  RequestSpec old_branch = Spec("OPTIONS");
  old_branch.branch = "7a83e.1";
  Deliver(Request(old_branch), kCaller);
  Deliver(Request(old_branch), kCaller);
  EXPECT_EQ(user_.Count(Event::kRequest), 4u);
}

TEST_F(TransactionLayerTest, Rfc2543AckMatchesByToTagOfOurResponse) {
  RequestSpec spec = Spec("INVITE");
  spec.branch.clear();
  const std::string invite = Request(spec);
  Deliver(invite, kCaller);
  TransactionId id = LastRequestId();
  ASSERT_TRUE(layer_->Respond(id, 486, ResponseTo(invite, 486, "Busy Here", kOurTag)));
  // An ACK with another To tag acknowledges some other response.
  Deliver(Request(AckFor(spec, "not-ours")), kCaller);
  EXPECT_EQ(user_.Count(Event::kAck), 1u);
  RunFor(600ms);
  EXPECT_EQ(sink_.sent.size(), 3u);  // still retransmitting the 486
  Deliver(Request(AckFor(spec, std::string(kOurTag))), kCaller);
  EXPECT_EQ(user_.Count(Event::kAck), 1u);
  RunFor(4s);
  EXPECT_EQ(sink_.sent.size(), 3u);  // Confirmed
}

TEST_F(TransactionLayerTest, Rfc2543ReInviteAckMatches) {
  // A re-INVITE carries the To tag already; its ACK repeats it.
  RequestSpec spec = Spec("INVITE");
  spec.branch.clear();
  spec.to_tag = std::string(kOurTag);
  const std::string invite = Request(spec);
  Deliver(invite, kCaller);
  ASSERT_TRUE(layer_->Respond(LastRequestId(), 491, ResponseTo(invite, 491, "Request Pending",
                                                                kOurTag)));
  Deliver(Request(AckFor(spec, std::string(kOurTag))), kCaller);
  EXPECT_EQ(user_.Count(Event::kAck), 0u);
  RunFor(kT4 + 2 * kTick);
  EXPECT_EQ(layer_->size(), 0u);  // Timer I, not H
  EXPECT_EQ(layer_->counters().timeouts, 0u);
}

TEST_F(TransactionLayerTest, ResponsesGoToSourceIpAndViaOrRportPort) {
  // rport: the source port (RFC 3581).
  RequestSpec with_rport = Spec("INVITE");
  with_rport.via_params = ";rport";
  Deliver(Request(with_rport), MakePeer("192.0.2.101:40000"));
  EXPECT_EQ(sink_.sent.back().to, MakePeer("192.0.2.101:40000"));
  const Peer* destination = layer_->ResponseDestination(LastRequestId());
  ASSERT_NE(destination, nullptr);
  EXPECT_EQ(*destination, MakePeer("192.0.2.101:40000"));

  // No rport: the Via port, at the source IP (the Via host may be a private address).
  RequestSpec via_port = Spec("INVITE");
  via_port.branch = "z9hG4bKport";
  via_port.sent_by = "10.0.0.8:5062";
  Deliver(Request(via_port), MakePeer("192.0.2.101:40000"));
  EXPECT_EQ(sink_.sent.back().to, MakePeer("192.0.2.101:5062"));

  // No port in the Via: 5060.
  RequestSpec no_port = Spec("OPTIONS");
  no_port.branch = "z9hG4bKnoport";
  no_port.sent_by = "pc33.atlanta.example.com";
  Deliver(Request(no_port), MakePeer("192.0.2.101:40000"));
  TransactionId id = LastRequestId();
  ASSERT_TRUE(layer_->Respond(id, 200, ResponseTo(Request(no_port), 200, "OK", kOurTag)));
  EXPECT_EQ(sink_.sent.back().to, MakePeer("192.0.2.101:5060"));

  // Reliable: the same connection, whatever the Via says.
  RequestSpec tcp = Spec("INVITE");
  tcp.branch = "z9hG4bKtcp";
  tcp.transport = "TCP";
  const Peer tcp_peer = MakePeer("192.0.2.101:49152", TransportKind::kTcp, 99);
  Deliver(Request(tcp), tcp_peer);
  EXPECT_EQ(sink_.sent.back().to, tcp_peer);
  EXPECT_EQ(sink_.sent.back().to.connection_id, 99u);
}

// ---------------------------------------------------------------------------------------
// CANCEL received.

TEST_F(TransactionLayerTest, CancelMatchingInviteIsAnswered200AndReported) {
  const RequestSpec spec = Spec("INVITE");
  const std::string invite = Request(spec);
  Deliver(invite, kCaller);
  TransactionId invite_id = LastRequestId();
  ASSERT_TRUE(layer_->Respond(invite_id, 180, ResponseTo(invite, 180, "Ringing", kOurTag)));

  const std::string cancel = Request(CancelFor(spec));
  Deliver(cancel, kCaller);
  ASSERT_EQ(sink_.sent.size(), 3u);
  Parsed ok = SentAt(2);
  EXPECT_EQ(sink_.sent[2].to, kCaller);
  EXPECT_EQ(ok->status_code(), 200);
  EXPECT_EQ(ok->cseq().method, Method::kCancel);
  EXPECT_EQ(ok->to().tag, kOurTag);  // the INVITE's tag (RFC 3261 9.2)
  ASSERT_EQ(user_.calls.size(), 2u);
  EXPECT_EQ(user_.calls[1].event, Event::kCancel);
  EXPECT_EQ(user_.calls[1].id, invite_id);
  EXPECT_EQ(user_.calls[1].method, Method::kCancel);
  EXPECT_EQ(layer_->counters().server_created, 2u);

  // A retransmitted CANCEL gets the 200 again and is not reported again.
  Deliver(cancel, kCaller);
  ASSERT_EQ(sink_.sent.size(), 4u);
  EXPECT_EQ(sink_.sent[3].bytes, sink_.sent[2].bytes);
  EXPECT_EQ(user_.Count(Event::kCancel), 1u);

  // The TU ends the INVITE with 487, which the caller ACKs.
  ASSERT_TRUE(layer_->Respond(invite_id, 487,
                              ResponseTo(invite, 487, "Request Terminated", kOurTag)));
  Deliver(Request(AckFor(spec, std::string(kOurTag))), kCaller);
  EXPECT_EQ(user_.Count(Event::kAck), 0u);
}

TEST_F(TransactionLayerTest, CancelBeforeAnyTaggedResponseGetsAGeneratedTag) {
  const RequestSpec spec = Spec("INVITE");
  Deliver(Request(spec), kCaller);
  Deliver(Request(CancelFor(spec)), kCaller);
  Parsed ok = LastSent();
  EXPECT_EQ(ok->status_code(), 200);
  EXPECT_FALSE(ok->to().tag.empty());
  EXPECT_EQ(user_.Count(Event::kCancel), 1u);
}

TEST_F(TransactionLayerTest, CancelMatchingNothingIsAnswered481) {
  RequestSpec spec = Spec("INVITE");
  Deliver(Request(spec), kCaller);
  RequestSpec unknown = CancelFor(spec);
  unknown.branch = "z9hG4bKnosuchinvite";
  Deliver(Request(unknown), kCaller);
  Parsed answer = LastSent();
  EXPECT_EQ(answer->status_code(), 481);
  EXPECT_EQ(answer->reason_phrase(), "Call/Transaction Does Not Exist");
  EXPECT_FALSE(answer->to().tag.empty());
  // Same branch, other sent-by: no match either.
  RequestSpec elsewhere = CancelFor(spec);
  elsewhere.sent_by = "192.0.2.77:5060";
  Deliver(Request(elsewhere), MakePeer("192.0.2.77:5060"));
  EXPECT_EQ(LastSent()->status_code(), 481);
  EXPECT_EQ(layer_->counters().cancels_unmatched, 2u);
  EXPECT_EQ(user_.Count(Event::kCancel), 0u);
  EXPECT_EQ(user_.Count(Event::kRequest), 1u);
}

TEST_F(TransactionLayerTest, CancelAfterFinalIsAnswered200WithoutOnCancel) {
  const RequestSpec spec = Spec("INVITE");
  const std::string invite = Request(spec);
  Deliver(invite, kCaller);
  ASSERT_TRUE(layer_->Respond(LastRequestId(), 486, ResponseTo(invite, 486, "Busy", kOurTag)));
  Deliver(Request(CancelFor(spec)), kCaller);
  Parsed ok = LastSent();
  EXPECT_EQ(ok->status_code(), 200);
  EXPECT_EQ(ok->cseq().method, Method::kCancel);
  EXPECT_EQ(user_.Count(Event::kCancel), 0u);
  EXPECT_EQ(layer_->counters().cancels_unmatched, 0u);
}

TEST_F(TransactionLayerTest, Rfc2543CancelMatchesByFallback) {
  RequestSpec spec = Spec("INVITE");
  spec.branch.clear();
  Deliver(Request(spec), kCaller);
  TransactionId invite_id = LastRequestId();
  Deliver(Request(CancelFor(spec)), kCaller);
  EXPECT_EQ(LastSent()->status_code(), 200);
  ASSERT_EQ(user_.Count(Event::kCancel), 1u);
  EXPECT_EQ(user_.calls.back().id, invite_id);
}

// ---------------------------------------------------------------------------------------
// CANCEL sent.

TEST_F(TransactionLayerTest, SendCancelIsHeldUntilAProvisionalArrives) {
  const std::string invite = ClientRequest("INVITE");
  const std::string cancel = ClientRequest("CANCEL", kClientBranch, "UDP", kRoutes);
  TransactionId id = SendInvite(kCallee, 11);
  layer_->SendCancel(id, cancel);
  RunFor(600ms);
  ASSERT_EQ(sink_.sent.size(), 2u);  // the INVITE and its retransmission only
  EXPECT_EQ(SentAt(1)->method(), Method::kInvite);

  Deliver(ResponseTo(invite, 180, "Ringing", kFarTag), kCallee);
  ASSERT_EQ(sink_.sent.size(), 3u);
  EXPECT_EQ(sink_.sent[2].bytes, cancel);
  EXPECT_EQ(sink_.sent[2].to, kCallee);
  EXPECT_EQ(user_.Count(Event::kResponse), 1u);

  // The CANCEL's 200 matches the CANCEL transaction and stays in the layer.
  Deliver(ResponseTo(cancel, 200, "OK", kFarTag), kCallee);
  EXPECT_EQ(user_.Count(Event::kResponse), 1u);
  EXPECT_EQ(user_.Count(Event::kStray), 0u);

  Deliver(ResponseTo(invite, 487, "Request Terminated", kFarTag), kCallee);
  ASSERT_EQ(user_.Count(Event::kResponse), 2u);
  EXPECT_EQ(user_.calls.back().status, 487);
  EXPECT_EQ(user_.calls.back().id, id);
  EXPECT_EQ(user_.calls.back().cookie, 11u);
  EXPECT_EQ(LastSent()->method(), Method::kAck);
  EXPECT_EQ(LastSent()->top_via()->branch, kClientBranch);
}

TEST_F(TransactionLayerTest, SendCancelAfterAProvisionalGoesAtOnceAndIsRetransmitted) {
  const std::string invite = ClientRequest("INVITE");
  const std::string cancel = ClientRequest("CANCEL");
  TransactionId id = SendInvite(kCallee);
  Deliver(ResponseTo(invite, 183, "Session Progress", kFarTag), kCallee);
  layer_->SendCancel(id, cancel);
  ASSERT_EQ(sink_.sent.size(), 2u);
  EXPECT_EQ(sink_.sent[1].bytes, cancel);
  // A second SendCancel is ignored.
  layer_->SendCancel(id, cancel);
  EXPECT_EQ(sink_.sent.size(), 2u);
  RunFor(1600ms);  // Timer E: 0.5 and 1.5 s
  ASSERT_EQ(sink_.sent.size(), 4u);
  EXPECT_EQ(sink_.sent[3].bytes, cancel);
  EXPECT_EQ(layer_->counters().client_created, 2u);
}

TEST_F(TransactionLayerTest, CancelInviteBuildsTheCancelFromTheStoredInvite) {
  const std::string invite = ClientRequest("INVITE");
  TransactionId id = SendInvite(kCallee);
  layer_->CancelInvite(id);
  EXPECT_EQ(sink_.sent.size(), 1u) << "held until a provisional (RFC 3261 9.1)";
  Deliver(ResponseTo(invite, 180, "Ringing", kFarTag), kCallee);
  ASSERT_EQ(sink_.sent.size(), 2u);
  // Request-URI, the one Via, Route, From, To, Call-ID and CSeq number of the INVITE.
  EXPECT_EQ(sink_.sent[1].bytes, ClientRequest("CANCEL"));
  Deliver(ResponseTo(invite, 487, "Request Terminated", kFarTag), kCallee);
  const size_t sent = sink_.sent.size();
  layer_->CancelInvite(id);
  EXPECT_EQ(sink_.sent.size(), sent) << "nothing left to cancel after the final response";
}

TEST_F(TransactionLayerTest, CancelInviteCarriesTheGivenReason) {
  // RFC 3326: a forking B2BUA says why the losing branches are cancelled.
  const std::string invite = ClientRequest("INVITE");
  TransactionId id = SendInvite(kCallee);
  Deliver(ResponseTo(invite, 180, "Ringing", kFarTag), kCallee);
  const std::string reason = "Reason: SIP;cause=200;text=\"Call completed elsewhere\"\r\n";
  layer_->CancelInvite(id, reason);
  ASSERT_EQ(sink_.sent.size(), 2u);
  Parsed cancel = Parse(sink_.sent[1].bytes);
  EXPECT_EQ(cancel->method(), Method::kCancel);
  const HeaderField* header = cancel->FindHeader("Reason");
  ASSERT_NE(header, nullptr);
  EXPECT_EQ(header->value, "SIP;cause=200;text=\"Call completed elsewhere\"");
  // The rest is the CANCEL RFC 3261 9.1 builds, the Reason line added before the body.
  std::string expected = ClientRequest("CANCEL");
  expected.insert(expected.find("Content-Length:"), reason);
  EXPECT_EQ(sink_.sent[1].bytes, expected);
}

TEST_F(TransactionLayerTest, SendCancelAfterFinalIsDropped) {
  const std::string invite = ClientRequest("INVITE");
  TransactionId id = SendInvite(kCallee);
  Deliver(ResponseTo(invite, 486, "Busy Here", kFarTag), kCallee);
  const size_t sent = sink_.sent.size();
  layer_->SendCancel(id, ClientRequest("CANCEL"));
  EXPECT_EQ(sink_.sent.size(), sent);

  TransactionId answered = SendInvite(kCallee, 1, "z9hG4bKb2b.answered");
  Deliver(ResponseTo(ClientRequest("INVITE", "z9hG4bKb2b.answered"), 200, "OK", kFarTag),
          kCallee);
  layer_->SendCancel(answered, ClientRequest("CANCEL", "z9hG4bKb2b.answered"));
  EXPECT_EQ(sink_.sent.size(), sent + 1);
  EXPECT_EQ(layer_->size(), 2u);
}

TEST_F(TransactionLayerTest, HeldCancelIsNeverSentWhenTimerBFires) {
  TransactionId id = SendInvite(kCallee, 4);
  layer_->SendCancel(id, ClientRequest("CANCEL"));
  RunFor(33s);
  for (const SentMessage& s : sink_.sent) EXPECT_EQ(Parse(s.bytes)->method(), Method::kInvite);
  ASSERT_EQ(user_.calls.size(), 1u);
  EXPECT_EQ(user_.calls[0].event, Event::kFailure);
  EXPECT_EQ(user_.calls[0].id, id);
  EXPECT_EQ(user_.calls[0].failure, ClientFailure::kTimeout);
  EXPECT_EQ(layer_->size(), 0u);
}

TEST_F(TransactionLayerTest, CancelledInviteWithoutFinalIsGivenUpAfter64T1) {
  // RFC 3261 9.1: no final response 64*T1 after the CANCEL ends the INVITE.
  const std::string invite = ClientRequest("INVITE");
  TransactionId id = SendInvite(kCallee, 4);
  Deliver(ResponseTo(invite, 180, "Ringing", kFarTag), kCallee);
  RunFor(10s);
  const TimePoint cancelled = clock_.Now();
  layer_->SendCancel(id, ClientRequest("CANCEL"));
  Deliver(ResponseTo(ClientRequest("CANCEL"), 200, "OK", kFarTag), kCallee);
  RunFor(k64T1 + 2 * kTick);
  ASSERT_EQ(user_.Count(Event::kFailure), 1u);
  EXPECT_EQ(user_.calls.back().id, id);
  EXPECT_EQ(user_.calls.back().failure, ClientFailure::kTimeout);
  ExpectWithinTick(user_.calls.back().at - cancelled, k64T1);
  EXPECT_EQ(layer_->size(), 0u);  // the CANCEL's Timer K is long over
}

TEST_F(TransactionLayerTest, UnansweredCancelTimesOutSilently) {
  const std::string invite = ClientRequest("INVITE");
  TransactionId id = SendInvite(kCallee);
  Deliver(ResponseTo(invite, 180, "Ringing", kFarTag), kCallee);
  layer_->SendCancel(id, ClientRequest("CANCEL"));
  RunFor(k64T1 - 2 * kTick);
  Deliver(ResponseTo(invite, 487, "Request Terminated", kFarTag), kCallee);
  RunFor(4 * kTick);  // the CANCEL's Timer F
  EXPECT_EQ(user_.Count(Event::kFailure), 0u);
  EXPECT_EQ(user_.Count(Event::kResponse), 2u);
  EXPECT_EQ(layer_->counters().timeouts, 1u);
}

// ---------------------------------------------------------------------------------------
// Ids and Respond.

TEST_F(TransactionLayerTest, StaleAndForeignIdsAreIgnored) {
  EXPECT_FALSE(layer_->Respond(kNoTransaction, 200, "x"));
  EXPECT_EQ(layer_->ResponseDestination(kNoTransaction), nullptr);
  layer_->SendCancel(kNoTransaction, "x");
  EXPECT_FALSE(layer_->Respond((uint64_t{1} << 32) | 1000, 200, "x"));  // no such slot

  RequestSpec spec = Spec("OPTIONS");
  spec.transport = "TCP";
  const Peer caller = MakePeer("192.0.2.101:5060", TransportKind::kTcp, 2);
  const std::string options = Request(spec);
  Deliver(options, caller);
  TransactionId first = LastRequestId();
  ASSERT_TRUE(layer_->Respond(first, 200, ResponseTo(options, 200, "OK", kOurTag)));
  EXPECT_EQ(layer_->size(), 0u);

  // The slot is reused with a new generation: the old id stays dead.
  spec.branch = "z9hG4bKsecond";
  const std::string second_options = Request(spec);
  Deliver(second_options, caller);
  TransactionId second = LastRequestId();
  EXPECT_NE(second, first);
  EXPECT_EQ(second & 0xffffffffu, first & 0xffffffffu);
  EXPECT_FALSE(layer_->Respond(first, 200, "x"));
  EXPECT_EQ(layer_->ResponseDestination(first), nullptr);
  EXPECT_NE(layer_->ResponseDestination(second), nullptr);
  const size_t sent = sink_.sent.size();
  EXPECT_TRUE(layer_->Respond(second, 200, ResponseTo(second_options, 200, "OK", kOurTag)));
  EXPECT_EQ(sink_.sent.size(), sent + 1);

  // A client id is not a server transaction, and a dead client id cancels nothing.
  TransactionId client = SendInvite(kCalleeTcp);
  EXPECT_FALSE(layer_->Respond(client, 200, "x"));
  EXPECT_EQ(layer_->ResponseDestination(client), nullptr);
  Deliver(ResponseTo(ClientRequest("INVITE", kClientBranch, "TCP"), 486, "Busy", kFarTag),
          kCalleeTcp);
  const size_t before_cancel = sink_.sent.size();
  layer_->SendCancel(client, ClientRequest("CANCEL", kClientBranch, "TCP"));
  EXPECT_EQ(sink_.sent.size(), before_cancel);
}

TEST_F(TransactionLayerTest, RespondAfterFinalReturnsFalse) {
  const std::string invite = Request(Spec("INVITE"));
  Deliver(invite, kCaller);
  TransactionId id = LastRequestId();
  EXPECT_TRUE(layer_->Respond(id, 180, ResponseTo(invite, 180, "Ringing", kOurTag)));
  EXPECT_TRUE(layer_->Respond(id, 183, ResponseTo(invite, 183, "Session Progress", kOurTag)));
  EXPECT_TRUE(layer_->Respond(id, 486, ResponseTo(invite, 486, "Busy Here", kOurTag)));
  const size_t sent = sink_.sent.size();
  EXPECT_FALSE(layer_->Respond(id, 487, ResponseTo(invite, 487, "Terminated", kOurTag)));
  EXPECT_FALSE(layer_->Respond(id, 180, ResponseTo(invite, 180, "Ringing", kOurTag)));
  EXPECT_EQ(sink_.sent.size(), sent);

  const std::string bye = Request(Spec("BYE"));
  Deliver(bye, kCaller);
  TransactionId bye_id = LastRequestId();
  EXPECT_TRUE(layer_->Respond(bye_id, 200, ResponseTo(bye, 200, "OK", kOurTag)));
  EXPECT_FALSE(layer_->Respond(bye_id, 200, ResponseTo(bye, 200, "OK", kOurTag)));
  EXPECT_FALSE(layer_->Respond(bye_id, 99, "x"));
}

TEST_F(TransactionLayerTest, DestroyingTheLayerCancelsItsTimers) {
  SendInvite(kCallee);
  Deliver(Request(Spec("INVITE")), kCaller);
  Deliver(Request(Spec("BYE")), kCaller);
  ASSERT_TRUE(layer_->Respond(LastRequestId(), 200, ResponseTo(Request(Spec("BYE")), 200, "OK",
                                                               kOurTag)));
  EXPECT_GT(wheel_.size(), 0u);
  layer_.reset();
  EXPECT_EQ(wheel_.size(), 0u);
  RunFor(40s);
  EXPECT_EQ(user_.Count(Event::kFailure), 0u);
}

// ---------------------------------------------------------------------------------------
// Re-entrant TU calls.

TEST_F(TransactionLayerTest, TuMayRespondFromOnRequestAndOnCancel) {
  const RequestSpec spec = Spec("INVITE");
  const std::string invite = Request(spec);
  user_.hook = [&](const Callback& c) {
    if (c.event == Event::kRequest) {
      EXPECT_TRUE(layer_->Respond(c.id, 180, ResponseTo(invite, 180, "Ringing", kOurTag)));
    }
    if (c.event == Event::kCancel) {
      EXPECT_TRUE(layer_->Respond(c.id, 487, ResponseTo(invite, 487, "Request Terminated",
                                                        kOurTag)));
    }
  };
  Deliver(invite, kCaller);
  ASSERT_EQ(sink_.sent.size(), 2u);
  EXPECT_EQ(SentAt(1)->status_code(), 180);
  Deliver(Request(CancelFor(spec)), kCaller);
  ASSERT_EQ(sink_.sent.size(), 4u);
  EXPECT_EQ(SentAt(2)->status_code(), 200);  // the CANCEL's answer comes first
  EXPECT_EQ(SentAt(3)->status_code(), 487);
  RunFor(600ms);
  EXPECT_EQ(LastSent()->status_code(), 487);  // Timer G
}

TEST_F(TransactionLayerTest, TuMayStartManyRequestsFromOnResponse) {
  // Following a redirect from inside the callback grows the slot vector under the layer.
  const std::string invite = ClientRequest("INVITE");
  std::vector<TransactionId> started;
  user_.hook = [&](const Callback& c) {
    if (c.event != Event::kResponse || c.status != 302) return;
    for (int i = 0; i < 64; ++i) {
      std::string branch = "z9hG4bKretry." + std::to_string(i);
      started.push_back(layer_->SendRequest(ClientRequest("INVITE", branch), branch,
                                            Method::kInvite, kCallee, 100 + i));
    }
  };
  TransactionId id = SendInvite(kCallee);
  const std::string redirect = ResponseTo(invite, 302, "Moved Temporarily", kFarTag,
                                          "Contact: <sip:bob@192.0.2.30>\r\n");
  Deliver(redirect, kCallee);
  ASSERT_EQ(started.size(), 64u);
  for (TransactionId s : started) EXPECT_NE(s, kNoTransaction);
  EXPECT_EQ(layer_->size(), 65u);
  EXPECT_EQ(SentAt(1)->method(), Method::kAck);  // our ACK went before the callback
  // The first transaction still absorbs the retransmitted 302.
  Deliver(redirect, kCallee);
  EXPECT_EQ(user_.Count(Event::kResponse), 1u);
  EXPECT_EQ(LastSent()->method(), Method::kAck);

  // Each new one answers to its own branch and cookie.
  user_.hook = nullptr;
  Deliver(ResponseTo(ClientRequest("INVITE", "z9hG4bKretry.63"), 180, "Ringing", kFarTag),
          kCallee);
  EXPECT_EQ(user_.calls.back().id, started.back());
  EXPECT_EQ(user_.calls.back().cookie, 163u);
  EXPECT_NE(started.back(), id);
}

TEST_F(TransactionLayerTest, TuMayCancelFromOnResponseAndRetryFromOnClientFailure) {
  const std::string invite = ClientRequest("INVITE");
  TransactionId retry = kNoTransaction;
  user_.hook = [&](const Callback& c) {
    if (c.event == Event::kResponse && c.status == 180)
      layer_->SendCancel(c.id, ClientRequest("CANCEL"));
    if (c.event == Event::kFailure && retry == kNoTransaction)
      retry = SendInvite(kCallee, 2, "z9hG4bKb2b.retry");
  };
  TransactionId id = SendInvite(kCallee);
  Deliver(ResponseTo(invite, 180, "Ringing", kFarTag), kCallee);
  EXPECT_EQ(LastSent()->method(), Method::kCancel);
  // The INVITE is given up 64*T1 after the CANCEL; the TU retries from the callback.
  RunFor(k64T1 + 2 * kTick);
  ASSERT_NE(retry, kNoTransaction);
  EXPECT_NE(retry, id);
  EXPECT_EQ(layer_->size(), 1u);
  EXPECT_EQ(Parse(sink_.sent.back().bytes)->top_via()->branch, "z9hG4bKb2b.retry");
}

TEST_F(TransactionLayerTest, TuMayRespondToOtherTransactionsFromOnAck) {
  const std::string options = Request(Spec("OPTIONS"));
  Deliver(options, kCaller);
  TransactionId options_id = LastRequestId();
  user_.hook = [&](const Callback& c) {
    if (c.event == Event::kAck) {
      EXPECT_TRUE(layer_->Respond(options_id, 200, ResponseTo(options, 200, "OK", kOurTag)));
    }
  };
  RequestSpec ack = AckFor(Spec("INVITE"), "x1");
  ack.branch = "z9hG4bKlonely";
  Deliver(Request(ack), kCaller);
  EXPECT_EQ(user_.Count(Event::kAck), 1u);
  EXPECT_EQ(LastSent()->status_code(), 200);
  EXPECT_EQ(LastSent()->cseq().method, Method::kOptions);
}

}  // namespace
}  // namespace b2bua::proto
