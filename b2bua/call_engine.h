#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "b2bua/config.h"
#include "b2bua/dialog_store.h"
#include "b2bua/hop_health.h"
#include "b2bua/redirect_cache.h"
#include "b2bua/redirect_policy.h"
#include "b2bua/sip_tokens.h"
#include "b2bua/view_hash.h"
#include "b2bua/shard_counters.h"
#include "b2bua/target_search.h"
#include "b2bua/target_set.h"
#include "proto/clock.h"
#include "proto/dns_resolver.h"
#include "proto/sip_message.h"
#include "proto/timer_wheel.h"
#include "proto/transaction.h"
#include "proto/transport.h"

namespace b2bua {


/// Receives one structured line per call that went through the redirect engine, when the
/// call ends: every hop with its target, q, final status and time to answer.
class CallRecordSink {
 public:
  /// Called on the owning shard; may be called from several shards at once.
  virtual void OnCallRecord(std::string_view line) = 0;

 protected:
  ~CallRecordSink() = default;
};

/// Resolves next hops and redirect targets named by host name (RFC 3263). The shard
/// implements it over proto::SipResolver; tests use a fake. The callback runs on the
/// owning shard, possibly inside Resolve() (cache hits).
class TargetResolver {
 public:
  virtual ~TargetResolver() = default;
  virtual void Resolve(std::string_view host, uint16_t port,
                       std::optional<proto::TransportKind> transport, bool sips,
                       proto::ResolveCallback callback) = 0;
};

/// The TLS transport's view for the engine: the host name a next hop's certificate must
/// carry (RFC 5922), given before the first message to the address it was resolved to.
class TlsServerNames {
 public:
  virtual void SetServerName(const proto::NetAddress& address, std::string_view host) = 0;

 protected:
  ~TlsServerNames() = default;
};

/// Hands a permanent redirect this shard learned to every other shard, so the next call to
/// that Request-URI goes straight to the target whichever shard owns it. The shard sends
/// it through the cross-shard mailboxes; the others call LearnPermanentRedirect().
class RedirectShare {
 public:
  virtual void SharePermanentRedirect(std::string_view request_uri, std::string_view target,
                                      proto::TimePoint expires) = 0;

 protected:
  ~RedirectShare() = default;
};

/// What a shard's CallEngine needs from its shard. Passed explicitly, never global.
struct ShardContext {
  uint32_t shard_index = 0;
  uint32_t shard_count = 1;
  const proto::Clock* clock = nullptr;
  proto::TimerWheel* timers = nullptr;
  proto::MessageSink* sink = nullptr;
  ShardCounters* counters = nullptr;
  /// The address the B2BUA listens on; written into Via and Contact.
  proto::NetAddress local_address;
  /// The address written into Via and Contact when it differs from `local_address` (a
  /// wildcard listen address, NAT); empty: local_address.
  std::string advertised_ip;
  /// Where call records go; null for none.
  CallRecordSink* call_records = nullptr;
  /// Host names are resolved through this; null: only IP literals can be reached.
  TargetResolver* resolver = nullptr;
  /// Call limits shared by every shard (per source, call rates); null: none enforced.
  SharedCallLimits* call_limits = nullptr;
  /// The port of the SIP-over-TLS listener, on the same IP; 0: no TLS listener.
  uint16_t tls_port = 0;
  /// Tells the TLS transport which name a next hop's certificate must carry; null: none.
  TlsServerNames* tls_names = nullptr;
  /// Where a learned 301 goes for the other shards; null: it stays in this shard.
  RedirectShare* redirect_share = nullptr;
  /// Cluster mode (config `cluster:`): where confirmed calls are replicated, and the clock
  /// their deadlines are written in. Null: a single box.
  DialogStore* dialog_store = nullptr;
  const WallClock* wall_clock = nullptr;
  /// This instance's id and start time (for dialog keys unique across restarts), and the
  /// front "HOST:PORT" both legs' Contact names in cluster mode.
  std::string instance_id;
  uint64_t boot_epoch = 0;
  std::string front;
  /// Mixed into every Call-ID, tag and branch (TokenSource); drawn at process start.
  uint64_t token_seed = 0;
};


/// The B2BUA core of one shard: bridges the A-leg (the caller's dialog, where the B2BUA is
/// the UAS) and the B-leg (towards the callee, where it is the UAC), routes, fails over
/// across next hops and follows 3xx redirects for the caller. Everything here runs on the
/// owning shard's thread; nothing is shared.
struct CallSetup;
struct Attempt;

class CallEngine final : public proto::TransactionUser, public proto::TimerHandler {
 public:
  CallEngine(const ShardContext& context, std::shared_ptr<const Config> config);
  ~CallEngine() override;

