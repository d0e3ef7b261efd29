#include "b2bua/call_engine.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/hash/hash.h"
#include "b2bua/leg_headers.h"
#include "b2bua/log.h"
#include "proto/sip_builder.h"
#include "proto/sip_chars.h"
#include "proto/str_util.h"
#include "proto/sip_uri.h"

namespace b2bua {

using proto::Method;
using proto::Peer;
using proto::SipMessage;
using proto::TransactionId;
using proto::Hex;
using proto::StrAppend;
using proto::StrCat;

namespace {

// The shipped policy's view of a route's redirect settings.
RedirectSecurity SecurityFromSettings(const RedirectSettings& settings) {
  RedirectSecurity security;
  security.allow_domains = settings.allow.domains;
  security.deny_domains = settings.deny.domains;
  for (const std::string& text : settings.allow.cidrs) {
    Cidr cidr;
    if (Cidr::Parse(text, &cidr)) security.allow_cidrs.push_back(cidr);
  }
  for (const std::string& text : settings.deny.cidrs) {
    Cidr cidr;
    if (Cidr::Parse(text, &cidr)) security.deny_cidrs.push_back(cidr);
  }
  security.allowed_schemes = settings.allow.schemes;
  // tel: targets are re-routed by number through the route table, never dialled as is.
  security.allowed_schemes.push_back("tel");
  return security;
}

constexpr std::string_view kAllow =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, NOTIFY, REFER, MESSAGE";

// Client transactions of OPTIONS probes carry this bit in their cookie; calls never do.
constexpr uint64_t kProbeCookie = uint64_t{1} << 63;

enum TimerKind : uint32_t {
  kProbe = 100,         // time to probe the next hops again (cookie 0: not a call)
  kTimerC = 1,          // no final answer from the B-leg
  kTargetTimeout,       // one redirect target rang too long
  kA2xxRetransmit,      // 13.3.1.4: re-send the A-leg 2xx until the ACK comes
  kMaxDuration,         // the call has lasted too long
  kCancelGuard,         // the B-leg never answered our CANCEL
  kReInvite2xxRetransmit,  // a relayed re-INVITE 2xx, until the offering leg ACKs it
  kForgetBAck,          // the callee can no longer be retransmitting its 2xx
};

// The transport a URI asks for: TLS for sips: (RFC 3261 26.2.2) and ;transport=tls,
// TCP for ;transport=tcp, UDP otherwise.
proto::TransportKind TransportOfUri(const proto::SipUri& uri) {
  if (uri.scheme == proto::UriScheme::kSips || proto::EqualsIgnoreCase(uri.transport, "tls"))
    return proto::TransportKind::kTls;
  if (proto::EqualsIgnoreCase(uri.transport, "tcp")) return proto::TransportKind::kTcp;
  return proto::TransportKind::kUdp;
}

bool IsSipsUri(std::string_view uri) {
  return uri.size() >= 5 && proto::EqualsIgnoreCase(uri.substr(0, 5), "sips:");
}

bool IsIpLiteral(const proto::SipUri& uri) {
  return uri.host_kind == proto::HostKind::kIpv4 || uri.host_kind == proto::HostKind::kIpv6;
}

// RFC 3261 16.7 step 6: choose the best of several final failures.
int ResponseRank(int status) {
  if (status >= 600) return 0;
  switch (status) {
    case 401: case 407: case 415: case 420: case 484: return 1;
    default: break;
  }
  if (status >= 400 && status < 500) return 2;
  if (status >= 500 && status != 503) return 3;
  if (status == 503) return 4;  // 503 would stop upstream failover: rank it last
  return 5;
}

}  // namespace

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
  proto::TimePoint a_2xx_deadline{};
  proto::Duration a_2xx_interval{};
  int a_2xx_sends = 0;

  std::string b_to;           // To value of the current attempt (no tag)
  std::string b_answer_body;  // a 2xx answer that the caller's ACK may complete

  // Attempts: next hops of the route first, then redirect targets.
  std::vector<NextHop> hops;
  size_t next_hop = 0;
  int current_target = -1;
  TargetSet targets;
  std::unique_ptr<ConfiguredRedirectPolicy> policy;
  // An attempt waiting for RFC 3263 resolution.
  bool resolving = false;
  uint64_t resolve_generation = 0;
  int pending_target = -1;
  std::string pending_request_uri;
  std::string pending_proxy_route;
  std::string pending_host;  // the host the attempt was given by: what its TLS cert names
  bool sips_refused = false;  // a sips: Request-URI met a next hop without TLS
  bool skipped_resting = false;  // a next hop was skipped for its 503 Retry-After
  std::vector<Peer> spare_addresses;  // further addresses of the name being tried
  std::string hop_request_uri;  // set when a cached 301 target replaces the Request-URI
  int max_depth_seen = 0;
  int loops = 0;
  int refused = 0;
  bool depth_exceeded = false;
  bool hops_exhausted = false;  // the caller's Max-Forwards budget ran out
  bool parked = false;  // waiting for an asynchronous policy decision
  int best_status = 0;
  std::string best_reason;
  std::string best_extra;
  std::string last_3xx_status;  // "302 Moved Temporarily"
  std::string last_3xx_contacts;  // every Contact line of the last 3xx, verbatim
  std::string history_info;  // History-Info entries so far (RFC 7044)
  proto::TimePoint first_redirect{};
  // Per target index (0: the original): the Request-URI its INVITE carried.
  std::vector<std::string> sent_request_uris;
  // Per redirect target index: when its INVITE went out and how long it took to answer.
  std::vector<proto::TimePoint> attempt_started;
  std::vector<proto::Duration> attempt_took;
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
  bool b_cancel_sent = false;
  bool in_redirect = false;
  bool cancelled = false;
  std::shared_ptr<const Config> config;  // the snapshot the call began with
  const Route* route = nullptr;          // points into `config`
  // Limits this call holds a share of, given back in EndCall(). The RouteLoad lives in
  // `config` (and in later snapshots that inherited it).
  RouteLoad* held_route_load = nullptr;
  bool source_counted = false;
  proto::NetAddress source_address;  // the caller's address, for max_calls_per_source
  proto::TimePoint started;
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
  // every attempt; each attempt gets a higher CSeq and a new branch.
  Dialog b;
  std::string b_request_uri;
  TransactionId b_invite = proto::kNoTransaction;
  uint32_t b_invite_cseq = 0;
  // The ACK for the B-leg 2xx, re-sent on its retransmissions; forgotten once the callee
  // can no longer be retransmitting (64*T1), and rebuilt if one still comes.
  std::string b_ack;

  proto::TimerId timer_c, target_timer, a_2xx_timer, duration_timer, cancel_guard, b_ack_timer;
  absl::flat_hash_map<TransactionId, Relay> relays;  // by client transaction
  // re-INVITE in progress: the CSeq the ACK from the offering leg will carry, and the
  // CSeq to use for the ACK on the answering leg.
  bool reinvite_from_a = false;
  bool reinvite_pending = false;
  uint32_t reinvite_ack_cseq_in = 0;
  uint32_t reinvite_ack_cseq_out = 0;
  std::string reinvite_2xx;
  Peer reinvite_2xx_peer;
  proto::Duration reinvite_2xx_interval{};
  proto::TimePoint reinvite_2xx_deadline{};
  proto::TimerId reinvite_2xx_timer;
};

// A held call is this object, its dialogs' strings and two index entries: 2.6 KiB per
// call at 100,000 calls (bench/README.md). Set-up fields belong in CallSetup.
static_assert(sizeof(CallEngine::Call) <= 896, "a held call must stay small");

CallEngine::CallEngine(const ShardContext& context, std::shared_ptr<const Config> config)
    : context_(context), config_(std::move(config)), tokens_(context.shard_index) {
  const std::string ip = context_.advertised_ip.empty() ? context_.local_address.IpString()
                                                       : context_.advertised_ip;
  local_host_port_ = ip.find(':') != std::string::npos
                         ? StrCat("[", ip, "]:", context_.local_address.port())
                         : StrCat(ip, ":", context_.local_address.port());
  contact_header_ = StrCat("<sip:b2bua@", local_host_port_, ">");
  if (context_.tls_port != 0) {
    tls_host_port_ = ip.find(':') != std::string::npos
                         ? StrCat("[", ip, "]:", context_.tls_port)
                         : StrCat(ip, ":", context_.tls_port);
    tls_contact_header_ = StrCat("<sip:b2bua@", tls_host_port_, ";transport=tls>");
  }
}

const std::string& CallEngine::HostPortFor(proto::TransportKind transport) const {
  return transport == proto::TransportKind::kTls && !tls_host_port_.empty() ? tls_host_port_
                                                                            : local_host_port_;
}

const std::string& CallEngine::ContactFor(proto::TransportKind transport) const {
  return transport == proto::TransportKind::kTls && !tls_contact_header_.empty()
             ? tls_contact_header_
             : contact_header_;
}

CallEngine::~CallEngine() {
  for (auto& [cookie, call] : calls_) {
    context_.timers->Cancel(&call->timer_c);
    context_.timers->Cancel(&call->target_timer);
    context_.timers->Cancel(&call->a_2xx_timer);
    context_.timers->Cancel(&call->duration_timer);
    context_.timers->Cancel(&call->cancel_guard);
    context_.timers->Cancel(&call->reinvite_2xx_timer);
    context_.timers->Cancel(&call->b_ack_timer);
  }
  context_.timers->Cancel(&probe_timer_);
}

bool CallEngine::Send(const Peer& to, std::string_view bytes) {
  return context_.sink->Send(to, bytes);
}

CallEngine::Call* CallEngine::FindByCallId(std::string_view call_id) {
  auto it = calls_by_call_id_.find(call_id);
  return it == calls_by_call_id_.end() ? nullptr : it->second;
}

const RedirectSettings& CallEngine::SettingsFor(const Call& call) const {
  return call.route ? call.route->redirect : call.config->redirect;
}

bool CallEngine::NamesSelf(const proto::SipUri& uri) const {
  if (!IsIpLiteral(uri)) return false;
  proto::NetAddress address;
  if (!proto::NetAddress::ParseIp(uri.host, uri.port ? uri.port : 5060, &address)) return false;
  if (address.port() != context_.local_address.port()) return false;
  return address.SameIp(context_.local_address) ||
         (context_.local_address.is_unspecified() && address.is_loopback());
}

