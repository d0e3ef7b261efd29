#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/container/inlined_vector.h"
#include "b2bua/redirect_settings.h"
#include "b2bua/target_set.h"
#include "proto/sip_message.h"

namespace b2bua {

/// RFC 3261 16.7 step 6: true when final `candidate` (4xx-6xx) should replace `best` (0:
/// none yet) as the answer the caller gets if every attempt fails. 6xx beats all; then the
/// answers a caller can act on (401, 407, 415, 420, 484); other 4xx; 5xx; 503 last, since
/// it would stop the caller's own failover. The first of two equal ranks stays.
bool BetterFinal(int candidate, int best);

/// Target indices, best first. Four cover a 302 with a few Contacts without allocating.
using TargetIndices = absl::InlinedVector<uint16_t, 4>;

/// What the call does next, as decided by TargetSearch. The engine acts on it: cancels,
/// sends, relays; it does nothing the step does not say.
struct SearchStep {
  enum class Action : uint8_t {
    kWait,           // attempts are still out: wait for their answers
    kStart,          // send INVITEs to `start`, each already marked kTrying
    kAnswer,         // the attempt just reported answered: bridge the call to it
    kRelayResponse,  // relay the final answer just reported to the caller; the search is over
    kFinish,         // nothing is out and nothing will start: the best failure goes to the caller
  };
  Action action = Action::kWait;
  TargetIndices start;
  /// Attempts to CANCEL now: they lost the race, timed out, or the caller gave up.
  TargetIndices cancel;
  /// The final just reported is now the best failure (BetterFinal): keep its text.
  bool new_best = false;
};

/// What reaches the caller of a provisional answer from one attempt.
enum class ProvisionalRelay : uint8_t {
  kRelay,             // as received, body (early media) included
  kRelayWithoutBody,  // the ringing, not the media: another attempt owns the early media
};

/// How the search goes through the targets: the `redirect:` settings it obeys.
struct SearchSettings {
  RedirectFork fork = RedirectFork::kSerial;
  /// Most attempts of one parallel group; a larger group of equal q is split.
  uint16_t max_parallel = 8;
  /// Redirects followed in a row before a 3xx is no longer merged.
  int max_depth = 5;
  EarlyMedia early_media = EarlyMedia::kFirst;
  /// Finals after which the search goes on; any other ends it.
  StatusCodeSet try_next_on = StatusCodeSet::FailureClasses();

  static SearchSettings From(const RedirectSettings& redirect);
};

/// The search over a call's targets once a 3xx has been followed (RFC 3261 16.5-16.7, the
/// way a forking proxy's response context works): which targets to try next, which
/// attempts to cancel, and which final answer the caller gets. It takes events (an answer,
/// a final failure, a timeout, a 3xx's Contacts, a target the engine could not send to) and
/// returns SearchSteps; it does no I/O and owns no timer, so tables of events test it.
///
/// Serial search is the special case of groups of one. With `fork: parallel_equal_q`, the
/// pending targets of the best q form one group, tried at once (at most max_parallel);
/// the next group starts when every attempt of the group has its final answer. A 2xx wins
/// and cancels the rest; a 6xx ends the search and cancels the rest; a final outside
/// try_next_on ends the search once the group is over (at once when serial); a 3xx adds
/// its Contacts to the pending targets.
///
/// The original Request-URI is target 0 and is live from the start: the route's next hops
/// try it before any 3xx, and that failover is not the search's business.
///
/// Owned by one call on its shard; not thread-safe.
class TargetSearch {
 public:
  TargetSearch() = default;
  TargetSearch(const SearchSettings& settings, TargetSetLimits limits);

  /// Owning shard only. Starts over on the caller's Request-URI (target 0, live). False
  /// when it does not parse (then nothing is live).
  bool Begin(std::string_view request_uri);

  /// Owning shard only. The targets themselves, for the engine's policy and records and for
  /// AddSelf(). State changes go through this object, not through MarkResult().
  TargetSet& targets() { return targets_; }
  const TargetSet& targets() const { return targets_; }

  /// Owning shard only. Attempt to `target` answered 2xx: the search is won. Every other
  /// live attempt is to be cancelled.
  SearchStep OnAnswered(uint16_t target, int status);
  /// Owning shard only. Attempt to `target` answered final `status` 400-699.
  SearchStep OnFinal(uint16_t target, int status);
  /// Owning shard only. Attempt to `target` got no final answer in time (per-target timeout,
  /// Timer B, a transport failure). The attempt is listed in `cancel`.
  SearchStep OnTimeout(uint16_t target);
  /// Owning shard only. Attempt to `target` answered 3xx `response`: its Contacts join the
  /// pending targets, one redirect level deeper, unless that is past max_depth. `*merged`
  /// (optional) says what became of each Contact.
  SearchStep OnRedirect(uint16_t target, const proto::SipMessage& response,
                        MergeResult* merged);
  /// Owning shard only. `target` from a kStart step was never sent (the policy refused it,
  /// or no address could be used): `state` kRefused or kFailed. `stop` ends the search.
  SearchStep OnNotSent(uint16_t target, TargetState state, bool stop);
  /// Owning shard only. The caller gave up (CANCEL, Timer C, shutdown): every live attempt
  /// is to be cancelled, and nothing new starts.
  SearchStep OnCallerGaveUp();
  /// Owning shard only. What to do now that nothing new has been reported: wait while
  /// attempts are out, else start the next group or finish.
  SearchStep Next();

  /// Owning shard only. A provisional answer from `target`'s attempt: whether its body may
  /// reach the caller. The first one with a body fixes the early media until that attempt
  /// ends; the caller sees one early dialog either way, since the B2BUA owns its To tag.
  ProvisionalRelay OnProvisional(uint16_t target, bool has_body);

  /// Owning shard only. Whether an attempt to `target` is out and undecided.
  bool IsLive(uint16_t target) const;
  size_t live_count() const { return live_.size(); }
  /// Deepest redirect level reached so far (0 before any 3xx).
  int max_depth_seen() const { return max_depth_seen_; }
  /// True once a 3xx was past max_depth (its Contacts were not merged).
  bool depth_exceeded() const { return depth_exceeded_; }
  /// Contacts skipped as loops, over every 3xx.
  int loops() const { return loops_; }
  /// Best failure so far (0: none), by BetterFinal.
  int best_status() const { return best_status_; }
  bool stopped() const { return stopped_; }

 private:
  void Settle(uint16_t target, TargetState state, uint16_t status);
  // Everything live except `keep` goes to `cancel`, marked kCancelled.
  void CancelLive(SearchStep* step, int keep);
  bool NoteFinal(int status);

  SearchSettings settings_;
  TargetSet targets_;
  TargetIndices live_;
  int early_media_target_ = -1;
  int max_depth_seen_ = 0;
  int loops_ = 0;
  int best_status_ = 0;
  bool depth_exceeded_ = false;
  bool stopped_ = false;
};

}  // namespace b2bua
