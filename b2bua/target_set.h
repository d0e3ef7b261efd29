#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "proto/sip_message.h"
#include "proto/sip_uri.h"

namespace b2bua {

/// Where a redirect target stands. A target leaves kPending once (NextPending() or
/// MarkResult()) and never returns to it.
enum class TargetState : uint8_t {
  kPending,     // learned from a 3xx, not tried yet
  kTrying,      // a request is out to it
  kRedirected,  // it answered 3xx; its Contacts were merged (status = that 3xx)
  kAnswered,    // it answered 2xx: the search is over
  kFailed,      // final 4xx-6xx (status says which)
  kTimedOut,    // no final response (Timer B), or transport failure
  kRefused,     // the redirect policy rejected it; never sent
  kLoop,        // found to loop (482, or detected by the engine)
  kCancelled,   // CANCELled: another attempt answered, or the caller gave up
};

/// "pending", "trying", ... for logs. Static storage.
std::string_view TargetStateName(TargetState state);

/// One redirect target of a call. Every string is owned: the 3xx it came from goes back to
/// the receive pool long before the call ends.
struct Target {
  /// The Contact value exactly as received, one list item of the header, surrounding LWS
  /// removed: display name, URI with its ?headers and every parameter, unknown ones
  /// included. For the original target, the caller's Request-URI.
  std::string contact;
  /// What goes into the Request-URI: the Contact URI without its "?headers" part.
  std::string request_uri;
  /// The "?headers" part of the Contact URI without the '?', still escaped; empty if none.
  std::string uri_headers;
  /// NormalizeSipUri() of the Contact URI (headers included).
  std::string key;
  uint64_t key_hash = 0;
  /// ;expires= of the Contact in seconds, -1 when absent.
  int64_t expires = -1;
  /// Arrival order across every 3xx of the call: the tie-break between equal q-values.
  uint32_t sequence = 0;
  /// Position of the whole URI (with headers) inside `contact`; see full_uri().
  uint32_t uri_offset = 0;
  uint32_t uri_length = 0;
  /// Index of the target whose 3xx listed this one; -1 for the original.
  int32_t from_target = -1;
  /// q in thousandths: 1000 when the Contact has no q, 0 for an explicit q=0.
  uint16_t q_millis = 1000;
  /// Status code of the 3xx that listed this target; 0 for the original.
  uint16_t redirect_status = 0;
  /// The final status that ended the attempt (kRedirected, kFailed, kAnswered...), 0 if none.
  uint16_t status = 0;
  /// Redirect depth at which the target was learned; 0 for the original Request-URI.
  uint16_t depth = 0;
  /// This target's index in its TargetSet (stable; what MarkResult() and Merge() take).
  uint16_t index = 0;
  TargetState state = TargetState::kPending;

  /// The Contact URI including "?headers"; a view into `contact`, valid while it is.
  std::string_view full_uri() const {
    return std::string_view(contact).substr(uri_offset, uri_length);
  }
  /// Parses `request_uri`; the views in `*out` point into this Target's `request_uri` and are
  /// valid until the Target is changed or moved (a later Merge() may move it).
  proto::UriError ParseRequestUri(proto::SipUri* out) const {
    return proto::ParseUri(request_uri, out);
  }
  bool is_original() const { return redirect_status == 0; }
};

/// Per-call limits. Explicit numbers rather than "until memory runs out": a hostile 3xx chain
/// can list 64 Contacts per response.
struct TargetSetLimits {
  /// Redirect targets tried per call, the original Request-URI not counted.
  uint16_t max_targets = 8;
  /// Targets remembered per call, original and tried ones included. Contacts beyond it are
  /// dropped (and counted), the lowest q-values of a 3xx first.
  uint16_t max_entries = 64;
};

/// What one Merge() did with the Contacts of a 3xx. Every Contact ends in exactly one of
/// added, loops (split in duplicates, to_sender and to_self), defective or over_capacity.
struct MergeResult {
  uint16_t added = 0;
  uint16_t loops = 0;          // duplicates + to_sender + to_self
  uint16_t duplicates = 0;     // equal to a target already in the set, tried or pending
  uint16_t to_sender = 0;      // equal to the target whose 3xx listed it
  uint16_t to_self = 0;        // pointing at one of our own listen addresses (AddSelf)
  uint16_t defective = 0;      // a ContactDefect (bad q or expires): skipped
  uint16_t over_capacity = 0;  // dropped by TargetSetLimits::max_entries
  bool star = false;           // the 3xx held "Contact: *", which names no target
  bool not_redirect = false;   // the message was not a 3xx response; nothing was merged
};

/// The redirect targets of one call (RFC 3261 8.1.3.4, 16.5): the original Request-URI, every
/// Contact learned from 3xx responses, and the state of each attempt. It remembers every
/// target it ever held, so a Contact seen before (tried or pending) is recognised as a loop.
///
/// Order of attempts: highest q first, equal q in arrival order; Contacts of a later 3xx join
/// the pending ones under the same rule (a stable sort by q descending, arrival tie-break).
///
/// Duplicates are found by NormalizeSipUri() key, confirmed with SipUriEquivalent(), so two
/// GRUUs of one AOR (which differ only in ;gr) stay two targets.
///
/// Owned by one call on its shard; not thread-safe. Pointers and references to targets are
/// invalidated by SetOriginal() and Merge(); indices stay valid for the life of the set.
class TargetSet {
 public:
  using const_iterator = std::vector<Target>::const_iterator;