bool CallEngine::DestinationFor(const proto::SipUri& uri, Peer* out) const {
  if (!IsIpLiteral(uri)) return false;
  uint16_t port = uri.port ? uri.port : (uri.scheme == proto::UriScheme::kSips ? 5061 : 5060);
  if (!proto::NetAddress::ParseIp(uri.host, port, &out->address)) return false;
  out->transport = TransportOfUri(uri);
  out->connection_id = 0;
  return true;
}

void CallEngine::ArmTimer(Call& call, proto::TimerId* timer, proto::Duration delay,
                          uint32_t kind) {
  context_.timers->Cancel(timer);
  *timer = context_.timers->Schedule(delay, this, kind, call.cookie);
}

void CallEngine::RespondStateless(TransactionId id, const SipMessage& request, int status,
                                  std::string_view reason, std::string_view extra) {
  // Only reached for requests with a transaction: the layer sends, retransmits and absorbs.
  std::string tag = request.to().tag.empty() ? tokens_.Token('t') : std::string();
  ResponseHead head = ResponseHead::Capture(request, *transactions_->ResponseDestination(id));
  std::string out = head.Start(status, reason, tag);
  StrAppend(&out, extra);
  AppendBody(out, {}, {});
  context_.counters->responses_sent[status / 100].Inc();
  transactions_->Respond(id, status, std::move(out));
}

void CallEngine::OnRequest(TransactionId id, const SipMessage& request, const Peer& source) {
  context_.counters->requests_received[static_cast<size_t>(request.method())].Inc();
  if (!request.to().tag.empty()) {
    Call* call = FindByCallId(request.call_id());
    if (call == nullptr) {
      RespondStateless(id, request, 481, "Call/Transaction Does Not Exist", {});
      return;
    }
    OnInDialogRequest(*call, id, request, source);
    return;
  }
  if (request.method() == Method::kInvite) {
    OnNewInvite(id, request, source);
    return;
  }
  OnOutOfDialogRequest(id, request, source);
}

void CallEngine::OnOutOfDialogRequest(TransactionId id, const SipMessage& request,
                                      const Peer& source) {
  switch (request.method()) {
    case Method::kOptions:
      // Keep-alive probes from peers and load balancers.
      RespondStateless(id, request, 200, "OK",
                       StrCat("Allow: ", kAllow, "\r\nAccept: application/sdp\r\n"));
      return;
    case Method::kRegister:
    case Method::kSubscribe:
    case Method::kPublish:
      RespondStateless(id, request, 405, "Method Not Allowed",
                       StrCat("Allow: ", kAllow, "\r\n"));
      return;
    case Method::kBye:
    case Method::kPrack:
    case Method::kUpdate:
      RespondStateless(id, request, 481, "Call/Transaction Does Not Exist", {});
      return;
    default:
      RespondStateless(id, request, 403, "Forbidden", {});
      return;
  }
}

void CallEngine::OnNewInvite(TransactionId id, const SipMessage& request, const Peer& source) {
  // A request carrying our own Via came back to us: a routing loop (RFC 3261 16.3 4).
  for (size_t i = 0; i < request.via_count(); ++i) {
    const proto::Via& via = request.vias()[i];
    if (TokenSource::IsOurBranch(via.branch) && via.port == context_.local_address.port()) {
      proto::NetAddress address;
      if (proto::NetAddress::ParseIp(via.host, via.port, &address) &&
          address.SameIp(context_.local_address)) {
        RespondStateless(id, request, 482, "Loop Detected", {});
        return;
      }
    }
  }
  const Config& config = *config_;
  if (draining_ || calls_.size() >= config.limits.max_calls) {
    context_.counters->calls_ended[static_cast<size_t>(CallOutcome::kOverload)].Inc();
    RespondStateless(id, request, 503, "Service Unavailable", "Retry-After: 5\r\n");
    return;
  }
  if (FindByCallId(request.call_id()) != nullptr) {
    // Same Call-ID without To tag but another branch: a merged request (RFC 3261 8.2.2.2).
    RespondStateless(id, request, 482, "Loop Detected", {});
    return;
  }
  CallAdmission admission;
  if (!AdmitCall(id, request, source, &admission)) return;

  auto owned = std::make_unique<Call>();
  Call& call = *owned;
  call.cookie = next_call_cookie_++;
  call.config = config_;
  call.started = context_.clock->Now();
  call.a_invite = id;
  call.setup().a_head = ResponseHead::Capture(request, *transactions_->ResponseDestination(id));
  call.setup().a_request_uri = std::string(request.request_uri().text);
  call.setup().max_forwards = request.max_forwards() < 0 ? 70 : request.max_forwards();
  call.setup().offer_body = std::string(request.body());
  call.setup().offer_type = std::string(request.content_type());
  call.setup().passed = PassedHeaders(request, config.headers, IdentityHeaders::kPerNextHop);
  CallerIdentity identity =
      ExtractIdentity(request, config.headers, config.access.IsTrusted(source.address));
  call.setup().asserted_identity = std::move(identity.asserted);
  call.setup().preferred_identity = std::move(identity.preferred);
  call.setup().privacy_id = identity.privacy_id;
  call.held_route_load = admission.route_load;
  call.source_counted = admission.source_counted;
  call.source_address = source.address;

  call.a.call_id = std::string(request.call_id());
  call.a.remote_party = std::string(request.from().text);
  call.a_tag = tokens_.Token('a');
  call.a.local_party = StrCat(request.to().text, ";tag=", call.a_tag);
  call.setup().a_head.to = std::string(request.to().text);
  call.a.remote_cseq = request.cseq().number;
  call.a_invite_cseq = request.cseq().number;
  call.a.local_cseq = 100;
  call.a.peer = source;
  call.a_response_peer = *transactions_->ResponseDestination(id);
  if (request.contact_count() > 0) {
    call.a.remote_target = std::string(request.contacts()[0].address.uri.text);
  }
  for (size_t i = 0; i < request.record_route_count(); ++i)
    call.a.route_set.emplace_back(request.record_routes()[i].text);

  call.b.call_id = tokens_.CallId('c', StrCat(Hex{call.cookie}));
  std::string from_tag = tokens_.Token('f');
  call.b.local_party = StrCat(WithoutTag(request.from()), ";tag=", from_tag);
  call.setup().b_to = std::string(request.to().text);
  call.b.local_cseq = 1;

  calls_by_call_id_[call.a.call_id] = &call;
  calls_by_call_id_[call.b.call_id] = &call;
  Call* raw = owned.get();
  calls_.emplace(call.cookie, std::move(owned));
  context_.counters->calls_active.Inc();

  ArmTimer(*raw, &raw->timer_c, config.limits.no_answer_timeout, kTimerC);

  const proto::SipUri& ruri = request.request_uri();
  // The route AdmitCall() chose: the best match, or the one a full route overflowed to.
  const Route* route = admission.route;
  raw->route = route;
  TargetSetLimits limits;
  limits.max_targets = static_cast<uint16_t>(SettingsFor(*raw).max_targets);
  raw->setup().targets = TargetSet(limits);
  raw->setup().targets.SetOriginal(raw->setup().a_request_uri);
  if (SettingsFor(*raw).deny_self)
    raw->setup().targets.AddSelf(context_.local_address.IpString(), context_.local_address.port());
  if (route != nullptr && route->action == Route::Action::kRedirect) {
    // We are the redirect server for this number (call forwarding, number portability).
    std::string contacts;
    for (const std::string& c : route->contacts) AppendHeader(contacts, "Contact", c);
    context_.counters->redirects_sent.Inc();
    AnswerCaller(*raw, route->redirect_code,
                 route->redirect_code == 301 ? "Moved Permanently" : "Moved Temporarily",
                 contacts, {}, {});
    EndCall(*raw, CallOutcome::kRedirectSent);
    return;
  }
  if (route != nullptr) {
    raw->setup().hops = route->next_hops;
  } else if (ruri.IsSip()) {
    if (NamesSelf(ruri)) {
      AnswerCaller(*raw, 404, "Not Found", {}, {}, {});
      EndCall(*raw, CallOutcome::kNoRoute);
      return;
    }
    NextHop hop;
    hop.uri = std::string(ruri.text);
    hop.host = std::string(ruri.host);
    hop.transport = TransportOfUri(ruri);
    hop.port = ruri.port ? ruri.port
                         : (hop.transport == proto::TransportKind::kTls ? 5061 : 5060);
    raw->setup().hops.push_back(std::move(hop));
  }
  // A 301 learned earlier sends the call straight to the permanent target.
  if (std::optional<std::string_view> cached =
          moved_permanently_.Find(raw->setup().a_request_uri, context_.clock->Now())) {
    // The cached target becomes the only next hop, with its own Request-URI; a name is
    // resolved like any other next hop.
    proto::SipUri target;
    if (proto::ParseUri(*cached, &target) == proto::UriError::kNone &&
        (IsIpLiteral(target) || context_.resolver != nullptr)) {
      context_.counters->redirect_cache_hits.Inc();
      NextHop hop;
      hop.uri = std::string(*cached);
      hop.host = std::string(target.host);
      hop.transport = TransportOfUri(target);
      hop.port = target.port ? target.port
                             : (hop.transport == proto::TransportKind::kTls ? 5061 : 5060);
      raw->setup().hop_request_uri = hop.uri;
      raw->setup().hops.assign(1, std::move(hop));
    }
  }
  if (raw->setup().hops.empty() && !raw->in_redirect) {
    AnswerCaller(*raw, 404, "Not Found", "Reason: SIP;cause=404;text=\"no route\"\r\n", {}, {});
    EndCall(*raw, CallOutcome::kNoRoute);
    return;
  }
  if (!StartNextAttempt(*raw)) FinishSearch(*raw);
}

