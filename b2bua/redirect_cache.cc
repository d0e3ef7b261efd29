#include "b2bua/redirect_cache.h"

namespace b2bua {

std::optional<std::string_view> RedirectCache::Find(std::string_view request_uri,
                                                    proto::TimePoint now) {
  auto it = entries_.find(request_uri);
  if (it == entries_.end()) return std::nullopt;
  if (it->second.expires <= now) {
    entries_.erase(it);
    return std::nullopt;
  }
  return std::string_view(it->second.target);
}

void RedirectCache::Learn(std::string_view request_uri, std::string_view target,
                          proto::TimePoint expires, size_t capacity, proto::TimePoint now) {
  if (capacity == 0 || expires <= now) return;
  auto it = entries_.find(request_uri);
  if (it != entries_.end()) {
    it->second = Entry{std::string(target), expires};
    return;
  }
  if (entries_.size() >= capacity) {
    absl::erase_if(entries_, [now](const auto& entry) { return entry.second.expires <= now; });
    if (entries_.size() >= capacity) entries_.clear();
  }
  entries_.emplace(std::string(request_uri), Entry{std::string(target), expires});
}

}  // namespace b2bua