  /// Owning shard only. Must be called once before any message arrives.
  void SetTransactionLayer(proto::TransactionLayer* layer) { transactions_ = layer; }
  /// Owning shard only. New calls use `config`; live calls keep the snapshot they began with.
  void SetConfig(std::shared_ptr<const Config> config) { config_ = std::move(config); }
  /// Owning shard only. Replaces the shipped policy (the application decision hook).
  void SetRedirectPolicy(RedirectPolicy* policy) { policy_override_ = policy; }
  /// Owning shard only. Resumes a redirect search parked on a kPending decision.
  void ResumeRedirect(uint64_t call_cookie, PolicyDecision decision);

  /// Owning shard only. Refuse new calls with 503 from now on (SIGTERM drain).
  void StartDraining() { draining_ = true; }
  /// Owning shard only. Ends every call now: BYE on both legs of answered calls, CANCEL
  /// and 503 for the others (the end of a drain).
  void EndAllCalls();
  size_t active_calls() const { return calls_.size(); }

  /// Owning shard only. Starts (or restarts, after a config change) the OPTIONS probes of
  /// the routes' next hops; a hop that stops answering is skipped until it answers again.
  void StartProbing();
  /// Owning shard only. Next hops currently considered dead by the probes.
  size_t dead_hops() const { return hop_health_.dead_count(); }

  /// Owning shard only. A permanent redirect another shard learned (RedirectShare): kept
  /// in this shard's cache under the current config's cache_301 size, not shared again.
  void LearnPermanentRedirect(std::string_view request_uri, std::string_view target,
                              proto::TimePoint expires);

  /// Owning shard only. Frees calls that ended during the last turn (deferred deletion).
  void CollectEndedCalls();

  // proto::TransactionUser
  void OnRequest(proto::TransactionId id, const proto::SipMessage& request,
                 const proto::Peer& source) override;
  void OnAck(const proto::SipMessage& ack, const proto::Peer& source) override;
  void OnCancel(proto::TransactionId invite, const proto::SipMessage& cancel) override;
  void OnResponse(proto::TransactionId id, uint64_t cookie,
                  const proto::SipMessage& response) override;
  void OnStrayResponse(const proto::SipMessage& response, const proto::Peer& source) override;
  void OnClientFailure(proto::TransactionId id, uint64_t cookie,
                       proto::ClientFailure failure) override;

  // proto::TimerHandler
  void OnTimer(uint32_t kind, uint64_t cookie) override;

  struct Call;

 private:

  void OnNewInvite(proto::TransactionId id, const proto::SipMessage& request,
                   const proto::Peer& source);
  /// What a new call was admitted with: its route and the limits it holds a share of.
  struct CallAdmission {
    const Route* route = nullptr;
    RouteLoad* route_load = nullptr;
    bool source_counted = false;
  };
  /// The access policy and call limits for a new INVITE, before any call state exists.
  /// False when it was refused (answered and counted).
  bool AdmitCall(proto::TransactionId id, const proto::SipMessage& request,
                 const proto::Peer& source, CallAdmission* out);
  void OnOutOfDialogRequest(proto::TransactionId id, const proto::SipMessage& request,
                            const proto::Peer& source);
  void OnInDialogRequest(Call& call, proto::TransactionId id, const proto::SipMessage& request,
                         const proto::Peer& source);
  /// A response on the client transaction of attempt `slot`.
  void OnAttemptResponse(Call& call, size_t slot, const proto::SipMessage& response);
  /// A response on the answered attempt's transaction once its 2xx was accepted.
  void OnAnsweredInviteResponse(Call& call, const proto::SipMessage& response);
  void OnAttempt2xx(Call& call, size_t slot, const proto::SipMessage& response);
  /// Attempt `slot` ended without an answer: a final 4xx-6xx (`response`), or no final at
  /// all (null: timeout, transport failure).
  void OnAttemptFailure(Call& call, size_t slot, int status, std::string_view reason,
                        const proto::SipMessage* response);
  void OnRedirect(Call& call, size_t slot, const proto::SipMessage& response);
  void AcceptInvite2xx(Call& call, const proto::SipMessage& response);
  void ReleaseStray2xx(Call* call, const proto::SipMessage& response);
  void CancelCall(Call& call);
  /// CANCELs every attempt still out with `reason` (a Reason header line, or empty); true
  /// when at least one CANCEL went out.
  bool CancelAttempts(Call& call, std::string_view reason);
  void CancelTargets(Call& call, const TargetIndices& targets, std::string_view reason);
  bool CancelAttempt(Call& call, Attempt& attempt, std::string_view reason);
  void OnRelayedResponse(Call& call, proto::TransactionId id, const proto::SipMessage& response);