bool CallEngine::AdmitCall(TransactionId id, const SipMessage& request, const Peer& source,
                           CallAdmission* out) {
  const Config& config = *config_;
  const AccessConfig& access = config.access;
  auto refuse = [&](RejectReason reason, int status, std::string_view phrase,
                    std::string_view extra) {
    context_.counters->requests_rejected[static_cast<size_t>(reason)].Inc();
    RespondStateless(id, request, status, phrase, extra);
    return false;
  };
  const proto::SipUri& ruri = request.request_uri();
  // No user part matches only the default route.
  const Route* route = config.routes.Match(ruri.user);
  if (route != nullptr && !route->callers.empty() && !route->callers.Contains(source.address)) {
    return refuse(RejectReason::kRelayDenied, 403, "Forbidden",
                  "Reason: SIP;cause=403;text=\"route not allowed for this source\"\r\n");
  }
  // Without a route the Request-URI host is the next hop: an open relay unless only the
  // sources that may relay get it. A Request-URI naming the B2BUA gets its 404 later.
  if (route == nullptr && ruri.IsSip() && !NamesSelf(ruri) &&
      !access.MayRelayToRequestUri(source.address)) {
    return refuse(RejectReason::kRelayDenied, 403, "Forbidden",
                  "Reason: SIP;cause=403;text=\"relaying to the Request-URI is not allowed\"\r\n");
  }
  SharedCallLimits* limits = context_.call_limits;
  // Trunks and core proxies carry many callers' calls: the per-source cap is for the rest.
  if (limits != nullptr && access.max_calls_per_source != 0 &&
      !access.IsTrusted(source.address)) {
    if (!limits->per_source.TryAcquire(source.address, access.max_calls_per_source)) {
      return refuse(RejectReason::kCallsPerSource, 503, "Service Unavailable",
                    "Retry-After: 5\r\nReason: SIP;cause=503;text=\"too many calls from this "
                    "source\"\r\n");
    }
    out->source_counted = true;
  }
  auto release = [&] {
    if (out->route_load != nullptr) out->route_load->calls.Release();
    out->route_load = nullptr;
    if (out->source_counted) limits->per_source.Release(source.address);
    out->source_counted = false;
  };
  const proto::TimePoint now = context_.clock->Now();
  // A route at its capacity or rate hands the call to the route it names in overflow_to,
  // if any; a bounded walk, so a cycle of overflow_to names cannot spin.
  const Route* chosen = route;
  for (int hop = 0; chosen != nullptr && chosen->action == Route::Action::kRoute; ++hop) {
    if (hop == 8 || (!chosen->callers.empty() && !chosen->callers.Contains(source.address))) {
      chosen = nullptr;
      break;
    }
    if (chosen->load->calls.TryAcquire(chosen->max_calls)) {
      if (chosen->load->rate.TryAcquire(now, chosen->calls_per_second)) {
        out->route_load = chosen->load.get();
        break;
      }
      chosen->load->calls.Release();
    }
    chosen = config.routes.OverflowOf(*chosen);
  }
  if (route != nullptr && chosen == nullptr) {
    release();
    return refuse(RejectReason::kRouteLimit, 503, "Service Unavailable",
                  "Retry-After: 5\r\nReason: SIP;cause=503;text=\"route at capacity\"\r\n");
  }
  // The global rate last: a call refused above has not spent a token of it.
  if (limits != nullptr && !limits->global_rate.TryAcquire(now, config.limits.calls_per_second)) {
    release();
    return refuse(RejectReason::kRate, 503, "Service Unavailable",
                  "Retry-After: 1\r\nReason: SIP;cause=503;text=\"call rate limit\"\r\n");
  }
  out->route = chosen;
  return true;
}

bool CallEngine::SendBLegInvite(Call& call, std::string_view request_uri, const Peer& destination,
                                std::string_view proxy_route) {
  const RedirectSettings& settings = SettingsFor(call);
  // Every redirect hop draws on the caller's Max-Forwards budget (never reset to 70).
  int max_forwards = call.setup().max_forwards - 1 - call.setup().max_depth_seen;
  if (max_forwards < 0) {
    call.setup().hops_exhausted = true;
    return false;
  }
  // RFC 3261 26.2.2: a sips: Request-URI travels over TLS on every hop, or not at all.
  if (IsSipsUri(request_uri) && destination.transport != proto::TransportKind::kTls) {
    call.setup().sips_refused = true;
    return false;
  }
  if (destination.transport == proto::TransportKind::kTls) {
    if (context_.tls_names == nullptr) return false;  // no TLS configured
    // The certificate must name the host the hop was given by; an IP literal names itself.
    const std::string& host = call.setup().pending_host;
    proto::NetAddress literal;
    if (!host.empty() && !proto::NetAddress::ParseIp(host, 0, &literal))
      context_.tls_names->SetServerName(destination.address, host);
  }
  call.b_request_uri = std::string(request_uri);
  // What this attempt's target (index 0: the original) was sent, for a 305 it may answer.
  const size_t attempt = call.setup().current_target < 0
                             ? 0 : static_cast<size_t>(call.setup().current_target);
  std::vector<std::string>& sent = call.setup().sent_request_uris;
  if (sent.size() <= attempt) sent.resize(attempt + 1);
  sent[attempt] = call.b_request_uri;
  call.b_invite_cseq = call.b.local_cseq++;
  std::string branch = tokens_.Branch('b');
  const std::string via = StrCat("SIP/2.0/", proto::TransportName(destination.transport), " ",
                                 HostPortFor(destination.transport), ";branch=", branch,
                                 ";rport");
  std::string out;
  out.reserve(1024 + call.setup().offer_body.size() + call.setup().passed.size());
  StrAppend(&out, "INVITE ", request_uri, " SIP/2.0\r\n");
  AppendHeader(out, "Via", via);
  if (!proxy_route.empty()) AppendHeader(out, "Route", proxy_route);
  StrAppend(&out, "Max-Forwards: ", max_forwards, "\r\n");
  AppendHeader(out, "From", call.b.local_party);
  AppendHeader(out, "To", call.setup().b_to);
  AppendHeader(out, "Call-ID", call.b.call_id);
  StrAppend(&out, "CSeq: ", call.b_invite_cseq, " INVITE\r\n");
  AppendHeader(out, "Contact", ContactFor(destination.transport));
  if (call.in_redirect && !call.setup().history_info.empty()) {
    if (settings.history_info) AppendHeader(out, "History-Info", call.setup().history_info);
    if (settings.diversion && call.setup().current_target >= 0) {
      // RFC 5806: diverted from the target whose 3xx named this one.
      const int from = call.setup().targets.at(
          static_cast<size_t>(call.setup().current_target)).from_target;
      AppendHeader(out, "Diversion",
                   StrCat("<", SentRequestUri(call, from), ">;reason=unconditional"));
    }
  }
  StrAppend(&out, call.setup().passed);
  {
    // RFC 3325: the asserted identity stays inside the trust domain when the caller asked
    // for privacy, and a preferred identity is never handed to a trusted next hop, which
    // could take it for one we asserted.
    const bool trusted_hop = call.config->access.IsTrusted(destination.address);
    if (trusted_hop || !call.setup().privacy_id) StrAppend(&out, call.setup().asserted_identity);
    if (!trusted_hop) StrAppend(&out, call.setup().preferred_identity);
  }
  AppendBody(out, call.setup().offer_body, call.setup().offer_type);
  call.b.peer = destination;
  call.b_acked = false;
  call.b_cancel_sent = false;
  context_.counters->requests_sent[static_cast<size_t>(Method::kInvite)].Inc();
  call.b_invite =
      transactions_->SendRequest(std::move(out), branch, Method::kInvite, destination, call.cookie);
  return call.b_invite != proto::kNoTransaction;
}

bool CallEngine::StartNextAttempt(Call& call) {
  // Next hops of the route, in order (serial failover).
  while (!call.in_redirect && call.setup().next_hop < call.setup().hops.size()) {
    const NextHop& hop = call.setup().hops[call.setup().next_hop++];
    proto::SipUri uri;
    if (proto::ParseUri(hop.uri, &uri) != proto::UriError::kNone) continue;
    std::optional<proto::TransportKind> transport;
    if (!uri.transport.empty() || uri.scheme == proto::UriScheme::kSips)
      transport = hop.transport;
    std::string request_uri =
        call.setup().hop_request_uri.empty() ? call.setup().a_request_uri : call.setup().hop_request_uri;
    proto::SipUri original;
    if (call.setup().hop_request_uri.empty() &&
        proto::ParseUri(call.setup().a_request_uri, &original) == proto::UriError::kNone &&
        original.IsSip() && NamesSelf(original)) {
      // A Request-URI naming the B2BUA would bring the call straight back through a proxy
      // next hop: address the user at the next hop instead (a trunk routes on the user).
      const bool v6 = hop.host.find(':') != std::string::npos;
      request_uri = StrCat("sip:", original.user, original.has_user ? "@" : "",
                           v6 ? "[" : "", hop.host, v6 ? "]" : "",
                           uri.port ? StrCat(":", uri.port) : "");
    }
    if (SendAttempt(call, uri, std::move(request_uri), {}, transport, -1)) return true;
  }
  if (!call.in_redirect) return false;
  // Redirect targets, best q first.
  while (Target* target = call.setup().targets.NextPending()) {
    const size_t index = target->index;
    PolicyDecision decision = DecideTarget(call, *target);
    if (decision == PolicyDecision::kPending) {
      // The application decides later (ResumeRedirect); the shard goes on meanwhile.
      call.setup().parked = true;
      call.setup().current_target = static_cast<int>(index);
      return true;
    }
    if (decision == PolicyDecision::kStop) {
      call.setup().targets.MarkResult(index, TargetState::kRefused, 0);
      break;
    }
    if (AttemptTarget(call, index, decision)) return true;
  }
  return false;
}

const std::string& CallEngine::SentRequestUri(Call& call, int target_index) {
  const std::vector<std::string>& sent = call.setup().sent_request_uris;
  const size_t index = target_index < 0 ? 0 : static_cast<size_t>(target_index);
  return index < sent.size() && !sent[index].empty() ? sent[index]
                                                     : call.setup().a_request_uri;
}

void CallEngine::RefuseTarget(Call& call, size_t index) {
  ++call.setup().refused;
  context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kRefusedByPolicy)].Inc();
  call.setup().targets.MarkResult(index, TargetState::kRefused, 0);
}

