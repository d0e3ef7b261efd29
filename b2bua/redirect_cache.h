#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "b2bua/view_hash.h"
#include "proto/clock.h"

namespace b2bua {

/// Permanent redirects learned from 301 answers: the Request-URI a caller dialled, and the
/// target the 301 named (RFC 3261 21.3.2: "the user can no longer be found at the address
/// in the Request-URI"). The next call to that Request-URI goes straight to the target until
/// the entry expires. Bounded: a full cache forgets its expired entries first, then starts
/// afresh, so no sequence of 301s grows it past its capacity. One per shard, owned by its
/// thread; what one shard learns reaches the others through the shard mailboxes.
class RedirectCache {
 public:
  /// Owning shard only. The target cached for `request_uri`, if it has not expired (an
  /// expired entry is dropped on the way). The view is valid until the next Learn().
  std::optional<std::string_view> Find(std::string_view request_uri, proto::TimePoint now);

  /// Owning shard only. Remembers `target` for `request_uri` until `expires`, in a cache of
  /// at most `capacity` entries (0: nothing is kept). A later answer replaces an earlier.
  void Learn(std::string_view request_uri, std::string_view target, proto::TimePoint expires,
             size_t capacity, proto::TimePoint now);

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string target;
    proto::TimePoint expires;
  };
  // Looked up by string_view: no key copy per call.
  absl::flat_hash_map<std::string, Entry, ViewHash, ViewEq> entries_;
};

}  // namespace b2bua
