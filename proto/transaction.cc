#include "proto/transaction.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "proto/sip_builder.h"
#include "proto/sip_chars.h"
#include "proto/sip_parser.h"
#include "proto/str_util.h"

namespace b2bua::proto {
namespace {

// RFC 3261 8.1.1.7: a branch starting with this was made by an RFC 3261 element and is
// unique, so it alone (plus sent-by and method) names the transaction.
// Separates the parts of a matching key. No SIP header value or URI can contain it, so
// two different tuples never produce the same key.
constexpr char kKeySeparator = '\x1f';
constexpr uint16_t kDefaultSipPort = 5060;
// RFC 3261 17.1.1.2: "at least 32 seconds" for unreliable transports, whatever T1 is.
constexpr Duration kTimerDUnreliable = std::chrono::seconds(32);
constexpr int kAckMaxForwards = 70;

// Timer kinds handed to the wheel. One transaction has at most one retransmission timer
// (A, E or G) and one lifetime timer (B, F, H, then D, I, J, K, L or M) armed at a time.
enum TimerKind : uint32_t {
  kTimerA = 1,
  kTimerB,
  kTimerD,
  kTimerE,
  kTimerF,
  kTimerG,
  kTimerH,
  kTimerI,
  kTimerJ,
  kTimerK,
  kTimerL,
  kTimerM,
};

enum class Role : uint8_t { kInviteClient, kNonInviteClient, kInviteServer, kNonInviteServer };

// Terminated is not a state here: a transaction that reaches it is destroyed at once.
enum class State : uint8_t {
  kCalling,     // INVITE client
  kTrying,      // non-INVITE client and server
  kProceeding,  // all four
  kCompleted,   // all four
  kConfirmed,   // INVITE server
  kAccepted,    // INVITE client and server (RFC 6026)
};

bool IsClient(Role role) { return role == Role::kInviteClient || role == Role::kNonInviteClient; }

bool HasMagicCookie(std::string_view branch) { return branch.starts_with(kBranchMagicCookie); }

void AppendKeyPart(std::string* key, std::string_view part) {
  key->append(part);
  key->push_back(kKeySeparator);
}

void AppendKeyNumber(std::string* key, uint64_t value) { StrAppend(key, value, kKeySeparator); }

// The method as the key spells it: the canonical name for known methods so that a
// request's method and a response's CSeq method produce the same bytes.
std::string_view KeyMethod(Method method, std::string_view text) {
  std::string_view name = MethodName(method);
  return name.empty() ? text : name;
}

// A To tag for the answers the layer writes itself (200 or 481 to CANCEL) when no
// response of the INVITE carried one yet: derived from the request so that it is stable.
std::string DerivedToTag(const SipMessage& request) {
  uint64_t hash = 1469598103934665603ULL;  // FNV-1a
  auto mix = [&](std::string_view s) {
    for (char c : s) hash = (hash ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
    hash = (hash ^ 0xff) * 1099511628211ULL;
  };
  mix(request.call_id());
  if (request.top_via() != nullptr) mix(request.top_via()->branch);
  mix(request.from().tag);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string tag(16, '0');
  for (int i = 0; i < 16; ++i) tag[i] = kHex[(hash >> (i * 4)) & 0xf];
  return tag;
}

// Room for rewriting one header line of `message` in canonical form: a compact name
// ("i") becomes the long one ("Call-ID"), and ": " and CRLF are always written.
constexpr size_t kHeaderRewriteSlack = 16;

// Writes a response the layer originates (100 Trying, answers to CANCEL) into a string
// sized for it: a response copies at most the request's Via, From, To, Call-ID and CSeq.
std::string BuildResponse(const SipMessage& request, int code, std::string_view reason,
                          std::string_view to_tag) {
  std::string out(request.raw().size() + request.header_count() * kHeaderRewriteSlack +
                      reason.size() + to_tag.size() + 64,
                  '\0');
  MessageWriter writer(out.data(), out.size());
  WriteResponse(request, code, reason, to_tag, {}, writer);
  if (writer.overflowed()) return {};
  out.resize(writer.size());
  return out;
}

// clear() and move-assigning an empty string keep the capacity; a held call must not pin
// the set-up's message bytes in a recycled slot.
void ReleaseBytes(std::string& bytes) { std::string().swap(bytes); }

struct Transaction {
  std::string key;             // this transaction's entry in client_index_ or server_index_
  std::string request;         // client: the bytes (re)transmitted
  std::string response;        // server: the last response sent; INVITE client: our ACK
  std::string branch;          // client: top Via branch, which its CANCEL shares
  std::string to_tag;          // INVITE server: To tag of the last response sent
  std::string pending_cancel;  // INVITE client: CANCEL held until a provisional arrives
  Peer peer;                   // client: destination; server: where responses go
  uint64_t cookie = 0;         // client: handed back to the TU
  TimerId retransmit_timer;    // A, E or G
  TimerId lifetime_timer;      // B, F or H, then D, I, J, K, L or M
  Duration interval{};         // the current retransmission interval
  uint32_t generation = 1;     // bumped when the slot is freed; never 0
  Role role = Role::kNonInviteServer;
  State state = State::kTrying;
  bool live = false;
  bool legacy = false;            // server: RFC 2543 peer, matched by the fallback key
  bool cancel_requested = false;  // INVITE client: SendCancel was called
  bool layer_owned = false;       // CANCEL client: its responses are absorbed
};

}  // namespace

/// The state machines behind TransactionLayer. Owning shard only.
///
/// Re-entrancy: every TU callback may call back into the layer, which may grow `slots_`.
/// No reference or iterator into `slots_` or the indexes is held across a callback: each
/// handler finishes its state changes first, copies the id and cookie, and calls the TU
/// last. MessageSink::Send must not call back into the layer.
class TransactionLayer::Impl final : public TimerHandler {
 public:
  Impl(const TransactionConfig& config, TimerWheel& timers, MessageSink& sink,
       TransactionUser& user, TransactionCounters& counters)
      : config_(config),
        timers_(timers),
        sink_(sink),
        user_(user),
        counters_(counters),
        scratch_(std::make_unique<SipMessage>()) {}