  /// Acts on the target search's decisions until it waits. `response` is the final the
  /// step was decided on, for kRelayResponse.
  void RunSearch(Call& call, SearchStep step, const proto::SipMessage* response);
  /// How starting one target went.
  enum class Launch : uint8_t { kStarted, kRefused, kFailed, kStopped };
  /// Asks the redirect policy about `target` and sends its INVITE (or parks it).
  Launch StartTarget(Call& call, uint16_t target);
  /// Sends the INVITE of attempt `slot` to its redirect target under `decision`.
  Launch LaunchTarget(Call& call, size_t slot, PolicyDecision decision);
  /// Tries the route's next hops in turn for the original Request-URI; false when none
  /// could be started.
  bool StartNextHop(Call& call);
  size_t NewAttempt(Call& call, uint16_t target, bool next_hop);
  void CountRefused(Call& call);
  /// The Request-URI the last INVITE to `target` carried (0: the original target); the
  /// caller's Request-URI when that target was never sent one.
  const std::string& SentRequestUri(Call& call, int target);
  /// Sends attempt `slot` to `uri`'s host: at once for an IP literal, after RFC 3263
  /// resolution for a name. Returns false when the attempt cannot even start.
  bool SendAttempt(Call& call, size_t slot, const proto::SipUri& uri,
                   std::optional<proto::TransportKind> transport);
  bool SendBLegInvite(Call& call, size_t slot, const proto::Peer& destination);
  void OnResolved(uint64_t cookie, size_t slot, uint64_t generation,
                  const proto::ResolvedTargets& result);
  /// A redirect target's attempt rang longer than target_timeout.
  void OnAttemptTimeout(Call& call, size_t slot);
  /// A 503 with Retry-After takes the next hop out of rotation for that long.
  bool HopResting(const proto::Peer& destination) const;
  /// Relays a redirect target's final answer to the caller and ends the call.
  void RelayFinal(Call& call, int status, std::string_view reason,
                  const proto::SipMessage* response);
  void FinishSearch(Call& call);
  void AnswerCaller(Call& call, int status, std::string_view reason, std::string_view extra,
                    std::string_view body, std::string_view content_type);
  void RespondStateless(proto::TransactionId id, const proto::SipMessage& request, int status,
                        std::string_view reason, std::string_view extra);
  /// Sends `method` inside the leg's dialog; returns its client transaction (or none).
  proto::TransactionId SendInDialogRequest(Call& call, bool to_b_leg, proto::Method method,
                                           std::string_view method_text,
                                           std::string_view extra, std::string_view body,
                                           std::string_view content_type);
  void ByeBothLegs(Call& call);
  /// Start line through CSeq of a request inside `dialog` (RFC 3261 12.2.1.1).
  std::string StartDialogRequest(const Dialog& dialog, std::string_view method_text,
                                 std::string_view branch, uint32_t cseq) const;
  /// Sends an ACK inside `dialog` and returns its bytes.
  std::string SendAck(const Dialog& dialog, uint32_t cseq, std::string_view body,
                      std::string_view content_type);
  void SendAckToB(Call& call, uint32_t cseq, std::string_view body, std::string_view content_type);
  /// Answers a retransmitted B-leg 2xx with our ACK again.
  void ResendBAck(Call& call);
  void SendA2xx(Call& call);
  void EndCall(Call& call, CallOutcome outcome);
  /// Frees what only the call set-up needed, once the caller has ACKed the 2xx.
  void ReleaseSetupState(Call& call);
  /// `attempt` has its final answer (or none will come): its timer stops.
  void EndAttempt(Attempt& attempt);
  /// A call the caller gave up on ends once none of its attempts waits for a final answer.
  void FinishIfGivenUp(Call& call);
  void WriteCallRecord(const Call& call, CallOutcome outcome);
  /// The redirect search as the call record lists it: Request-URI, depth, loops, hops.
  static std::string RedirectRecord(const CallSetup& setup, proto::TimePoint call_started);
  void ArmTimer(Call& call, proto::TimerId* timer, proto::Duration delay, uint32_t kind);
  bool Send(const proto::Peer& to, std::string_view bytes);

