#pragma once

// The state of a call, shared by the files of the call engine (call_engine.cc and the
// call_*.cc files beside it) and by nothing else: what the caller's INVITE left to answer
// with (ResponseHead), what only the set-up needs (CallSetup), and the call itself.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "b2bua/call_engine.h"
#include "b2bua/call_record.h"
#include "b2bua/leg_headers.h"
#include "b2bua/log.h"
#include "b2bua/reliable_2xx.h"
#include "b2bua/target_search.h"
#include "proto/sip_builder.h"
#include "proto/sip_chars.h"
#include "proto/sip_uri.h"
#include "proto/str_util.h"

namespace b2bua {

using proto::Hex;
using proto::Method;
using proto::Peer;
using proto::SipMessage;
using proto::StrAppend;
using proto::StrCat;
using proto::TransactionId;

constexpr std::string_view kAllow =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, NOTIFY, REFER, MESSAGE";

// Client transactions of OPTIONS probes carry this bit in their cookie; calls never do.
constexpr uint64_t kProbeCookie = uint64_t{1} << 63;

enum TimerKind : uint32_t {
  kProbe = 100,         // time to probe the next hops again (cookie 0: not a call)
  kTimerC = 1,          // no final answer from the B-leg
  kA2xxRetransmit,      // 13.3.1.4: re-send the A-leg 2xx until the ACK comes
  kMaxDuration,         // the call has lasted too long
  kCancelGuard,         // the B-leg never answered our CANCEL
  kReInvite2xxRetransmit,  // a relayed re-INVITE 2xx, until the offering leg ACKs it
  kForgetBAck,          // the callee can no longer be retransmitting its 2xx
  // One redirect target rang too long; the attempt's slot is added to the kind.
  kAttemptTimeout = 1u << 16,
};

// The transport a URI asks for: TLS for sips: (RFC 3261 26.2.2) and ;transport=tls,
// TCP for ;transport=tcp, UDP otherwise.
inline proto::TransportKind TransportOfUri(const proto::SipUri& uri) {
  if (uri.scheme == proto::UriScheme::kSips || proto::EqualsIgnoreCase(uri.transport, "tls"))
    return proto::TransportKind::kTls;
  if (proto::EqualsIgnoreCase(uri.transport, "tcp")) return proto::TransportKind::kTcp;
  return proto::TransportKind::kUdp;
}

inline bool IsSipsUri(std::string_view uri) {
  return uri.size() >= 5 && proto::EqualsIgnoreCase(uri.substr(0, 5), "sips:");
}

inline bool IsIpLiteral(const proto::SipUri& uri) {
  return uri.host_kind == proto::HostKind::kIpv4 || uri.host_kind == proto::HostKind::kIpv6;
}

/// The Via, From, To, Call-ID and CSeq of a request, captured so that responses can be
/// written after the request's buffer is gone.
struct ResponseHead {
  std::string before_to;  // Via lines and From
  std::string to;         // To value as received
  std::string after_to;   // Call-ID and CSeq lines
  std::string record_route;  // Record-Route lines, copied into 101-299 (RFC 3261 12.1.1)
  bool to_has_tag = false;

  static ResponseHead Capture(const SipMessage& request, const Peer& source) {
    ResponseHead head;
    if (const proto::Via* top = request.top_via()) {
      AppendHeader(head.before_to, "Via", TopViaForResponse(*top, source));
      for (size_t v = 1; v < request.via_count(); ++v)
        AppendHeader(head.before_to, "Via", request.vias()[v].text);
    }
    AppendHeader(head.before_to, "From", request.from().text);
    head.to = std::string(request.to().text);
    head.to_has_tag = !request.to().tag.empty();
    for (size_t i = 0; i < request.record_route_count(); ++i)
      AppendHeader(head.record_route, "Record-Route", request.record_routes()[i].text);
    AppendHeader(head.after_to, "Call-ID", request.call_id());
    StrAppend(&head.after_to, "CSeq: ", request.cseq().number, " ",
                    request.cseq().method_text, "\r\n");
    return head;
  }