  ~Impl() {
    // The wheel keeps a raw pointer to this handler.
    for (Transaction& t : slots_) {
      timers_.Cancel(&t.retransmit_timer);
      timers_.Cancel(&t.lifetime_timer);
    }
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void OnMessage(const SipMessage& message, const Peer& source) {
    if (message.is_request()) {
      OnRequestMessage(message, source);
    } else {
      OnResponseMessage(message, source);
    }
  }

  TransactionId SendRequest(std::string request, std::string_view branch, Method method,
                            const Peer& destination, uint64_t cookie) {
    return StartClient(std::move(request), branch, method, destination, cookie, false);
  }

  void CancelInvite(TransactionId invite, std::string_view extra_headers) {
    uint32_t index;
    Transaction* t = Find(invite, &index);
    if (t == nullptr || t->role != Role::kInviteClient || t->cancel_requested) return;
    if (t->state != State::kCalling && t->state != State::kProceeding) return;
    std::string cancel = BuildFromInvite(index, "CANCEL", nullptr, extra_headers);
    if (!cancel.empty()) SendCancel(invite, std::move(cancel));
  }

  void SendCancel(TransactionId invite, std::string cancel) {
    uint32_t index;
    Transaction* t = Find(invite, &index);
    if (t == nullptr || t->role != Role::kInviteClient || t->cancel_requested) return;
    switch (t->state) {
      case State::kCalling:
        // RFC 3261 9.1: a CANCEL must not be sent before a provisional response.
        t->cancel_requested = true;
        t->pending_cancel = std::move(cancel);
        return;
      case State::kProceeding:
        t->cancel_requested = true;
        t->pending_cancel = std::move(cancel);
        StartCancel(index);
        return;
      default:
        // A final response already arrived: there is nothing left to cancel.
        return;
    }
  }

  bool Respond(TransactionId id, int status_code, std::string response) {
    uint32_t index;
    Transaction* t = Find(id, &index);
    if (t == nullptr || IsClient(t->role)) return false;
    if (status_code < 100 || status_code > 699) return false;
    if (t->state != State::kTrying && t->state != State::kProceeding) return false;
    RespondOn(index, status_code, std::move(response));
    return true;
  }

  const Peer* ResponseDestination(TransactionId id) const {
    const Transaction* t = Find(id);
    if (t == nullptr || IsClient(t->role)) return nullptr;
    return &t->peer;
  }

  size_t size() const { return live_; }

  void OnTimer(uint32_t kind, uint64_t cookie) override {
    uint32_t index;
    Transaction* t = Find(cookie, &index);
    if (t == nullptr) return;
    switch (kind) {
      case kTimerA:
      case kTimerE:
      case kTimerG:
        t->retransmit_timer = {};
        Retransmit(index, kind);
        return;
      default:
        t->lifetime_timer = {};
        Expire(index, kind);
        return;
    }
  }

 private:
  Duration SixtyFourT1() const { return config_.t1 * 64; }

  TransactionId IdOf(uint32_t index) const {
    return (uint64_t{slots_[index].generation} << 32) | (uint64_t{index} + 1);
  }

  Transaction* Find(TransactionId id, uint32_t* index_out = nullptr) {
    return const_cast<Transaction*>(std::as_const(*this).Find(id, index_out));
  }

  const Transaction* Find(TransactionId id, uint32_t* index_out = nullptr) const {
    uint64_t low = id & 0xffffffffu;
    if (low == 0 || low > slots_.size()) return nullptr;
    const Transaction& t = slots_[low - 1];
    if (!t.live || t.generation != static_cast<uint32_t>(id >> 32)) return nullptr;
    if (index_out != nullptr) *index_out = static_cast<uint32_t>(low - 1);
    return &t;
  }

  uint32_t Allocate(Role role, State state) {
    uint32_t index;
    if (!free_slots_.empty()) {
      index = free_slots_.back();
      free_slots_.pop_back();
    } else {
      index = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    Transaction& t = slots_[index];
    t.live = true;
    t.role = role;
    t.state = state;
    ++live_;
    return index;
  }

  void Destroy(uint32_t index) {
    Transaction& t = slots_[index];
    timers_.Cancel(&t.retransmit_timer);
    timers_.Cancel(&t.lifetime_timer);
    (IsClient(t.role) ? client_index_ : server_index_).erase(t.key);
    uint32_t generation = t.generation + 1;
    if (generation == 0) generation = 1;  // 0 would make the id look like kNoTransaction's
    // Swapping with a fresh value frees the stored messages (assigning would keep their
    // capacity in the slot, which is reused only at the next peak).
    Transaction fresh;
    std::swap(t, fresh);
    t.generation = generation;
    free_slots_.push_back(index);
    --live_;
  }

  void Arm(uint32_t index, TimerId* timer, Duration delay, TimerKind kind) {
    timers_.Cancel(timer);
    *timer = timers_.Schedule(delay, this, kind, IdOf(index));
  }

  // --- Matching keys -------------------------------------------------------------------

  // RFC 3261 17.2.3. `method` is the method of the transaction looked for (INVITE for an
  // ACK or for the INVITE a CANCEL names). `to_tag` only counts in the RFC 2543 fallback.
  static void BuildServerKey(const SipMessage& request, std::string_view method,
                             std::string_view to_tag, bool legacy, std::string* key) {
    const Via& via = *request.top_via();
    key->clear();
    if (!legacy) {
      key->push_back('S');
      AppendKeyPart(key, via.branch);
      size_t host_begin = key->size();
      AppendKeyPart(key, via.host);
      // Host names compare case-insensitively (RFC 3261 19.1.4).
      std::transform(key->begin() + host_begin, key->end(), key->begin() + host_begin,
                     ToLowerAscii);
      AppendKeyNumber(key, via.port);
      AppendKeyPart(key, method);
      return;
    }
    // RFC 3261 17.2.3, requests from RFC 2543 elements: Request-URI, To tag, From tag,
    // Call-ID, CSeq and top Via; the method stands for the CSeq method.
    key->push_back('L');
    AppendKeyPart(key, method);
    AppendKeyPart(key, request.request_uri().text);
    AppendKeyPart(key, to_tag);
    AppendKeyPart(key, request.from().tag);
    AppendKeyPart(key, request.call_id());
    AppendKeyNumber(key, request.cseq().number);
    AppendKeyPart(key, via.text);
  }

  // RFC 3261 17.1.3: the branch we put in the top Via, and the CSeq method (so that a
  // CANCEL's responses do not match the INVITE it cancels).
  static void BuildClientKey(std::string_view branch, std::string_view method,
                             std::string* key) {
    key->clear();
    key->push_back('C');
    AppendKeyPart(key, branch);
    AppendKeyPart(key, method);
  }

  // --- Requests ------------------------------------------------------------------------

  void OnRequestMessage(const SipMessage& request, const Peer& source) {
    // ValidateRequest guarantees both; a caller that skipped it gets the message dropped.
    if (request.top_via() == nullptr || !request.has_cseq()) return;
    if (request.method() == Method::kAck) {
      OnAckRequest(request, source);
      return;
    }
    const bool legacy = !HasMagicCookie(request.top_via()->branch);
    BuildServerKey(request, KeyMethod(request.method(), request.method_text()),
                   request.to().tag, legacy, &key_);
    if (auto it = server_index_.find(key_); it != server_index_.end()) {
      AbsorbRequest(it->second);
      return;
    }
    if (request.method() == Method::kCancel) {
      OnCancelRequest(request, source, legacy);
      return;
    }
    const bool invite = request.method() == Method::kInvite;
    uint32_t index = CreateServer(invite ? Role::kInviteServer : Role::kNonInviteServer,
                                  request, source, legacy);
    if (invite && config_.send_100_trying) {
      // 17.2.1: answer at once so that the client stops retransmitting. WriteResponse adds
      // no To tag to a 100.
      Transaction& t = slots_[index];
      t.response = BuildResponse(request, 100, "Trying", {});
      if (!t.response.empty()) sink_.Send(t.peer, t.response);
    }
    user_.OnRequest(IdOf(index), request, source);
  }

  uint32_t CreateServer(Role role, const SipMessage& request, const Peer& source, bool legacy) {
    uint32_t index = Allocate(role, role == Role::kInviteServer ? State::kProceeding
                                                                 : State::kTrying);
    Transaction& t = slots_[index];
    t.key = key_;
    t.legacy = legacy;
    t.peer = ResponseDestinationFor(request, source);
    server_index_.emplace(t.key, index);
    ++counters_.server_created;
    return index;
  }

  // RFC 3261 18.2.2 and RFC 3581. Reliable: back on the connection the request came in
  // on. UDP: to the source IP, since a Via host may be a name or a private address; the
  // port is the source port when the client asked for rport, else the Via port.
  static Peer ResponseDestinationFor(const SipMessage& request, const Peer& source) {
    Peer to = source;
    if (source.reliable()) return to;
    const Via& via = *request.top_via();
    if (!via.has_rport) to.address.set_port(via.port != 0 ? via.port : kDefaultSipPort);
    return to;
  }

  // A retransmitted request: answered from state, never passed to the TU.
  void AbsorbRequest(uint32_t index) {
    Transaction& t = slots_[index];
    ++counters_.retransmissions_absorbed;
    // Confirmed and Accepted absorb silently: the 2xx is the core's to retransmit, and
    // after the ACK nothing is owed. Trying has nothing to re-send yet.
    bool resend = (t.state == State::kProceeding || t.state == State::kCompleted) &&
                  !t.response.empty();
    if (!resend) return;
    sink_.Send(t.peer, t.response);
    ++counters_.retransmissions_sent;
  }

  void OnAckRequest(const SipMessage& ack, const Peer& source) {
    uint32_t index;
    if (FindInviteForAck(ack, &index)) {
      Transaction& t = slots_[index];
      if (t.state == State::kCompleted) {
        // 17.2.1: the ACK for our non-2xx final ends the retransmissions; Timer I absorbs
        // ACK retransmissions over UDP.
        t.state = State::kConfirmed;
        timers_.Cancel(&t.retransmit_timer);
        ReleaseBytes(t.response);
        if (t.peer.reliable()) {
          Destroy(index);
        } else {
          Arm(index, &t.lifetime_timer, config_.t4, kTimerI);
        }
        return;
      }
      if (t.state == State::kConfirmed) {
        ++counters_.retransmissions_absorbed;
        return;
      }
      // Proceeding or Accepted: an ACK that reuses the INVITE's branch for a 2xx belongs
      // to the core.
    }
    user_.OnAck(ack, source);
  }

  bool FindInviteForAck(const SipMessage& ack, uint32_t* index) {
    const std::string_view invite = MethodName(Method::kInvite);
    if (HasMagicCookie(ack.top_via()->branch)) {
      BuildServerKey(ack, invite, {}, false, &key_);
      return FindServer(key_, Role::kInviteServer, index);
    }
    // RFC 2543 fallback: the ACK carries the To tag of our response, which the INVITE
    // lacked unless it was a re-INVITE. Try the INVITE's possible tags, then require the
    // ACK's tag to be the one our response carried.
    const std::string_view ack_tag = ack.to().tag;
    for (std::string_view invite_tag : {std::string_view{}, ack_tag}) {
      BuildServerKey(ack, invite, invite_tag, true, &key_);
      if (FindServer(key_, Role::kInviteServer, index) && slots_[*index].to_tag == ack_tag)
        return true;
      if (ack_tag.empty()) break;
    }
    return false;
  }

  bool FindServer(const std::string& key, Role role, uint32_t* index) const {
    auto it = server_index_.find(key);
    if (it == server_index_.end() || slots_[it->second].role != role) return false;
    *index = it->second;
    return true;
  }

  // A CANCEL that is not a retransmission: its own non-INVITE server transaction, answered
  // by the layer (RFC 3261 9.2).
  void OnCancelRequest(const SipMessage& cancel, const Peer& source, bool legacy) {
    // key_ holds the CANCEL's own key until CreateServer copies it.
    BuildServerKey(cancel, MethodName(Method::kInvite), cancel.to().tag, legacy,
                   &invite_key_);
    uint32_t invite_index;
    int code = 481;
    TransactionId invite_id = kNoTransaction;
    bool notify = false;
    std::string to_tag;
    if (FindServer(invite_key_, Role::kInviteServer, &invite_index)) {
      const Transaction& invite = slots_[invite_index];
      code = 200;
      // 9.2: the 200 to the CANCEL should carry the To tag of the INVITE's responses.
      to_tag = invite.to_tag;
      notify = invite.state == State::kProceeding;
      invite_id = IdOf(invite_index);
    } else {
      ++counters_.cancels_unmatched;
    }
    if (to_tag.empty()) to_tag = DerivedToTag(cancel);
    uint32_t index = CreateServer(Role::kNonInviteServer, cancel, source, legacy);
    std::string response = code == 200
                               ? BuildResponse(cancel, 200, "OK", to_tag)
                               : BuildResponse(cancel, 481, "Call/Transaction Does Not Exist",
                                               to_tag);
    RespondOn(index, code, std::move(response));
    if (notify) user_.OnCancel(invite_id, cancel);
  }

  // Sends `response` on server transaction `index` and moves its state. The caller has
  // checked that no final response was sent yet.
  void RespondOn(uint32_t index, int code, std::string response) {
    Transaction& t = slots_[index];
    if (t.role == Role::kInviteServer && code > 100) RememberToTag(index, response);
    // A failed send is the transport's to count: over UDP Timer G tries again, and
    // otherwise the timers still end the transaction.
    sink_.Send(t.peer, response);
    if (code < 200) {
      t.state = State::kProceeding;
      t.response = std::move(response);
      return;
    }
    if (t.role == Role::kNonInviteServer) {
      t.state = State::kCompleted;
      t.response = std::move(response);
      // Timer J absorbs request retransmissions, which only unreliable transports make.
      if (t.peer.reliable()) {
        Destroy(index);
      } else {
        Arm(index, &t.lifetime_timer, SixtyFourT1(), kTimerJ);
      }
      return;
    }
    if (code < 300) {
      // RFC 6026: the core retransmits the 2xx; Timer L absorbs INVITE retransmissions.
      t.state = State::kAccepted;
      ReleaseBytes(t.response);
      Arm(index, &t.lifetime_timer, SixtyFourT1(), kTimerL);
      return;
    }
    t.state = State::kCompleted;
    t.response = std::move(response);
    if (!t.peer.reliable()) {
      t.interval = config_.t1;
      Arm(index, &t.retransmit_timer, t.interval, kTimerG);
    }
    Arm(index, &t.lifetime_timer, SixtyFourT1(), kTimerH);
  }

  // The To tag an RFC 2543 ACK must carry and that the 200 to a CANCEL reuses.
  void RememberToTag(uint32_t index, std::string_view response) {
    ParseResult result = parser_.Parse(response, Framing::kDatagram, scratch_.get());
    if (result.ok() && scratch_->has_to()) slots_[index].to_tag.assign(scratch_->to().tag);
  }

  // --- Responses -----------------------------------------------------------------------

  void OnResponseMessage(const SipMessage& response, const Peer& source) {
    uint32_t index = 0;
    bool found = false;
    if (response.top_via() != nullptr && response.has_cseq()) {
      BuildClientKey(response.top_via()->branch,
                     KeyMethod(response.cseq().method, response.cseq().method_text), &key_);
      if (auto it = client_index_.find(key_); it != client_index_.end()) {
        index = it->second;
        found = true;
      }
    }
    if (found && slots_[index].role == Role::kInviteClient) {
      found = OnInviteResponse(index, response);
    } else if (found) {
      OnNonInviteResponse(index, response);
    }
    if (!found) {
      ++counters_.stray_responses;
      user_.OnStrayResponse(response, source);
    }
  }

  // Returns false when the response does not belong to the transaction after all.
  bool OnInviteResponse(uint32_t index, const SipMessage& response) {
    Transaction& t = slots_[index];
    const TransactionId id = IdOf(index);
    const uint64_t cookie = t.cookie;
    const int code = response.status_code();
    switch (t.state) {
      case State::kCalling:
      case State::kProceeding:
        if (code < 200) {
          if (t.state == State::kCalling) {
            // 17.1.1.2: a provisional stops retransmissions, and Timer B only guards
            // Calling; the core's Timer C covers a call that rings forever.
            t.state = State::kProceeding;
            timers_.Cancel(&t.retransmit_timer);
            timers_.Cancel(&t.lifetime_timer);
            if (t.cancel_requested) StartCancel(index);
          }
          user_.OnResponse(id, cookie, response);
          return true;
        }
        timers_.Cancel(&t.retransmit_timer);
        ReleaseBytes(t.pending_cancel);
        if (code < 300) {
          // Timer M only matches 2xx retransmissions; the INVITE is never sent again.
          t.state = State::kAccepted;
          ReleaseBytes(t.request);
          Arm(index, &t.lifetime_timer, SixtyFourT1(), kTimerM);
        } else {
          t.state = State::kCompleted;
          // 17.1.1.3: the ACK for a non-2xx final is the transaction's own.
          if (BuildAck(index, response)) SendAck(index);
          ReleaseBytes(slots_[index].request);
          if (slots_[index].peer.reliable()) {
            Destroy(index);
          } else {
            Arm(index, &slots_[index].lifetime_timer, kTimerDUnreliable, kTimerD);
          }
        }
        user_.OnResponse(id, cookie, response);
        return true;
      case State::kAccepted:
        if (code >= 200 && code < 300) {
          // RFC 6026 7.2: every 2xx goes up; the core ACKs each.
          user_.OnResponse(id, cookie, response);
          return true;
        }
        ++counters_.retransmissions_absorbed;
        return true;
      case State::kCompleted:
        if (code >= 300) {
          ++counters_.retransmissions_absorbed;
          if (!t.response.empty()) {
            SendAck(index);
            ++counters_.retransmissions_sent;
          }
          return true;
        }
        if (code >= 200) return false;  // a 2xx after our ACK: the core may ACK it
        ++counters_.retransmissions_absorbed;
        return true;
      default:
        return true;
    }
  }

  void SendAck(uint32_t index) {
    const Transaction& t = slots_[index];
    sink_.Send(t.peer, t.response);
  }

  // Builds the ACK for non-2xx final `response` into the transaction's `response` slot,
  // from the INVITE it sent (17.1.1.3).
  // The ACK for a non-2xx final (17.1.1.3) and the CANCEL (9.1) copy the INVITE's
  // Request-URI, top Via, Route, From, Call-ID and CSeq number; the ACK takes the
  // response's To (with its tag), the CANCEL the INVITE's. Empty when the stored INVITE
  // does not parse (it always should: the core wrote it).
  std::string BuildFromInvite(uint32_t index, std::string_view method,
                              const SipMessage* response, std::string_view extra_headers = {}) {
    const Transaction& t = slots_[index];
    ParseResult result = parser_.Parse(t.request, Framing::kDatagram, scratch_.get());
    const SipMessage& invite = *scratch_;
    if (!result.ok() || !invite.is_request() || invite.top_via() == nullptr) return {};
    const HeaderField* from = invite.FindHeader(HeaderId::kFrom);
    const HeaderField* to = response != nullptr ? response->FindHeader(HeaderId::kTo) : nullptr;
    if (to == nullptr) to = invite.FindHeader(HeaderId::kTo);
    if (from == nullptr || to == nullptr) return {};
    std::string out(t.request.size() + invite.header_count() * kHeaderRewriteSlack +
                        to->value.size() + extra_headers.size() + 128,
                    '\0');
    MessageWriter writer(out.data(), out.size());
    writer.RequestLine(method, invite.request_uri().text);
    writer.Header("Via", invite.top_via()->text);
    for (size_t i = 0; i < invite.header_count(); ++i) {
      const HeaderField& h = invite.headers()[i];
      if (h.id == HeaderId::kRoute) writer.Header("Route", h.value);
    }
    writer.HeaderNumber("Max-Forwards", kAckMaxForwards);
    writer.Header("From", from->value);
    writer.Header("To", to->value);
    writer.Header("Call-ID", invite.call_id());
    writer.Append("CSeq: ");
    writer.AppendNumber(invite.cseq().number);
    writer.Append(" ");
    writer.Append(method);
    writer.Append("\r\n");
    writer.Append(extra_headers);
    writer.Body({});
    if (writer.overflowed()) return {};
    out.resize(writer.size());
    return out;
  }

  bool BuildAck(uint32_t index, const SipMessage& response) {
    std::string ack = BuildFromInvite(index, "ACK", &response);
    if (ack.empty()) return false;
    slots_[index].response = std::move(ack);
    return true;
  }


  void OnNonInviteResponse(uint32_t index, const SipMessage& response) {
    Transaction& t = slots_[index];
    const TransactionId id = IdOf(index);
    const uint64_t cookie = t.cookie;
    const bool report = !t.layer_owned;
    const int code = response.status_code();
    if (t.state == State::kCompleted) {
      ++counters_.retransmissions_absorbed;
      return;
    }
    if (code < 200) {
      t.state = State::kProceeding;
    } else {
      t.state = State::kCompleted;
      timers_.Cancel(&t.retransmit_timer);
      ReleaseBytes(t.request);
      // Timer K absorbs response retransmissions, which only unreliable transports make.
      if (t.peer.reliable()) {
        Destroy(index);
      } else {
        Arm(index, &t.lifetime_timer, config_.t4, kTimerK);
      }
    }
    if (report) user_.OnResponse(id, cookie, response);
  }

  // --- Client transactions -------------------------------------------------------------

  TransactionId StartClient(std::string request, std::string_view branch, Method method,
                            const Peer& destination, uint64_t cookie, bool layer_owned) {
    if (method == Method::kAck) return kNoTransaction;
    BuildClientKey(branch, MethodName(method), &key_);
    // A reused branch would steal the other transaction's responses.
    if (client_index_.contains(key_)) return kNoTransaction;
    if (!sink_.Send(destination, request)) return kNoTransaction;
    const bool invite = method == Method::kInvite;
    uint32_t index = Allocate(invite ? Role::kInviteClient : Role::kNonInviteClient,
                              invite ? State::kCalling : State::kTrying);
    Transaction& t = slots_[index];
    t.key = key_;
    t.branch.assign(branch);  // before the move: `branch` may point into `request`
    t.request = std::move(request);
    t.peer = destination;
    t.cookie = cookie;
    t.layer_owned = layer_owned;
    client_index_.emplace(t.key, index);
    ++counters_.client_created;
    if (!destination.reliable()) {
      t.interval = config_.t1;
      Arm(index, &t.retransmit_timer, t.interval, invite ? kTimerA : kTimerE);
    }
    Arm(index, &t.lifetime_timer, SixtyFourT1(), invite ? kTimerB : kTimerF);
    return IdOf(index);
  }

  // Sends the CANCEL held by INVITE client transaction `invite_index`, which has had a
  // provisional response.
  void StartCancel(uint32_t invite_index) {
    Transaction& invite = slots_[invite_index];
    std::string cancel = std::move(invite.pending_cancel);
    invite.pending_cancel.clear();
    if (cancel.empty()) return;
    // RFC 3261 9.1: without a final response 64*T1 after the CANCEL, the INVITE is given
    // up. Timer B, which only guards Calling otherwise, does that in Proceeding.
    Arm(invite_index, &invite.lifetime_timer, SixtyFourT1(), kTimerB);
    const std::string branch = invite.branch;
    const Peer peer = invite.peer;
    // May grow slots_: `invite` is not used after this.
    StartClient(std::move(cancel), branch, Method::kCancel, peer, 0, true);
  }

  // --- Timers --------------------------------------------------------------------------

  void Retransmit(uint32_t index, uint32_t kind) {
    Transaction& t = slots_[index];
    switch (kind) {
      case kTimerA:
        if (t.state != State::kCalling) return;
        if (!sink_.Send(t.peer, t.request)) {
          FailClient(index, ClientFailure::kTransportError);
          return;
        }
        ++counters_.retransmissions_sent;
        t.interval *= 2;  // 17.1.1.2: Timer A doubles without a cap; Timer B ends it
        Arm(index, &t.retransmit_timer, t.interval, kTimerA);
        return;
      case kTimerE:
        if (t.state != State::kTrying && t.state != State::kProceeding) return;
        if (!sink_.Send(t.peer, t.request)) {
          FailClient(index, ClientFailure::kTransportError);
          return;
        }
        ++counters_.retransmissions_sent;
        // 17.1.2.2: doubling up to T2 while Trying; a provisional means the server has the
        // request, so retransmit at T2 only.
        t.interval = t.state == State::kProceeding ? config_.t2
                                                   : std::min(t.interval * 2, config_.t2);
        Arm(index, &t.retransmit_timer, t.interval, kTimerE);
        return;
      case kTimerG:
        if (t.state != State::kCompleted) return;
        sink_.Send(t.peer, t.response);
        ++counters_.retransmissions_sent;
        t.interval = std::min(t.interval * 2, config_.t2);
        Arm(index, &t.retransmit_timer, t.interval, kTimerG);
        return;
      default:
        return;
    }
  }

  void Expire(uint32_t index, uint32_t kind) {
    const Transaction& t = slots_[index];
    switch (kind) {
      case kTimerB:
        if (t.state != State::kCalling && t.state != State::kProceeding) return;
        ++counters_.timeouts;
        FailClient(index, ClientFailure::kTimeout);
        return;
      case kTimerF:
        if (t.state != State::kTrying && t.state != State::kProceeding) return;
        ++counters_.timeouts;
        FailClient(index, ClientFailure::kTimeout);
        return;
      case kTimerH:
        // The ACK never came. No TU callback: the core already considers the call over.
        if (t.state != State::kCompleted) return;
        ++counters_.timeouts;
        Destroy(index);
        return;
      case kTimerD:
      case kTimerI:
      case kTimerJ:
      case kTimerK:
      case kTimerL:
      case kTimerM:
        Destroy(index);
        return;
      default:
        return;
    }
  }

 public:
  // RFC 3261 8.1.3.1: a transport error is as good as a 503. Only transactions still
  // waiting for a first response fail; one that heard back is past the connection.
  void OnTransportFailure(const Peer& to) {
    std::vector<uint32_t> failed;
    for (uint32_t i = 0; i < slots_.size(); ++i) {
      const Transaction& t = slots_[i];
      if (t.live && IsClient(t.role) &&
          (t.state == State::kCalling || t.state == State::kTrying) &&
          t.peer.address == to.address && t.peer.transport == to.transport)
        failed.push_back(i);
    }
    for (uint32_t index : failed)
      if (slots_[index].live) FailClient(index, ClientFailure::kTransportError);
  }

 private:

  void FailClient(uint32_t index, ClientFailure failure) {
    const TransactionId id = IdOf(index);
    const uint64_t cookie = slots_[index].cookie;
    const bool report = !slots_[index].layer_owned;
    Destroy(index);
    if (report) user_.OnClientFailure(id, cookie, failure);
  }

  const TransactionConfig config_;
  TimerWheel& timers_;
  MessageSink& sink_;
  TransactionUser& user_;
  TransactionCounters& counters_;

  // Slots are reused through free_slots_; a TransactionId names slot index + 1 and the
  // slot's generation, so an id outliving its transaction is recognised as stale.
  std::vector<Transaction> slots_;
  std::vector<uint32_t> free_slots_;
  size_t live_ = 0;
  absl::flat_hash_map<std::string, uint32_t> client_index_;
  absl::flat_hash_map<std::string, uint32_t> server_index_;

  // Scratch space reused by every message so that matching does not allocate. Neither is
  // held across a TU callback.
  std::string key_;
  std::string invite_key_;
  SipParser parser_;
  // Re-parses our own stored messages (the INVITE an ACK copies, the To tag of a response
  // the TU wrote). Allocated once: a SipMessage is tens of kilobytes.
  std::unique_ptr<SipMessage> scratch_;
};

TransactionLayer::TransactionLayer(const TransactionConfig& config, TimerWheel& timers,
                                   MessageSink& sink, TransactionUser& user)
    : config_(config) {
  // impl_ is declared before counters_, so it is built here, once counters_ exists.
  impl_ = std::make_unique<Impl>(config_, timers, sink, user, counters_);
}

TransactionLayer::~TransactionLayer() = default;

void TransactionLayer::OnMessage(const SipMessage& message, const Peer& source) {
  impl_->OnMessage(message, source);
}

TransactionId TransactionLayer::SendRequest(std::string request, std::string_view branch,
                                            Method method, const Peer& destination,
                                            uint64_t cookie) {
  return impl_->SendRequest(std::move(request), branch, method, destination, cookie);
}

void TransactionLayer::CancelInvite(TransactionId invite, std::string_view extra_headers) {
  impl_->CancelInvite(invite, extra_headers);
}

void TransactionLayer::OnTransportFailure(const Peer& to) { impl_->OnTransportFailure(to); }

void TransactionLayer::SendCancel(TransactionId invite, std::string cancel) {
  impl_->SendCancel(invite, std::move(cancel));
}

bool TransactionLayer::Respond(TransactionId id, int status_code, std::string response) {
  return impl_->Respond(id, status_code, std::move(response));
}

const Peer* TransactionLayer::ResponseDestination(TransactionId id) const {
  return impl_->ResponseDestination(id);
}

size_t TransactionLayer::size() const { return impl_->size(); }

}  // namespace b2bua::proto