  explicit TargetSet(TargetSetLimits limits = {});

  /// Owning shard only. Resets the set to the caller's original Request-URI, which counts as
  /// tried (state kTrying, index 0) from the start. Self addresses are kept. False when
  /// `request_uri` does not parse; the set is then empty.
  bool SetOriginal(std::string_view request_uri);

  /// Owning shard only. Registers one of the B2BUA's own listen addresses: a Contact whose
  /// destination (maddr if present, else host) equals `host` (case-insensitive; IP literals by
  /// value) on `port` is a loop. The Contact's port defaults to 5060, or 5061 for sips: and
  /// transport=tls. `port` 0 matches any port (for a name that is ours on every port).
  void AddSelf(std::string_view host, uint16_t port);

  /// Owning shard only. Merges every Contact of `response_3xx` (the parser has split lists
  /// into contacts()), learned at redirect `depth` from the target at `from_target_index`
  /// (-1 when unknown). Contacts with a ContactDefect and "Contact: *" are skipped; duplicates,
  /// Contacts equal to the redirecting target and Contacts pointing at us are not added and
  /// are counted as loops; of two equal Contacts in one 3xx the one with the higher q is kept.
  /// A redirecting target in state kTrying becomes kRedirected with the
  /// 3xx status. Copies what it keeps: `response_3xx` may be released when this returns.
  /// Also replaces last_contact_headers().
  MergeResult Merge(const proto::SipMessage& response_3xx, int from_target_index, int depth);

  /// Owning shard only. The best pending target (highest q, earliest), now marked kTrying, or
  /// nullptr when none is pending or max_targets redirect targets have been tried (then
  /// exhausted_by_limit() is true). The pointer is valid until the next SetOriginal()/Merge().
  Target* NextPending();

  /// Owning shard only. Records how an attempt ended. A pending target marked here (e.g.
  /// kRefused by the policy before sending) leaves the pending list. False, changing nothing,
  /// for an unknown index or `state` kPending.
  bool MarkResult(size_t index, TargetState state, uint16_t status = 0);

  /// Owning shard only. Number of targets held, loops excluded (they are never added).
  size_t size() const { return targets_.size(); }
  /// Owning shard only. Targets that left kPending, the original included.
  size_t tried_count() const { return attempt_order_.size(); }
  /// Owning shard only.
  size_t pending_count() const { return pending_order_.size(); }
  /// Owning shard only. Redirect targets handed out by NextPending(), the original excluded.
  size_t redirects_tried() const { return redirects_tried_; }
  /// Owning shard only. True once NextPending() refused a pending target for max_targets.
  bool exhausted_by_limit() const { return exhausted_by_limit_; }
  const TargetSetLimits& limits() const { return limits_; }

  /// Owning shard only. Target by index; `i` < size().
  const Target& at(size_t i) const { return targets_[i]; }
  /// Owning shard only. Iteration in index order: the original, then the Contacts of each
  /// merged 3xx in header order.
  const_iterator begin() const { return targets_.begin(); }
  const_iterator end() const { return targets_.end(); }
  /// Owning shard only. Indices of the targets that left kPending, in the order they left.
  std::span<const uint16_t> attempt_order() const {
    return {attempt_order_.data(), attempt_order_.size()};
  }
  /// Owning shard only. Indices of the pending targets in the order NextPending() will take
  /// them. attempt_order() followed by pending_order() is the whole search, in order.
  std::span<const uint16_t> pending_order() const {
    return {pending_order_.data(), pending_order_.size()};
  }

  /// Owning shard only. The values of every Contact header line of the last merged 3xx,
  /// verbatim and in order (one entry per header line, lists unsplit), for a relay mode that
  /// hands the 3xx back to the caller as received. Owned copies.
  const std::vector<std::string>& last_contact_headers() const { return last_contact_headers_; }

  /// Safe from any thread. The values of every Contact header line of `message`, verbatim and
  /// in order. The views point into the buffer `message` was parsed from and are valid as
  /// long as it is.
  static std::vector<std::string_view> ContactsVerbatim(const proto::SipMessage& message);

 private:
  struct Self {
    std::string host;  // NormalizeSipHost() form
    uint16_t port;     // 0: any port
  };

  // Why a Contact is not added.
  enum class LoopKind : uint8_t { kNone, kDuplicate, kToSender, kToSelf };

  LoopKind Classify(const proto::SipUri& uri, const std::string& key, uint64_t key_hash,
                    int from_target_index) const;
  bool IsSelf(const proto::SipUri& uri) const;
  bool EquivalentTo(const Target& target, const proto::SipUri& uri, const std::string& key,
                    uint64_t key_hash) const;
  void LeavePending(uint16_t index);
  void SortPending();

  TargetSetLimits limits_;
  std::vector<Target> targets_;
  // Small per-call index lists; four entries cover the common 302 with one or two Contacts.
  absl::InlinedVector<uint16_t, 4> attempt_order_;
  absl::InlinedVector<uint16_t, 4> pending_order_;
  std::vector<Self> selves_;
  std::vector<std::string> last_contact_headers_;
  uint32_t next_sequence_ = 0;
  uint16_t redirects_tried_ = 0;
  bool exhausted_by_limit_ = false;
};

}  // namespace b2bua
