#include "b2bua/target_set.h"

#include <algorithm>
#include <cstddef>
#include <functional>
#include <utility>

#include "proto/sip_chars.h"
#include "proto/sip_uri_compare.h"

namespace b2bua {
namespace {

constexpr uint16_t kDefaultSipPort = 5060;
constexpr uint16_t kDefaultTlsPort = 5061;

uint64_t HashKey(const std::string& key) { return std::hash<std::string>{}(key); }

// Fills the URI parts of `target` from `uri`, whose views point into `whole`; `whole` has
// already been copied into target->contact.
void FillUriParts(std::string_view whole, const proto::SipUri& uri, Target* target) {
  target->uri_offset = static_cast<uint32_t>(uri.text.data() - whole.data());
  target->uri_length = static_cast<uint32_t>(uri.text.size());
  std::string_view request_uri = uri.text;
  if (!uri.headers.empty()) {
    // headers is a view into text, right after its '?'.
    request_uri = uri.text.substr(0, static_cast<size_t>(uri.headers.data() - uri.text.data()) - 1);
    target->uri_headers.assign(uri.headers);
  }
  target->request_uri.assign(request_uri);
  target->key = proto::NormalizeSipUri(uri);
  target->key_hash = HashKey(target->key);
}

}  // namespace

std::string_view TargetStateName(TargetState state) {
  switch (state) {
    case TargetState::kPending: return "pending";
    case TargetState::kTrying: return "trying";
    case TargetState::kRedirected: return "redirected";
    case TargetState::kAnswered: return "answered";
    case TargetState::kFailed: return "failed";
    case TargetState::kTimedOut: return "timed-out";
    case TargetState::kRefused: return "refused";
    case TargetState::kLoop: return "loop";
    case TargetState::kCancelled: return "cancelled";
  }
  return "unknown";
}

TargetSet::TargetSet(TargetSetLimits limits) : limits_(limits) {}

bool TargetSet::SetOriginal(std::string_view request_uri) {
  targets_.clear();
  attempt_order_.clear();
  pending_order_.clear();
  last_contact_headers_.clear();
  next_sequence_ = 0;
  redirects_tried_ = 0;
  exhausted_by_limit_ = false;

  proto::SipUri uri;
  if (proto::ParseUri(request_uri, &uri) != proto::UriError::kNone) return false;
  Target& target = targets_.emplace_back();
  target.contact.assign(request_uri);
  FillUriParts(request_uri, uri, &target);
  target.sequence = next_sequence_++;
  target.state = TargetState::kTrying;
  attempt_order_.push_back(0);
  return true;
}

void TargetSet::AddSelf(std::string_view host, uint16_t port) {
  selves_.push_back(Self{proto::NormalizeSipHost(host), port});
}

std::vector<std::string_view> TargetSet::ContactsVerbatim(const proto::SipMessage& message) {
  std::vector<std::string_view> values;
  for (size_t i = 0; i < message.header_count(); ++i)
    if (message.headers()[i].id == proto::HeaderId::kContact)
      values.push_back(message.headers()[i].value);
  return values;
}

MergeResult TargetSet::Merge(const proto::SipMessage& response_3xx, int from_target_index,
                             int depth) {
  MergeResult result;
  const int status = response_3xx.status_code();
  if (!response_3xx.is_response() || status < 300 || status > 399) {
    result.not_redirect = true;
    return result;
  }
  last_contact_headers_.clear();
  for (std::string_view value : ContactsVerbatim(response_3xx))
    last_contact_headers_.emplace_back(value);
  result.star = response_3xx.contact_star();
  if (from_target_index < 0 || static_cast<size_t>(from_target_index) >= targets_.size())
    from_target_index = -1;

  // Contacts are taken best q first, so that when max_entries cuts, the best of this 3xx
  // survive, and of two equal Contacts the one with the higher q is kept. Sequence numbers
  // follow header order, and so do indices once the new targets are re-sorted below.
  const proto::Contact* contacts = response_3xx.contacts();
  absl::InlinedVector<uint16_t, 8> candidates;
  for (size_t i = 0; i < response_3xx.contact_count(); ++i) {
    if (contacts[i].defect != proto::ContactDefect::kNone) {
      ++result.defective;
      continue;
    }
    candidates.push_back(static_cast<uint16_t>(i));
  }
  auto q_of = [&](uint16_t i) { return contacts[i].q_millis < 0 ? 1000 : contacts[i].q_millis; };
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](uint16_t a, uint16_t b) { return q_of(a) > q_of(b); });
  const uint32_t base_sequence = next_sequence_;
  const size_t first_new = targets_.size();
  next_sequence_ += static_cast<uint32_t>(response_3xx.contact_count());

  for (uint16_t i : candidates) {
    const proto::Contact& contact = contacts[i];
    const proto::SipUri& uri = contact.address.uri;
    std::string key = proto::NormalizeSipUri(uri);
    uint64_t key_hash = HashKey(key);
    switch (Classify(uri, key, key_hash, from_target_index)) {
      case LoopKind::kToSender: ++result.to_sender; ++result.loops; continue;
      case LoopKind::kToSelf: ++result.to_self; ++result.loops; continue;
      case LoopKind::kDuplicate: ++result.duplicates; ++result.loops; continue;
      case LoopKind::kNone: break;
    }
    if (targets_.size() >= limits_.max_entries) {
      ++result.over_capacity;
      continue;
    }
    Target& target = targets_.emplace_back();
    target.contact.assign(contact.address.text);
    FillUriParts(contact.address.text, uri, &target);
    target.expires = contact.expires;
    target.sequence = base_sequence + i;
    target.from_target = from_target_index;
    target.q_millis = static_cast<uint16_t>(q_of(i));
    target.redirect_status = static_cast<uint16_t>(status);
    target.depth = static_cast<uint16_t>(std::clamp(depth, 0, 0xffff));
    ++result.added;
  }
  // Header order for the new indices, so that at(i) reads like the 3xx did.
  std::sort(targets_.begin() + static_cast<ptrdiff_t>(first_new), targets_.end(),
            [](const Target& a, const Target& b) { return a.sequence < b.sequence; });
  for (size_t i = first_new; i < targets_.size(); ++i) {
    targets_[i].index = static_cast<uint16_t>(i);
    pending_order_.push_back(static_cast<uint16_t>(i));
  }

  if (from_target_index >= 0 && targets_[from_target_index].state == TargetState::kTrying) {
    targets_[from_target_index].state = TargetState::kRedirected;
    targets_[from_target_index].status = static_cast<uint16_t>(status);
  }
  if (result.added) SortPending();
  return result;
}