  // Status line and the captured headers; `tag` is added to To when it has none.
  std::string Start(int status, std::string_view reason, std::string_view tag) const {
    std::string out;
    out.reserve(before_to.size() + after_to.size() + to.size() + 256);
    StrAppend(&out, "SIP/2.0 ", status, " ", reason, "\r\n", before_to, "To: ", to);
    if (!to_has_tag && !tag.empty() && status > 100) StrAppend(&out, ";tag=", tag);
    StrAppend(&out, "\r\n", after_to);
    if (status > 100 && status < 300) out += record_route;
    return out;
  }
};

/// One INVITE on the callee leg: to one of the route's next hops or to a redirect target.
/// A call holds several at once when it forks; each has its own transaction, branch, CSeq,
/// timer and addresses. Slots are never reused within a call, so a slot number in a timer
/// or a DNS callback always names the same attempt.
struct Attempt {
  enum class State : uint8_t {
    kParked,      // waiting for the application's policy decision (ResumeRedirect)
    kResolving,   // waiting for RFC 3263 resolution of its host
    kCalling,     // INVITE out, no final answer yet
    kCancelling,  // CANCEL sent: lost the race, rang too long, or the caller gave up
    kDone,        // a final answer came, or it was never sent
  };
  uint16_t target = 0;    // index in the call's target set; 0 for the route's next hops
  bool next_hop = false;  // a route next hop (serial failover), not a redirect target
  State state = State::kDone;
  TransactionId invite = proto::kNoTransaction;
  uint32_t cseq = 0;
  std::string request_uri;  // what the INVITE carries
  std::string proxy_route;  // a 305's proxy, as a Route value
  std::string to;           // the To value (no tag) when not the caller's
  std::string history;      // History-Info of this branch (RFC 7044)
  std::string host;         // the host the attempt was given by: what its TLS cert names
  Peer peer;
  std::vector<Peer> spare_addresses;  // further addresses of the name (RFC 3263 4.3)
  uint64_t resolve_generation = 0;
  proto::TimerId timeout;  // how long a redirect target may ring
  proto::TimePoint started{};
  proto::TimePoint ended{};

  bool out() const { return state == State::kCalling || state == State::kCancelling; }
};

// What only the call set-up needs: the offer, the attempts, the redirect search and the
// best answer so far. It lives apart from the Call so that a held call frees it when the
// caller ACKs the 2xx; a redirected call keeps the hops its call record lists.
struct CallSetup {
  ResponseHead a_head;
  std::string a_request_uri;
  int max_forwards = 70;
  std::string offer_body;
  std::string offer_type;
  std::string passed;  // pass-through headers of the caller's INVITE
  // Identity headers (RFC 3325), added per next hop by SendBLegInvite().
  std::string asserted_identity;  // from a trusted caller only
  std::string preferred_identity;
  bool privacy_id = false;
  bool sent_181 = false;
  std::string a_2xx;   // the 2xx we retransmit until the caller's ACK
  Reliable2xxSchedule a_2xx_schedule;

  std::string b_to;           // the caller's To value (no tag): the attempts' To
  std::string cluster_contact;  // cluster mode: both legs' Contact, built once per set-up
  std::string b_answer_body;  // a 2xx answer that the caller's ACK may complete

  // The route's next hops, tried in turn for the original Request-URI.
  std::vector<NextHop> hops;
  size_t next_hop = 0;
  // Every INVITE sent on the callee leg, in the order started. Few per call (the search
  // limits them), so lookups are linear.
  std::vector<Attempt> attempts;
  TargetSearch search;
  bool sips_refused = false;  // a sips: Request-URI met a next hop without TLS
  bool skipped_resting = false;  // a next hop was skipped for its 503 Retry-After
  std::string hop_request_uri;  // set when a cached 301 target replaces the Request-URI
  int refused = 0;
  bool hops_exhausted = false;  // the caller's Max-Forwards budget ran out
  int best_status = 0;
  std::string best_reason;
  std::string best_extra;
  std::string last_3xx_status;  // "302 Moved Temporarily"
  std::string last_3xx_contacts;  // every Contact line of the last 3xx, verbatim
  std::string history_info;  // History-Info entries so far (RFC 7044)
  proto::TimePoint first_redirect{};