bool CallEngine::AttemptTarget(Call& call, size_t index, PolicyDecision decision) {
  const RedirectSettings& settings = SettingsFor(call);
  if (call.setup().max_forwards - 1 - call.setup().max_depth_seen < 0) {
    // The caller's Max-Forwards budget is spent: no redirect hop may go further.
    call.setup().hops_exhausted = true;
    call.setup().targets.MarkResult(index, TargetState::kRefused, 0);
    return false;
  }
  if (decision == PolicyDecision::kReject || decision == PolicyDecision::kStop) {
    RefuseTarget(call, index);
    return false;
  }
  const Target& target = call.setup().targets.at(index);
  std::string request_uri = target.request_uri;
  const int redirect_status = target.redirect_status;
  const int redirected_by = target.from_target;
  proto::SipUri uri;
  if (proto::ParseUri(request_uri, &uri) != proto::UriError::kNone) {
    RefuseTarget(call, index);
    return false;
  }
  // Where the INVITE goes: the target itself, or for tel: the route's first next hop.
  std::string destination_text = request_uri;
  std::optional<proto::TransportKind> transport;
  if (uri.scheme == proto::UriScheme::kTel) {
    // tel: targets are re-routed by number through the route table.
    const Route* route = call.config->routes.Match(uri.user);
    if (route == nullptr || route->next_hops.empty()) {
      RefuseTarget(call, index);
      return false;
    }
    const NextHop& hop = route->next_hops.front();
    destination_text = hop.uri;
    transport = hop.transport;
    request_uri = StrCat("sip:", uri.user, "@", hop.host,
                         hop.port != 5060 ? StrCat(":", hop.port) : "", ";user=phone");
  } else if (!uri.transport.empty() || uri.scheme == proto::UriScheme::kSips) {
    transport = TransportOfUri(uri);
  }
  proto::SipUri destination_uri;
  if (proto::ParseUri(destination_text, &destination_uri) != proto::UriError::kNone ||
      (destination_uri.host_kind == proto::HostKind::kName && context_.resolver == nullptr)) {
    // A host name with no resolver configured cannot be reached.
    RefuseTarget(call, index);
    return false;
  }
  if (decision == PolicyDecision::kAcceptReplace || settings.to_uri == RedirectToUri::kReplace)
    call.setup().b_to = StrCat("<", request_uri, ">");
  std::string proxy_route;
  if (redirect_status == 305) {
    // 305 Use Proxy (RFC 3261 21.3.6): the Contact is the proxy; the request that got the
    // 305 is sent again, same Request-URI, through it.
    proxy_route = StrCat("<", request_uri, ";lr>");
    request_uri = SentRequestUri(call, redirected_by);
  }
  // History-Info (RFC 7044): the first target this leg asked for, then each retargeting
  // with its cause.
  if (call.setup().history_info.empty())
    call.setup().history_info = StrCat("<", SentRequestUri(call, 0), ">;index=1");
  StrAppend(&call.setup().history_info, ", <", request_uri, ">;index=1.", index, ";rc=",
                  redirect_status ? redirect_status : 302);
  call.setup().current_target = static_cast<int>(index);
  if (call.setup().attempt_started.size() < call.setup().targets.size()) {
    call.setup().attempt_started.resize(call.setup().targets.size());
    call.setup().attempt_took.resize(call.setup().targets.size(), proto::Duration::zero());
  }
  call.setup().attempt_started[index] = context_.clock->Now();
  ArmTimer(call, &call.target_timer, settings.target_timeout, kTargetTimeout);
  if (SendAttempt(call, destination_uri, std::move(request_uri), std::move(proxy_route),
                  transport, static_cast<int>(index)))
    return true;
  call.setup().targets.MarkResult(index, TargetState::kFailed, 0);
  return false;
}

bool CallEngine::SendAttempt(Call& call, const proto::SipUri& uri, std::string request_uri,
                             std::string proxy_route,
                             std::optional<proto::TransportKind> transport, int target_index) {
  // A new attempt supersedes any resolution still out and the addresses left from the
  // previous one: a late answer must not start a second INVITE.
  call.setup().resolving = false;
  ++call.setup().resolve_generation;
  call.setup().spare_addresses.clear();
  Peer destination;
  call.setup().pending_host.assign(uri.host);
  if (DestinationFor(uri, &destination)) {
    if (transport) destination.transport = *transport;
    if (target_index < 0 && HopResting(destination)) {
      call.setup().skipped_resting = true;
      return false;
    }
    return SendBLegInvite(call, request_uri, destination, proxy_route);
  }
  if (context_.resolver == nullptr || uri.host_kind != proto::HostKind::kName) return false;
  // RFC 3263 resolution is asynchronous: the attempt waits for it, the shard goes on.
  call.setup().pending_request_uri = std::move(request_uri);
  call.setup().pending_proxy_route = std::move(proxy_route);
  call.setup().pending_target = target_index;
  call.setup().resolving = true;
  const uint64_t generation = call.setup().resolve_generation;
  const uint64_t cookie = call.cookie;
  context_.resolver->Resolve(
      uri.host, uri.port, transport, uri.scheme == proto::UriScheme::kSips,
      [this, cookie, generation](const proto::ResolvedTargets& result) {
        OnResolved(cookie, generation, result);
      });
  return true;
}

void CallEngine::OnResolved(uint64_t cookie, uint64_t generation,
                            const proto::ResolvedTargets& result) {
  auto it = calls_.find(cookie);
  if (it == calls_.end()) return;
  Call& call = *it->second;
  // A late answer for a call already set up (or ended) finds nothing waiting.
  if (!call.setup_view().resolving || generation != call.setup_view().resolve_generation) return;
  call.setup().resolving = false;
  if (call.cancelled ||
      (call.state != Call::State::kTrying && call.state != Call::State::kEarly))
    return;
  const RedirectSettings& settings = SettingsFor(call);
  bool refused = false;
  bool sent = false;
  if (result.status == proto::ResolveStatus::kOk) {
    // In RFC 3263 order; the first address we may and can use wins.
    for (const proto::ResolvedTarget& target : result.targets) {
      // RFC 3263 targets: TLS ones when this B2BUA has TLS, UDP ones always.
      Peer destination{target.address, target.transport, 0};
      if (target.tls) {
        if (context_.tls_names == nullptr) continue;
        destination.transport = proto::TransportKind::kTls;
      } else if (target.transport != proto::TransportKind::kUdp) {
        continue;
      }
      if (call.setup().pending_target >= 0) {
        // A name must not lead where an address would be refused (RFC 1918, ourselves).
        const bool self = destination.address == context_.local_address;
        if ((settings.deny_self && self) ||
            (call.setup().policy && !call.setup().policy->AddressAllowed(destination.address))) {
          refused = true;
          continue;
        }
      } else if (HopResting(destination)) {
        call.setup().skipped_resting = true;
        continue;
      }
      if (!sent) {
        sent = SendBLegInvite(call, call.setup().pending_request_uri, destination,
                              call.setup().pending_proxy_route);
      } else {
        // RFC 3263 4.3: the other addresses of the name are tried if this one fails.
        call.setup().spare_addresses.push_back(destination);
      }
    }
  }
  if (sent) return;
  if (call.setup().pending_target >= 0) {
    const size_t index = static_cast<size_t>(call.setup().pending_target);
    if (refused) {
      RefuseTarget(call, index);
    } else {
      context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kFailed)].Inc();
      call.setup().targets.MarkResult(index, TargetState::kFailed, 0);
    }
    context_.timers->Cancel(&call.target_timer);
  }
  if (!StartNextAttempt(call)) FinishSearch(call);
}

void CallEngine::StartProbing() {
  context_.timers->Cancel(&probe_timer_);
  const proto::Duration interval = config_->probe.options_interval;
  if (interval <= proto::Duration::zero()) {
    dead_hops_.clear();
    return;
  }
  // Spread the shards' first probes over the interval rather than all at once.
  probe_timer_ = context_.timers->Schedule(
      interval * (context_.shard_index + 1) / std::max<uint32_t>(context_.shard_count, 1), this,
      kProbe, 0);
}

void CallEngine::ProbeNextHops() {
  const proto::Duration interval = config_->probe.options_interval;
  if (interval <= proto::Duration::zero()) return;
  probe_targets_.clear();
  const uint64_t round = ++probe_round_;
  for (const Route& route : config_->routes.routes()) {
    for (const NextHop& hop : route.next_hops) {
      proto::SipUri uri;
      if (proto::ParseUri(hop.uri, &uri) != proto::UriError::kNone) continue;
      Peer destination;
      if (DestinationFor(uri, &destination)) {
        SendProbe(hop, destination);
        continue;
      }
      if (uri.host_kind != proto::HostKind::kName || context_.resolver == nullptr) continue;
      // A name is probed at every address it resolves to, as calls will try them; an
      // answer from an earlier round (the config changed) is dropped.
      std::optional<proto::TransportKind> transport;
      if (!uri.transport.empty()) transport = hop.transport;
      context_.resolver->Resolve(
          uri.host, uri.port, transport, uri.scheme == proto::UriScheme::kSips,
          [this, round, hop](const proto::ResolvedTargets& result) {
            if (round != probe_round_) return;
            for (const proto::ResolvedTarget& target : result.targets) {
              if (target.tls) continue;  // no TLS transport to probe over
              Peer resolved;
              resolved.address = target.address;
              resolved.transport = target.transport;
              SendProbe(hop, resolved);
            }
          });
    }
  }
  probe_timer_ = context_.timers->Schedule(interval, this, kProbe, 0);
}

