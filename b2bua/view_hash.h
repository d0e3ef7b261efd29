#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

namespace b2bua {

/// Transparent std::string_view hashing: Debian's abseil has its own string_view type, so
/// its default heterogeneous lookup does not take ours.
struct ViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
struct ViewEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};

}  // namespace b2bua