  Call* FindByCallId(std::string_view call_id);
  bool NamesSelf(const proto::SipUri& uri) const;
  bool DestinationFor(const proto::SipUri& uri, proto::Peer* out) const;
  const RedirectSettings& SettingsFor(const Call& call) const;
  /// The shipped redirect policy of the call's route (or the global one), built at load.
  const ConfiguredRedirectPolicy& PolicyFor(const Call& call) const;
  PolicyDecision DecideTarget(Call& call, const Target& target);

  ShardContext context_;
  std::shared_ptr<const Config> config_;
  proto::TransactionLayer* transactions_ = nullptr;
  RedirectPolicy* policy_override_ = nullptr;
  bool draining_ = false;
  uint64_t next_call_cookie_ = 1;
  TokenSource tokens_;
  std::string local_host_port_;  // "127.0.0.1:5060" or "[::1]:5060"
  std::string contact_header_;   // "<sip:b2bua@127.0.0.1:5060>"
  std::string tls_host_port_;    // "127.0.0.1:5061"; empty without a TLS listener
  std::string tls_contact_header_;  // "<sip:b2bua@127.0.0.1:5061;transport=tls>"
  // What Via and Contact name for a leg over `transport`: the TLS listener for TLS.
  const std::string& HostPortFor(proto::TransportKind transport) const;
  const std::string& ContactFor(proto::TransportKind transport) const;
  /// The Contact of `call`'s legs: in cluster mode the front with the call's routing token
  /// (valid until the next call of this), else ContactFor(transport).
  const std::string& ContactFor(const Call& call, proto::TransportKind transport);
  std::string cluster_contact_;  // scratch of the above

  // Cluster mode (call_cluster.cc).
  bool clustered() const { return context_.dialog_store != nullptr; }
  /// The call's key in the dialog store and in both legs' routing token.
  std::string DialogKeyOf(const Call& call) const;
  absl::flat_hash_map<uint64_t, std::string> adopted_keys_;  // by cookie
  /// Writes a confirmed call to the dialog store (again, after a change an in-dialog
  /// request needs).
  void Replicate(Call& call);
  DialogRecord RecordOf(const Call& call) const;
  proto::Duration DialogTtl(const Call& call) const;
  /// An in-dialog request for a call this shard does not hold: when it comes from a trusted
  /// source (the front) and its routing token names a dialog, take the call over from the
  /// store and handle the request then. False: not ours.
  bool TryAdopt(proto::TransactionId id, const proto::SipMessage& request,
                const proto::Peer& source);
  void OnAdopted(const std::string& key, AdoptOutcome outcome,
                 std::optional<DialogRecord> record);
  /// Requests waiting for their dialog to come back from the store, by key.
  struct HeldRequest {
    proto::TransactionId id;
    std::string bytes;
    proto::Peer source;
  };
  absl::flat_hash_map<std::string, std::vector<HeldRequest>> adopting_;
  size_t held_requests_ = 0;
  std::unique_ptr<proto::SipMessage> reparsed_;

  absl::flat_hash_map<uint64_t, std::unique_ptr<Call>> calls_;
  // Both legs' Call-IDs, viewing the Call's own copies (never changed once set): no second
  // copy per held call. Erased in EndCall, before the Call is freed.
  absl::flat_hash_map<std::string_view, Call*, ViewHash, ViewEq> calls_by_call_id_;
  std::vector<std::unique_ptr<Call>> ended_;
  RedirectCache moved_permanently_;  // 301s learned here or by the other shards
  HopHealth hop_health_;  // 503 Retry-After rests and the probes' verdicts
  void ProbeNextHops();
  void SendProbe(const NextHop& hop, const proto::Peer& destination);
  void OnProbeResult(uint64_t cookie, bool answered);
  proto::TimerId probe_timer_;
};

}  // namespace b2bua