void CallEngine::SendProbe(const NextHop& hop, const Peer& destination) {
  if (std::find(probe_targets_.begin(), probe_targets_.end(), destination.address) !=
      probe_targets_.end())
    return;
  probe_targets_.push_back(destination.address);
  // The Call-ID names this shard, so the answer comes back here.
  std::string branch = tokens_.Branch('o');
  const bool v6 = hop.host.find(':') != std::string::npos;
  const std::string host_port = StrCat(v6 ? "[" : "", hop.host, v6 ? "]" : "", ":", hop.port);
  std::string out = StrCat(
      "OPTIONS sip:", host_port, " SIP/2.0\r\nVia: SIP/2.0/",
      proto::TransportName(destination.transport), " ", HostPortFor(destination.transport), ";branch=", branch,
      ";rport\r\nMax-Forwards: 70\r\n", "From: <sip:b2bua@", local_host_port_, ">;tag=",
      tokens_.Token('p'), "\r\nTo: <sip:", host_port, ">\r\nCall-ID: ",
      tokens_.CallId('q', "probe"),
      "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
  context_.counters->requests_sent[static_cast<size_t>(Method::kOptions)].Inc();
  transactions_->SendRequest(std::move(out), branch, Method::kOptions, destination,
                             kProbeCookie | (probe_targets_.size() - 1));
}

void CallEngine::OnProbeResult(uint64_t cookie, bool answered) {
  const size_t index = static_cast<size_t>(cookie & ~kProbeCookie);
  if (index >= probe_targets_.size()) return;
  if (answered)
    dead_hops_.erase(probe_targets_[index]);
  else
    dead_hops_.insert(probe_targets_[index]);
}

bool CallEngine::HopResting(const Peer& destination) const {
  if (dead_hops_.contains(destination.address)) return true;
  auto it = resting_hops_.find(destination.address);
  return it != resting_hops_.end() && it->second > context_.clock->Now();
}

PolicyDecision CallEngine::DecideTarget(Call& call, const Target& target) {
  if (policy_override_ != nullptr) return policy_override_->Decide(target, call.cookie);
  if (!call.setup().policy) {
    const RedirectSettings& settings = SettingsFor(call);
    call.setup().policy = std::make_unique<ConfiguredRedirectPolicy>(
        SecurityFromSettings(settings),
        settings.to_uri == RedirectToUri::kReplace);
  }
  return call.setup().policy->Decide(target, call.cookie);
}

void CallEngine::ResumeRedirect(uint64_t call_cookie, PolicyDecision decision) {
  auto it = calls_.find(call_cookie);
  if (it == calls_.end() || !it->second->setup_view().parked || it->second->cancelled) return;
  Call& call = *it->second;
  call.setup().parked = false;
  // The parked target goes back to pending with the decision recorded by the policy's
  // next answer; simplest faithful behaviour: re-run the search.
  if (decision == PolicyDecision::kStop || decision == PolicyDecision::kReject) {
    call.setup().targets.MarkResult(static_cast<size_t>(call.setup().current_target), TargetState::kRefused, 0);
    if (decision == PolicyDecision::kStop) {
      FinishSearch(call);
      return;
    }
  } else {
    if (AttemptTarget(call, static_cast<size_t>(call.setup().current_target), decision)) return;
  }
  if (!StartNextAttempt(call)) FinishSearch(call);
}

void CallEngine::AnswerCaller(Call& call, int status, std::string_view reason,
                              std::string_view extra, std::string_view body,
                              std::string_view content_type) {
  if (call.a_final_sent) return;
  std::string out = call.setup().a_head.Start(status, reason, call.a_tag);
  if (status < 300 && status > 100)
    AppendHeader(out, "Contact", ContactFor(call.a.peer.transport));
  StrAppend(&out, extra);
  AppendBody(out, body, content_type);
  context_.counters->responses_sent[status / 100].Inc();
  if (status >= 200) call.a_final_sent = true;
  if (status >= 200 && status < 300) {
    // The core owns 2xx reliability (RFC 3261 13.3.1.4).
    call.setup().a_2xx = out;
    call.setup().a_2xx_interval = call.config->timers.t1;
    call.setup().a_2xx_sends = 1;
    call.setup().a_2xx_deadline = context_.clock->Now() + call.config->timers.t1 * 64;
    ArmTimer(call, &call.a_2xx_timer, call.setup().a_2xx_interval, kA2xxRetransmit);
  }
  transactions_->Respond(call.a_invite, status, std::move(out));
}

void CallEngine::FinishSearch(Call& call) {
  context_.timers->Cancel(&call.target_timer);
  const RedirectSettings& settings = SettingsFor(call);
  if (call.in_redirect) {
    // The search ended without an answer: say why, with a Reason (RFC 3326).
    RedirectFailure failure = RedirectFailure::kExhausted;
    int status = call.setup().best_status;
    std::string reason = call.setup().best_reason;
    if (call.cancelled) {
      failure = RedirectFailure::kCancelled;
    } else if (call.setup().best_status == 0 && (call.setup().depth_exceeded || call.setup().hops_exhausted)) {
      failure = RedirectFailure::kDepth;
      status = 483;
      reason = "Too Many Hops";
    } else if (call.setup().best_status == 0 && call.setup().loops > 0 && call.setup().refused == 0) {
      failure = RedirectFailure::kLoop;
      status = 482;
      reason = "Loop Detected";
    } else if (call.setup().best_status == 0 && call.setup().refused > 0) {
      failure = RedirectFailure::kAllRefused;
      status = 403;
      reason = "Forbidden";
    }
    context_.counters->redirect_failures[static_cast<size_t>(failure)].Inc();
    context_.counters->redirect_depth.Observe(call.setup().max_depth_seen);
    if (!call.cancelled) {
      if (settings.relay_last_3xx && !call.setup().last_3xx_status.empty()) {
        int code = std::atoi(call.setup().last_3xx_status.c_str());
        AnswerCaller(call, code, call.setup().last_3xx_status.substr(4), call.setup().last_3xx_contacts, {}, {});
        EndCall(call, CallOutcome::kRedirectSent);
        return;
      }
      if (status == 0) {
        status = 480;
        reason = "Temporarily Unavailable";
      }
      std::string why = StrCat("Reason: SIP;cause=", status, ";text=\"redirect ",
                                     RedirectFailureName(failure), "\"\r\n");
      AnswerCaller(call, status, reason, why, {}, {});
    }
    EndCall(call, call.cancelled ? CallOutcome::kCancelled : CallOutcome::kRedirectFailed);
    return;
  }
  if (call.cancelled) {
    EndCall(call, CallOutcome::kCancelled);
    return;
  }
  if (call.setup().best_status == 0 && call.setup().skipped_resting) {
    AnswerCaller(call, 503, "Service Unavailable",
                 "Retry-After: 5\r\nReason: SIP;cause=503;text=\"every next hop is resting\"\r\n",
                 {}, {});
    EndCall(call, CallOutcome::kUnreachable);
    return;
  }
  if (call.setup().best_status == 0 && call.setup().sips_refused) {
    AnswerCaller(call, 480, "Temporarily Unavailable",
                 "Reason: SIP;cause=480;text=\"a sips: Request-URI needs a TLS next hop\"\r\n",
                 {}, {});
    EndCall(call, CallOutcome::kUnreachable);
    return;
  }
  if (call.setup().best_status == 0) {
    AnswerCaller(call, 408, "Request Timeout",
                 "Reason: SIP;cause=408;text=\"no next hop answered\"\r\n", {}, {});
    EndCall(call, call.setup().hops.empty() ? CallOutcome::kNoRoute : CallOutcome::kUnreachable);
    return;
  }
  AnswerCaller(call, call.setup().best_status, call.setup().best_reason, call.setup().best_extra, {}, {});
  EndCall(call, CallOutcome::kRejected);
}

void CallEngine::OnResponse(TransactionId id, uint64_t cookie, const SipMessage& response) {
  context_.counters->responses_received[response.status_code() / 100].Inc();
  if (cookie & kProbeCookie) {
    // Any final answer, even 404 or 405, shows the hop is up.
    if (response.status_code() >= 200) OnProbeResult(cookie, true);
    return;
  }
  auto it = calls_.find(cookie);
  if (it == calls_.end()) {
    // The call ended while an attempt was still out; if it answers now, release it.
    if (response.cseq().method == Method::kInvite && response.status_code() / 100 == 2)
      ReleaseStray2xx(nullptr, response);
    return;
  }
  Call& call = *it->second;
  if (id == call.b_invite) {
    OnInviteResponse(call, response);
    return;
  }
  if (response.cseq().method == Method::kInvite && response.status_code() / 100 == 2 &&
      !call.relays.contains(id)) {
    // An attempt we gave up on (timed out, cancelled) answered after all.
    ReleaseStray2xx(&call, response);
    return;
  }
  OnRelayedResponse(call, id, response);
}

void CallEngine::OnInviteResponse(Call& call, const SipMessage& response) {
  const int status = response.status_code();
  if (status < 200) {
    if (status == 100 || call.cancelled || call.a_final_sent) return;  // 100 is hop by hop
    call.state = Call::State::kEarly;
    std::string out = call.setup().a_head.Start(status, response.reason_phrase(), call.a_tag);
    AppendHeader(out, "Contact", ContactFor(call.a.peer.transport));
    StrAppend(&out, PassedHeaders(response, call.config->headers,
                                  IdentityFrom(call.config->access, call.b.peer)));
    AppendBody(out, response.body(), response.content_type());
    context_.counters->responses_sent[1].Inc();
    transactions_->Respond(call.a_invite, status, std::move(out));
    return;
  }
  if (status < 300) {
    OnInvite2xx(call, response);
    return;
  }
  context_.timers->Cancel(&call.target_timer);
  // The transaction layer ACKs this final and absorbs its retransmissions: it is no
  // longer an INVITE a CANCEL could reach.
  call.b_invite = proto::kNoTransaction;
  if (status < 400 && !call.cancelled) {
    OnRedirect(call, response);
    return;
  }
  OnInviteFinalFailure(call, status, response.reason_phrase(), &response);
}

void CallEngine::OnInvite2xx(Call& call, const SipMessage& response) {
  std::string_view to_tag = response.to().tag;
  if (call.b_acked || call.state == Call::State::kAnswered ||
      call.state == Call::State::kConfirmed || call.cancelled) {
    if (call.b_acked &&
        (call.b.remote_party).find(StrCat("tag=", to_tag)) != std::string::npos) {
      ResendBAck(call);  // a retransmitted 2xx: our ACK was lost
      return;
    }
    if (call.state == Call::State::kAnswered &&
        (call.b.remote_party).find(StrCat("tag=", to_tag)) != std::string::npos) {
      return;  // retransmission before the caller's ACK: the ACK will follow it
    }
    ReleaseStray2xx(&call, response);
    if (call.cancelled && !call.a_final_sent) FinishSearch(call);
    return;
  }
  AcceptInvite2xx(call, response);
}

void CallEngine::ReleaseStray2xx(Call* call, const SipMessage& response) {
  // A 2xx after CANCEL, from a second fork or from an abandoned attempt: ACK it and
  // release it with BYE so the callee does not believe in a call nobody will end. The
  // response names everything needed: our From, the callee's To and Contact.
  std::string target = response.contact_count()
                           ? std::string(response.contacts()[0].address.uri.text)
                           : std::string();
  Peer destination;
  proto::SipUri target_uri;
  const bool routable = !target.empty() &&
                        proto::ParseUri(target, &target_uri) == proto::UriError::kNone &&
                        DestinationFor(target_uri, &destination);
  if (!routable) {
    if (call == nullptr || target.empty()) {
      context_.counters->internal_bugs.Inc();
      return;
    }
    destination = call->b.peer;
  }
  // The answering dialog, seen from our side: our From, its To and Contact.
  Dialog stray;
  stray.call_id = std::string(response.call_id());
  stray.local_party = std::string(response.from().text);
  stray.remote_party = std::string(response.to().text);
  stray.remote_target = std::move(target);
  stray.peer = destination;
  SendAck(stray, response.cseq().number, {}, {});
  std::string branch = tokens_.Branch('y');
  std::string bye = StartDialogRequest(stray, "BYE", branch, response.cseq().number + 1);
  AppendBody(bye, {}, {});
  context_.counters->requests_sent[static_cast<size_t>(Method::kBye)].Inc();
  transactions_->SendRequest(std::move(bye), branch, Method::kBye, destination, 0);
}

void CallEngine::AcceptInvite2xx(Call& call, const SipMessage& response) {
  context_.timers->Cancel(&call.timer_c);
  context_.timers->Cancel(&call.target_timer);
  // Establish the B-leg dialog (RFC 3261 12.1.2): the route set is the Record-Route in
  // reverse order, the remote target the 2xx Contact.
  call.b.remote_party = std::string(response.to().text);
  call.b.remote_target = response.contact_count()
                             ? std::string(response.contacts()[0].address.uri.text)
                             : call.b_request_uri;
  call.b.route_set.clear();
  for (size_t i = response.record_route_count(); i > 0; --i)
    call.b.route_set.emplace_back(response.record_routes()[i - 1].text);
  call.b.remote_cseq = 0;
  call.setup().b_answer_body = std::string(response.body());
  call.state = Call::State::kAnswered;
  context_.counters->dialogs_active.Inc(2);
  context_.counters->call_setup_seconds.Observe(
      std::chrono::duration<double>(context_.clock->Now() - call.started).count());
  if (call.in_redirect) {
    context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kAnswered)].Inc();
    call.setup().targets.MarkResult(static_cast<size_t>(call.setup().current_target), TargetState::kAnswered,
                            static_cast<uint16_t>(response.status_code()));
    EndAttempt(call);
    context_.counters->redirect_depth.Observe(call.setup().max_depth_seen);
    context_.counters->redirect_extra_delay_seconds.Observe(
        std::chrono::duration<double>(context_.clock->Now() - call.setup().first_redirect).count());
  }
  ArmTimer(call, &call.duration_timer, call.config->limits.max_call_duration, kMaxDuration);
  AnswerCaller(call, response.status_code(), response.reason_phrase(),
               PassedHeaders(response, call.config->headers,
                             IdentityFrom(call.config->access, call.b.peer)),
               response.body(), response.content_type());
}