  /// The attempt whose INVITE is client transaction `invite`; null if none.
  Attempt* FindAttempt(TransactionId invite) {
    for (Attempt& attempt : attempts)
      if (attempt.invite == invite && invite != proto::kNoTransaction) return &attempt;
    return nullptr;
  }
  /// Whether an INVITE is still waiting for its final answer.
  bool AttemptsOut() const {
    for (const Attempt& attempt : attempts)
      if (attempt.out()) return true;
    return false;
  }
};

struct CallEngine::Call {
  enum class State : uint8_t { kTrying, kEarly, kAnswered, kConfirmed, kEnding };
  // A request relayed from one leg to the other, waiting for its response.
  struct Relay {
    TransactionId server = proto::kNoTransaction;
    ResponseHead head;
    Method method = Method::kUnknown;
    bool from_a = true;
  };

  /// The set-up state; after ReleaseSetupState a late event (a DNS answer, a stray final)
  /// gets a blank one, which says that nothing is in progress.
  CallSetup& setup() {
    if (setup_state == nullptr) setup_state = std::make_unique<CallSetup>();
    return *setup_state;
  }
  /// Reads the set-up state without bringing a released one back.
  const CallSetup& setup_view() const {
    static const CallSetup kReleased;
    return setup_state != nullptr ? *setup_state : kReleased;
  }

  uint64_t cookie = 0;
  State state = State::kTrying;
  bool a_final_sent = false;
  bool b_acked = false;
  bool in_redirect = false;
  bool cancelled = false;
  std::shared_ptr<const Config> config;  // the snapshot the call began with
  const Route* route = nullptr;          // points into `config`
  // Limits this call holds a share of, given back in EndCall(). The RouteLoad lives in
  // `config` (and in later snapshots that inherited it).
  RouteLoad* held_route_load = nullptr;
  bool source_counted = false;
  // Cluster mode: whether the store holds the call (so EndCall removes it), and whether it
  // was taken over from another instance (its key is then in adopted_keys_, not derived
  // from the cookie: see DialogKeyOf()).
  bool replicated = false;
  bool adopted = false;
  proto::NetAddress source_address;  // the caller's address, for max_calls_per_source
  proto::TimePoint started;
  proto::TimePoint ends{};  // when max_call_duration ends it, once answered
  std::unique_ptr<CallSetup> setup_state;
  // The redirect part of the call record, written when the set-up state is freed.
  std::string redirect_record;

  // A-leg: the caller's dialog, where the B2BUA is the UAS.
  Dialog a;
  TransactionId a_invite = proto::kNoTransaction;
  std::string a_tag;  // our To tag towards the caller
  uint32_t a_invite_cseq = 0;
  Peer a_response_peer;  // where responses to the caller's INVITE go (RFC 3261 18.2.2)

  // B-leg: towards the callee, where the B2BUA is the UAC. One Call-ID and From tag for
  // every attempt; each attempt gets a higher CSeq and a new branch. b_invite and its
  // CSeq and Request-URI are those of the attempt that answered 2xx.
  Dialog b;
  std::string b_request_uri;
  TransactionId b_invite = proto::kNoTransaction;
  uint32_t b_invite_cseq = 0;
  // The ACK for the B-leg 2xx, re-sent on its retransmissions; forgotten once the callee
  // can no longer be retransmitting (64*T1), and rebuilt if one still comes.
  std::string b_ack;

  proto::TimerId timer_c, a_2xx_timer, duration_timer, cancel_guard, b_ack_timer;
  absl::flat_hash_map<TransactionId, Relay> relays;  // by client transaction
  // re-INVITE in progress: the CSeq the ACK from the offering leg will carry, and the
  // CSeq to use for the ACK on the answering leg.
  bool reinvite_from_a = false;
  bool reinvite_pending = false;
  uint32_t reinvite_ack_cseq_in = 0;
  uint32_t reinvite_ack_cseq_out = 0;
  std::string reinvite_2xx;
  Peer reinvite_2xx_peer;
  Reliable2xxSchedule reinvite_2xx_schedule;
  proto::TimerId reinvite_2xx_timer;
};

// A held call is this object, its dialogs' strings and two index entries: 2.6 KiB per
// call at 100,000 calls (bench/README.md). Set-up fields belong in CallSetup.
static_assert(sizeof(CallEngine::Call) <= 896, "a held call must stay small");

}  // namespace b2bua