Target* TargetSet::NextPending() {
  if (pending_order_.empty()) return nullptr;
  if (redirects_tried_ >= limits_.max_targets) {
    exhausted_by_limit_ = true;
    return nullptr;
  }
  const uint16_t index = pending_order_.front();
  LeavePending(index);
  Target& target = targets_[index];
  target.state = TargetState::kTrying;
  ++redirects_tried_;
  return &target;
}

bool TargetSet::MarkResult(size_t index, TargetState state, uint16_t status) {
  if (index >= targets_.size() || state == TargetState::kPending) return false;
  Target& target = targets_[index];
  if (target.state == TargetState::kPending) LeavePending(static_cast<uint16_t>(index));
  target.state = state;
  target.status = status;
  return true;
}

TargetSet::LoopKind TargetSet::Classify(const proto::SipUri& uri, const std::string& key,
                                        uint64_t key_hash, int from_target_index) const {
  if (from_target_index >= 0 && EquivalentTo(targets_[from_target_index], uri, key, key_hash))
    return LoopKind::kToSender;
  if (IsSelf(uri)) return LoopKind::kToSelf;
  // Linear: a call holds a few dozen targets at most, and the hash rejects nearly all of them
  // before any string compare.
  for (const Target& target : targets_)
    if (EquivalentTo(target, uri, key, key_hash)) return LoopKind::kDuplicate;
  return LoopKind::kNone;
}

bool TargetSet::EquivalentTo(const Target& target, const proto::SipUri& uri,
                             const std::string& key, uint64_t key_hash) const {
  if (target.key_hash != key_hash || target.key != key) return false;
  // The key ignores parameters outside the significant five; confirm with the RFC rules.
  proto::SipUri held;
  // It parsed when it was added; should it not, treating it as equal errs toward no retry.
  if (proto::ParseUri(target.full_uri(), &held) != proto::UriError::kNone) return true;
  return proto::SipUriEquivalent(held, uri);
}

bool TargetSet::IsSelf(const proto::SipUri& uri) const {
  if (selves_.empty() || !uri.IsSip()) return false;
  // maddr overrides the host as the destination (RFC 3261 19.1.1), so it is what could
  // send the request back to us.
  std::string host = proto::NormalizeSipHost(uri.maddr.empty() ? uri.host : uri.maddr);
  uint16_t port = uri.port;
  if (port == 0) {
    bool tls = uri.scheme == proto::UriScheme::kSips || proto::EqualsIgnoreCase(uri.transport, "tls");
    port = tls ? kDefaultTlsPort : kDefaultSipPort;
  }
  for (const Self& self : selves_)
    if (self.host == host && (self.port == 0 || self.port == port)) return true;
  return false;
}

void TargetSet::LeavePending(uint16_t index) {
  auto it = std::find(pending_order_.begin(), pending_order_.end(), index);
  if (it != pending_order_.end()) pending_order_.erase(it);
  attempt_order_.push_back(index);
}

void TargetSet::SortPending() {
  std::stable_sort(pending_order_.begin(), pending_order_.end(), [&](uint16_t a, uint16_t b) {
    const Target& x = targets_[a];
    const Target& y = targets_[b];
    if (x.q_millis != y.q_millis) return x.q_millis > y.q_millis;
    return x.sequence < y.sequence;
  });
}

}  // namespace b2bua