void CallEngine::OnRedirect(Call& call, const SipMessage& response) {
  const int status = response.status_code();
  const RedirectSettings& settings = SettingsFor(call);
  context_.counters->redirects_received[static_cast<size_t>(ToRedirectCode(status))].Inc();
  // Keep every Contact line verbatim: relay mode and relay_last_3xx send them back as is.
  call.setup().last_3xx_status = StrCat(status, " ", response.reason_phrase());
  call.setup().last_3xx_contacts.clear();
  for (size_t i = 0; i < response.header_count(); ++i) {
    const proto::HeaderField& h = response.headers()[i];
    if (h.id == proto::HeaderId::kContact) AppendHeader(call.setup().last_3xx_contacts, "Contact", h.value);
  }
  if (call.in_redirect && call.setup().current_target >= 0) {
    context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kRedirected)].Inc();
    EndAttempt(call);
  }
  if (settings.mode == RedirectMode::kRelay || status == 380) {
    AnswerCaller(call, status, response.reason_phrase(), call.setup().last_3xx_contacts, {}, {});
    context_.counters->redirects_sent.Inc();
    EndCall(call, CallOutcome::kRedirectSent);
    return;
  }
  if (!call.in_redirect) {
    call.in_redirect = true;
    call.setup().first_redirect = context_.clock->Now();
  }
  // The first 3xx comes from the original target (index 0), later ones from a target.
  const int from = call.setup().current_target < 0 ? 0 : call.setup().current_target;
  const int depth = call.setup().targets.at(static_cast<size_t>(from)).depth + 1;
  call.setup().max_depth_seen = std::max(call.setup().max_depth_seen, depth);
  if (depth > settings.max_depth) {
    call.setup().depth_exceeded = true;
    call.setup().targets.MarkResult(static_cast<size_t>(from), TargetState::kRedirected,
                            static_cast<uint16_t>(status));
  } else {
    MergeResult merged = call.setup().targets.Merge(response, from, depth);
    if (merged.loops > 0) {
      call.setup().loops += static_cast<int>(merged.loops);
      context_.counters->redirect_loops_detected.Inc(merged.loops);
      context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kSkippedAsLoop)].Inc(
          merged.loops);
    }
    // 301: remember the best target for later calls to the same Request-URI.
    if (status == 301 && call.setup().current_target < 0 && settings.cache_301.entries > 0 &&
        merged.added > 0 && !call.setup().targets.pending_order().empty()) {
      const Target& best = call.setup().targets.at(call.setup().targets.pending_order()[0]);
      const proto::TimePoint now = context_.clock->Now();
      const proto::TimePoint expires = now + settings.cache_301.ttl;
      moved_permanently_.Learn(call.setup().a_request_uri, best.request_uri, expires,
                               settings.cache_301.entries, now);
      if (context_.redirect_share != nullptr)
        context_.redirect_share->SharePermanentRedirect(call.setup().a_request_uri,
                                                        best.request_uri, expires);
    }
  }
  if (settings.send_181 && !call.setup().sent_181 && !call.a_final_sent) {
    call.setup().sent_181 = true;
    std::string out = call.setup().a_head.Start(181, "Call Is Being Forwarded", call.a_tag);
    AppendHeader(out, "Contact", ContactFor(call.a.peer.transport));
    AppendBody(out, {}, {});
    context_.counters->responses_sent[1].Inc();
    transactions_->Respond(call.a_invite, 181, std::move(out));
  }
  if (!StartNextAttempt(call)) FinishSearch(call);
}

void CallEngine::OnInviteFinalFailure(Call& call, int status, std::string_view reason,
                                      const SipMessage* response) {
  // Remember the best answer (RFC 3261 16.7) for when every attempt has failed; a
  // timeout is not an answer (it makes the call unreachable, not rejected).
  if (response != nullptr &&
      (call.setup().best_status == 0 || ResponseRank(status) < ResponseRank(call.setup().best_status))) {
    call.setup().best_status = status;
    call.setup().best_reason = std::string(reason);
    call.setup().best_extra =
        response ? PassedHeaders(*response, call.config->headers,
                                 IdentityFrom(call.config->access, call.b.peer))
                 : std::string();
  }
  if (call.cancelled) {
    FinishSearch(call);
    return;
  }
  if ((response == nullptr || status == 503) && !call.setup().spare_addresses.empty()) {
    // The same next hop or target under its next DNS address.
    const Peer next = call.setup().spare_addresses.front();
    call.setup().spare_addresses.erase(call.setup().spare_addresses.begin());
    if (call.setup().pending_target >= 0)
      ArmTimer(call, &call.target_timer, SettingsFor(call).target_timeout, kTargetTimeout);
    if (SendBLegInvite(call, call.setup().pending_request_uri, next, call.setup().pending_proxy_route)) return;
  }
  if (call.in_redirect) {
    const RedirectSettings& settings = SettingsFor(call);
    bool timeout = response == nullptr;
    context_.counters->redirect_targets[static_cast<size_t>(
        timeout ? TargetOutcome::kTimeout : TargetOutcome::kFailed)].Inc();
    call.setup().targets.MarkResult(static_cast<size_t>(call.setup().current_target),
                            timeout ? TargetState::kTimedOut : TargetState::kFailed,
                            static_cast<uint16_t>(status));
    EndAttempt(call);
    if (status >= 600 || !(timeout || settings.TryNextOn(status))) {
      // 6xx ends the search (RFC 3261 16.7); other finals go to the caller as they are.
      call.setup().best_status = status;
      call.setup().best_reason = std::string(reason);
      call.in_redirect = true;
      AnswerCaller(call, status, reason, call.setup().best_extra, {}, {});
      context_.counters->redirect_failures[static_cast<size_t>(RedirectFailure::kExhausted)].Inc();
      EndCall(call, CallOutcome::kRedirectFailed);
      return;
    }
    if (!StartNextAttempt(call)) FinishSearch(call);
    return;
  }
  if (status == 503 && response != nullptr) {
    // "503 with Retry-After": that next hop asked not to be bothered for a while.
    if (const proto::HeaderField* retry = response->FindHeader(proto::HeaderId::kRetryAfter)) {
      uint64_t seconds = 0;
      size_t i = 0;
      while (i < retry->value.size() && proto::IsDigit(retry->value[i]) && seconds < 86400)
        seconds = seconds * 10 + static_cast<uint64_t>(retry->value[i++] - '0');
      if (i > 0 && seconds > 0) {
        if (resting_hops_.size() >= 1024) resting_hops_.clear();  // bounded, per shard
        resting_hops_[call.b.peer.address] =
            context_.clock->Now() + std::chrono::seconds(std::min<uint64_t>(seconds, 3600));
      }
    }
  }
  if ((response == nullptr || call.config->failover_on.Contains(status)) &&
      call.setup().next_hop < call.setup().hops.size()) {
    if (StartNextAttempt(call)) return;
  }
  FinishSearch(call);
}

void CallEngine::OnClientFailure(TransactionId id, uint64_t cookie, proto::ClientFailure failure) {
  if (cookie & kProbeCookie) {
    OnProbeResult(cookie, false);
    return;
  }
  auto it = calls_.find(cookie);
  if (it == calls_.end()) return;
  Call& call = *it->second;
  if (id == call.b_invite) {
    if (call.state == Call::State::kAnswered || call.state == Call::State::kConfirmed) return;
    // The transaction is gone: nothing is left for a CANCEL to reach.
    call.b_invite = proto::kNoTransaction;
    OnInviteFinalFailure(call, 408, "Request Timeout", nullptr);
    return;
  }
  auto relay = call.relays.find(id);
  if (relay == call.relays.end()) return;
  Call::Relay r = std::move(relay->second);
  call.relays.erase(relay);
  std::string out = r.head.Start(408, "Request Timeout", {});
  AppendBody(out, {}, {});
  transactions_->Respond(r.server, 408, std::move(out));
  if (r.method == Method::kInvite) call.reinvite_pending = false;
}

void CallEngine::OnCancel(TransactionId invite, const SipMessage& cancel) {
  Call* found = FindByCallId(cancel.call_id());
  if (found == nullptr || found->a_invite != invite) return;
  Call& call = *found;
  if (call.a_final_sent) return;
  CancelCall(call);
}

void CallEngine::CancelCall(Call& call) {
  call.cancelled = true;
  call.setup().parked = false;
  context_.timers->Cancel(&call.target_timer);
  AnswerCaller(call, 487, "Request Terminated", {}, {}, {});
  if (call.in_redirect) {
    context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kCancelled)].Inc();
  }
  if (CancelBLeg(call)) {
    // The B-leg's 487 ends the call; if it never comes, this guard does.
    ArmTimer(call, &call.cancel_guard, call.config->timers.t1 * 64, kCancelGuard);
    return;
  }
  FinishSearch(call);
}

bool CallEngine::CancelBLeg(Call& call) {
  if (call.b_invite == proto::kNoTransaction || call.b_cancel_sent) return false;
  call.b_cancel_sent = true;
  context_.counters->requests_sent[static_cast<size_t>(Method::kCancel)].Inc();
  transactions_->CancelInvite(call.b_invite);
  return true;
}

std::string CallEngine::StartDialogRequest(const Dialog& dialog, std::string_view method_text,
                                           std::string_view branch, uint32_t cseq) const {
  // RFC 3261 12.2.1.1: Request-URI the remote target, the route set as Route, the
  // dialog's From, To and Call-ID.
  std::string out;
  out.reserve(512);
  StrAppend(&out, method_text, " ", dialog.remote_target, " SIP/2.0\r\nVia: SIP/2.0/",
            proto::TransportName(dialog.peer.transport), " ",
            HostPortFor(dialog.peer.transport), ";branch=",
            branch, ";rport\r\n");
  for (const std::string& route : dialog.route_set) AppendHeader(out, "Route", route);
  StrAppend(&out, "Max-Forwards: 70\r\n");
  AppendHeader(out, "From", dialog.local_party);
  AppendHeader(out, "To", dialog.remote_party);
  AppendHeader(out, "Call-ID", dialog.call_id);
  StrAppend(&out, "CSeq: ", cseq, " ", method_text, "\r\n");
  return out;
}

std::string CallEngine::SendAck(const Dialog& dialog, uint32_t cseq, std::string_view body,
                                std::string_view content_type) {
  std::string out = StartDialogRequest(dialog, "ACK", tokens_.Branch('k'), cseq);
  AppendBody(out, body, content_type);
  context_.counters->requests_sent[static_cast<size_t>(Method::kAck)].Inc();
  Send(dialog.peer, out);
  return out;
}

void CallEngine::SendAckToB(Call& call, uint32_t cseq, std::string_view body,
                            std::string_view content_type) {
  std::string out = SendAck(call.b, cseq, body, content_type);
  if (cseq == call.b_invite_cseq) call.b_ack = std::move(out);
}

void CallEngine::ResendBAck(Call& call) {
  if (!call.b_ack.empty()) {
    Send(call.b.peer, call.b_ack);
    return;
  }
  // Past 64*T1 the stored ACK is gone; a callee that is still retransmitting gets a new
  // one (same dialog and CSeq; an ACK for a 2xx is its own transaction).
  SendAck(call.b, call.b_invite_cseq, {}, {});
}

void CallEngine::OnAck(const SipMessage& ack, const Peer& source) {
  context_.counters->requests_received[static_cast<size_t>(Method::kAck)].Inc();
  Call* found = FindByCallId(ack.call_id());
  if (found == nullptr) return;
  Call& call = *found;
  const bool from_a = ack.call_id() == call.a.call_id;
  if (from_a && call.state == Call::State::kAnswered &&
      ack.cseq().number == call.a_invite_cseq) {
    // The caller confirmed our 2xx: stop retransmitting and ACK the callee end to end,
    // with the caller's SDP when the offer came late (in the 2xx).
    context_.timers->Cancel(&call.a_2xx_timer);
    call.state = Call::State::kConfirmed;
    SendAckToB(call, call.b_invite_cseq, ack.body(), ack.content_type());
    call.b_acked = true;
    ReleaseSetupState(call);
    return;
  }
  if (call.reinvite_pending && from_a == call.reinvite_from_a &&
      ack.cseq().number == call.reinvite_ack_cseq_in) {
    call.reinvite_pending = false;
    context_.timers->Cancel(&call.reinvite_2xx_timer);
    SendAck(from_a ? call.b : call.a, call.reinvite_ack_cseq_out, ack.body(),
            ack.content_type());
  }
}

TransactionId CallEngine::SendInDialogRequest(Call& call, bool to_b_leg, Method method,
                                              std::string_view method_text,
                                              std::string_view extra, std::string_view body,
                                              std::string_view content_type) {
  Dialog& dialog = to_b_leg ? call.b : call.a;
  std::string branch = tokens_.Branch('r');
  const uint32_t cseq = dialog.local_cseq++;
  std::string out = StartDialogRequest(dialog, method_text, branch, cseq);
  if (method == Method::kInvite || method == Method::kUpdate || method == Method::kNotify ||
      method == Method::kRefer || method == Method::kSubscribe)
    AppendHeader(out, "Contact", ContactFor(dialog.peer.transport));
  StrAppend(&out, extra);
  AppendBody(out, body, content_type);
  context_.counters->requests_sent[static_cast<size_t>(method)].Inc();
  if (method == Method::kInvite) call.reinvite_ack_cseq_out = cseq;
  return transactions_->SendRequest(std::move(out), branch, method, dialog.peer, call.cookie);
}

void CallEngine::ByeBothLegs(Call& call) {
  SendInDialogRequest(call, true, Method::kBye, "BYE", {}, {}, {});
  SendInDialogRequest(call, false, Method::kBye, "BYE", {}, {}, {});
}

void CallEngine::OnInDialogRequest(Call& call, TransactionId id, const SipMessage& request,
                                   const Peer& source) {
  const bool from_a = request.call_id() == call.a.call_id;
  Dialog& incoming = from_a ? call.a : call.b;
  const Method method = request.method();
  if (from_a && call.state != Call::State::kConfirmed && call.state != Call::State::kAnswered &&
      method != Method::kBye) {
    RespondStateless(id, request, 481, "Call/Transaction Does Not Exist", {});
    return;
  }
  if (!from_a && (call.state == Call::State::kTrying ||
                  (method == Method::kBye && call.state == Call::State::kEarly))) {
    // No dialog with the callee before it answers with a tag; and RFC 3261 15: a callee
    // must not send BYE before its 2xx. The INVITE still owes us a final response (or
    // Timer C ends it).
    RespondStateless(id, request, 481, "Call/Transaction Does Not Exist", {});
    return;
  }
  incoming.remote_cseq = request.cseq().number;
  if (method == Method::kBye) {
    // Answer at once and release the other leg: a BYE is never refused.
    RespondStateless(id, request, 200, "OK", {});
    if (from_a && !call.a_final_sent) {
      // A BYE in the caller's early dialog ends the INVITE like a CANCEL (RFC 3261 15).
      CancelCall(call);
      return;
    }
    if (call.state == Call::State::kAnswered || call.state == Call::State::kConfirmed) {
      SendInDialogRequest(call, from_a, Method::kBye, "BYE", {}, {}, {});
    }
    EndCall(call, CallOutcome::kAnswered);
    return;
  }
  if (method == Method::kInvite || method == Method::kUpdate) {
    if (call.reinvite_pending) {
      RespondStateless(id, request, 491, "Request Pending", "Retry-After: 1\r\n");
      return;
    }
  }
  if (method == Method::kInvite && !from_a) {
    // Refresh where the callee can be reached; the route set stays (RFC 3261 12.2).
    if (request.contact_count())
      call.b.remote_target = std::string(request.contacts()[0].address.uri.text);
  } else if (method == Method::kInvite && request.contact_count()) {
    call.a.remote_target = std::string(request.contacts()[0].address.uri.text);
  }
  const TransactionId relayed =
      SendInDialogRequest(call, from_a, method, request.method_text(),
                          PassedHeaders(request, call.config->headers,
                                        IdentityFrom(call.config->access, source)),
                          request.body(), request.content_type());
  if (relayed == proto::kNoTransaction) {
    RespondStateless(id, request, 500, "Server Internal Error", {});
    return;
  }
  Call::Relay& relay = call.relays[relayed];
  relay.server = id;
  relay.head = ResponseHead::Capture(request, *transactions_->ResponseDestination(id));
  relay.method = method;
  relay.from_a = from_a;
  if (method == Method::kInvite) {
    call.reinvite_pending = true;
    call.reinvite_from_a = from_a;
    call.reinvite_ack_cseq_in = request.cseq().number;
  }
}

void CallEngine::OnRelayedResponse(Call& call, TransactionId id, const SipMessage& response) {
  auto it = call.relays.find(id);
  if (it == call.relays.end()) return;
  const int status = response.status_code();
  if (status == 100) return;
  Call::Relay& relay = it->second;
  if (relay.server == proto::kNoTransaction) {
    if (status >= 200) call.relays.erase(it);
    return;
  }
  std::string out = relay.head.Start(status, response.reason_phrase(), {});
  if (status < 300 && (relay.method == Method::kInvite || relay.method == Method::kUpdate))
    AppendHeader(out, "Contact", ContactFor((relay.from_a ? call.a.peer : call.b.peer).transport));
  if (status >= 200 && status < 300 && relay.method == Method::kInvite) {
    // The answering leg's 2xx is ACKed when the offering leg ACKs ours (end to end).
    Dialog& answering = relay.from_a ? call.b : call.a;
    if (response.contact_count())
      answering.remote_target = std::string(response.contacts()[0].address.uri.text);
  } else if (status >= 300 && relay.method == Method::kInvite) {
    call.reinvite_pending = false;
  }
  StrAppend(&out, PassedHeaders(response, call.config->headers,
                                IdentityFrom(call.config->access,
                                             relay.from_a ? call.b.peer : call.a.peer)));
  AppendBody(out, response.body(), response.content_type());
  context_.counters->responses_sent[status / 100].Inc();
  if (status >= 200 && status < 300 && relay.method == Method::kInvite) {
    // Like the first 2xx, a re-INVITE's 2xx is ours to retransmit until its ACK.
    call.reinvite_2xx = out;
    call.reinvite_2xx_peer = *transactions_->ResponseDestination(relay.server);
    call.reinvite_2xx_interval = call.config->timers.t1;
    call.reinvite_2xx_deadline = context_.clock->Now() + call.config->timers.t1 * 64;
    ArmTimer(call, &call.reinvite_2xx_timer, call.reinvite_2xx_interval, kReInvite2xxRetransmit);
  }
  transactions_->Respond(relay.server, status, std::move(out));
  if (status >= 200) call.relays.erase(it);
}

void CallEngine::OnStrayResponse(const SipMessage& response, const Peer& source) {
  context_.counters->responses_received[response.status_code() / 100].Inc();
  if (response.cseq().method != Method::kInvite || response.status_code() / 100 != 2) return;
  // A 2xx retransmitted after its transaction ended: re-send our ACK if we know the call.
  Call* call = FindByCallId(response.call_id());
  if (call != nullptr && call->b_acked && response.cseq().number == call->b_invite_cseq) {
    ResendBAck(*call);
    return;
  }
}

void CallEngine::SendA2xx(Call& call) { Send(call.a_response_peer, call.setup().a_2xx); }

void CallEngine::OnTimer(uint32_t kind, uint64_t cookie) {
  if (kind == kProbe) {
    probe_timer_ = {};
    ProbeNextHops();
    return;
  }
  auto it = calls_.find(cookie);
  if (it == calls_.end()) return;
  Call& call = *it->second;
  switch (kind) {
    case kTimerC:
      call.timer_c = {};
      if (call.state == Call::State::kTrying || call.state == Call::State::kEarly) {
        // No answer in time: cancel the B-leg and tell the caller (RFC 3261 16.8).
        call.cancelled = true;
        CancelBLeg(call);
        AnswerCaller(call, 408, "Request Timeout",
                     "Reason: SIP;cause=408;text=\"no answer\"\r\n", {}, {});
        EndCall(call, CallOutcome::kNoAnswer);
      }
      return;
    case kTargetTimeout:
      call.target_timer = {};
      if ((call.state == Call::State::kTrying || call.state == Call::State::kEarly) &&
          call.in_redirect && !call.cancelled) {
        // This target rang too long: cancel it and move on.
        CancelBLeg(call);
        call.b_invite = proto::kNoTransaction;  // its 487 is no longer ours to relay
        OnInviteFinalFailure(call, 408, "Request Timeout", nullptr);
      }
      return;
    case kA2xxRetransmit:
      call.a_2xx_timer = {};
      if (call.state != Call::State::kAnswered) return;
      if (context_.clock->Now() >= call.setup().a_2xx_deadline) {
        // No ACK within 64*T1 (RFC 3261 13.3.1.4): confirm the callee, then BYE both legs.
        SendAckToB(call, call.b_invite_cseq, {}, {});
        call.b_acked = true;
        call.state = Call::State::kConfirmed;
        ByeBothLegs(call);
        EndCall(call, CallOutcome::kAnswered);
        return;
      }
      SendA2xx(call);
      ++call.setup().a_2xx_sends;
      context_.counters->core_retransmissions_sent.Inc();
      call.setup().a_2xx_interval = std::min<proto::Duration>(call.setup().a_2xx_interval * 2,
                                                      call.config->timers.t2);
      // The last wait ends exactly at 64*T1, not at the next doubling.
      ArmTimer(call, &call.a_2xx_timer,
               std::min<proto::Duration>(call.setup().a_2xx_interval,
                                         call.setup().a_2xx_deadline - context_.clock->Now()),
               kA2xxRetransmit);
      return;
    case kMaxDuration:
      call.duration_timer = {};
      if (call.state == Call::State::kConfirmed || call.state == Call::State::kAnswered) {
        ByeBothLegs(call);
        EndCall(call, CallOutcome::kAnswered);
      }
      return;
    case kReInvite2xxRetransmit:
      call.reinvite_2xx_timer = {};
      if (!call.reinvite_pending || context_.clock->Now() >= call.reinvite_2xx_deadline) return;
      Send(call.reinvite_2xx_peer, call.reinvite_2xx);
      context_.counters->core_retransmissions_sent.Inc();
      call.reinvite_2xx_interval =
          std::min<proto::Duration>(call.reinvite_2xx_interval * 2, call.config->timers.t2);
      ArmTimer(call, &call.reinvite_2xx_timer,
               std::min<proto::Duration>(call.reinvite_2xx_interval,
                                         call.reinvite_2xx_deadline - context_.clock->Now()),
               kReInvite2xxRetransmit);
      return;
    case kCancelGuard:
      call.cancel_guard = {};
      FinishSearch(call);
      return;
    case kForgetBAck:
      call.b_ack_timer = {};
      std::string().swap(call.b_ack);
      return;
    default:
      context_.counters->internal_bugs.Inc();
      return;
  }
}

void CallEngine::EndCall(Call& call, CallOutcome outcome) {
  if (call.state == Call::State::kEnding) return;
  const bool had_dialogs =
      call.state == Call::State::kAnswered || call.state == Call::State::kConfirmed;
  if (!call.a_final_sent) {
    // Every path that ends a call answers the caller first; one that did not would leave
    // the caller's INVITE transaction waiting forever.
    context_.counters->internal_bugs.Inc();
    AnswerCaller(call, 500, "Server Internal Error", {}, {}, {});
  }
  call.state = Call::State::kEnding;
  // RFC 3261 15.1.2: requests still waiting for the other leg's answer get 487; their
  // server transactions would otherwise wait for the core forever.
  for (auto& [client, relay] : call.relays) {
    // An INVITE still in flight would wait for its final response forever: cancel it.
    if (relay.method == Method::kInvite) transactions_->CancelInvite(client);
    if (relay.server == proto::kNoTransaction) continue;
    std::string out = relay.head.Start(487, "Request Terminated", {});
    AppendBody(out, {}, {});
    context_.counters->responses_sent[4].Inc();
    transactions_->Respond(relay.server, 487, std::move(out));
  }
  call.relays = {};
  context_.timers->Cancel(&call.timer_c);
  context_.timers->Cancel(&call.target_timer);
  context_.timers->Cancel(&call.a_2xx_timer);
  context_.timers->Cancel(&call.duration_timer);
  context_.timers->Cancel(&call.cancel_guard);
  context_.timers->Cancel(&call.reinvite_2xx_timer);
  context_.timers->Cancel(&call.b_ack_timer);
  if (had_dialogs) context_.counters->dialogs_active.Dec(2);
  if (call.held_route_load != nullptr) call.held_route_load->calls.Release();
  call.held_route_load = nullptr;
  if (call.source_counted && context_.call_limits != nullptr)
    context_.call_limits->per_source.Release(call.source_address);
  call.source_counted = false;
  context_.counters->calls_ended[static_cast<size_t>(outcome)].Inc();
  context_.counters->calls_active.Dec();
  if (call.in_redirect && context_.call_records != nullptr) WriteCallRecord(call, outcome);
  if (outcome != CallOutcome::kAnswered && LogEnabled(LogLevel::kInfo)) {
    // Failed calls are what an operator greps for; a storm of them is rate-limited.
    static LogRateLimit limit(50);
    uint64_t suppressed = 0;
    if (limit.Allow(&suppressed))
      WriteLogLine(LogLevel::kInfo,
                   StrCat("call ended call_id=\"", call.a.call_id, "\" outcome=",
                          CallOutcomeName(outcome), " status=",
                          call.setup_view().best_status),
                   suppressed);
  }
  calls_by_call_id_.erase(call.a.call_id);
  calls_by_call_id_.erase(call.b.call_id);
  auto it = calls_.find(call.cookie);
  if (it != calls_.end()) {
    // Freed after the current callback returns (Envoy's deferred delete).
    ended_.push_back(std::move(it->second));
    calls_.erase(it);
  }
}

void CallEngine::LearnPermanentRedirect(std::string_view request_uri, std::string_view target,
                                        proto::TimePoint expires) {
  moved_permanently_.Learn(request_uri, target, expires, config_->redirect.cache_301.entries,
                           context_.clock->Now());
}

void CallEngine::CollectEndedCalls() { ended_.clear(); }

void CallEngine::ReleaseSetupState(Call& call) {
  // A confirmed call may be held for hours: keep only what its dialogs need. The hops a
  // redirected call's record lists are all final by now, so they are written out once
  // and the search itself is freed.
  if (call.relays.empty()) call.relays = {};  // frees the table; pending relays stay
  ArmTimer(call, &call.b_ack_timer, call.config->timers.t1 * 64, kForgetBAck);
  if (call.in_redirect && context_.call_records != nullptr && call.setup_state != nullptr)
    call.redirect_record = RedirectRecord(*call.setup_state);
  call.setup_state.reset();
}

void CallEngine::EndAllCalls() {
  std::vector<Call*> live;
  for (auto& [cookie, call] : calls_) live.push_back(call.get());
  for (Call* call : live) {
    if (call->state == Call::State::kAnswered || call->state == Call::State::kConfirmed) {
      if (!call->b_acked) SendAckToB(*call, call->b_invite_cseq, {}, {});
      ByeBothLegs(*call);
      EndCall(*call, CallOutcome::kAnswered);
      continue;
    }
    if (call->state == Call::State::kEnding) continue;
    call->cancelled = true;
    CancelBLeg(*call);
    AnswerCaller(*call, 503, "Service Unavailable",
                 "Retry-After: 5\r\nReason: SIP;cause=503;text=\"shutting down\"\r\n", {}, {});
    EndCall(*call, CallOutcome::kOverload);
  }
}

void CallEngine::EndAttempt(Call& call) {
  if (call.setup().current_target < 0) return;
  const size_t index = static_cast<size_t>(call.setup().current_target);
  if (index < call.setup().attempt_started.size())
    call.setup().attempt_took[index] = context_.clock->Now() - call.setup().attempt_started[index];
}

void CallEngine::WriteCallRecord(const Call& call, CallOutcome outcome) {
  // One line, key=value, so log shippers parse it without a schema. The Call-ID is the
  // caller's: that is what the caller's support desk will quote.
  const std::string line = StrCat(
      "call-record call_id=\"", call.a.call_id, "\" outcome=", CallOutcomeName(outcome),
      " duration_ms=",
      std::chrono::duration_cast<std::chrono::milliseconds>(context_.clock->Now() - call.started)
          .count(),
      call.setup_state != nullptr ? RedirectRecord(*call.setup_state) : call.redirect_record);
  context_.call_records->OnCallRecord(line);
}

std::string CallEngine::RedirectRecord(const CallSetup& setup) {
  const auto ms = [](proto::Duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  std::string out = StrCat(" request_uri=\"", setup.a_request_uri, "\" depth=",
                           setup.max_depth_seen, " loops=", setup.loops, " refused=",
                           setup.refused, " hops=[");
  bool first = true;
  for (uint16_t index : setup.targets.attempt_order()) {
    const Target& target = setup.targets.at(index);
    if (target.is_original()) continue;
    StrAppend(&out, first ? "" : ",", "{target=\"", target.request_uri, "\" q=",
              target.q_millis / 1000, ".", static_cast<char>('0' + target.q_millis / 100 % 10),
              static_cast<char>('0' + target.q_millis / 10 % 10),
              static_cast<char>('0' + target.q_millis % 10), " state=",
              TargetStateName(target.state), " status=", target.status);
    if (index < setup.attempt_took.size())
      StrAppend(&out, " answer_ms=", ms(setup.attempt_took[index]));
    out += '}';
    first = false;
  }
  out += ']';
  return out;
}

}  // namespace b2bua
