#pragma once

#include <charconv>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

namespace b2bua::proto {

// Debian's abseil keeps its own absl::string_view (not std::string_view), so absl::StrCat
// does not take the std::string_view that every message view is. These take both.

/// A number written in lower-case hexadecimal by StrCat/StrAppend.
struct Hex {
  uint64_t value;
};

inline void AppendPiece(std::string& out, std::string_view piece) { out.append(piece); }
inline void AppendPiece(std::string& out, const char* piece) { out.append(piece); }
inline void AppendPiece(std::string& out, char piece) { out.push_back(piece); }
template <std::integral T>
  requires(!std::same_as<T, char> && !std::same_as<T, bool>)
void AppendPiece(std::string& out, T value) {
  char buffer[24];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out.append(buffer, result.ptr);
}
inline void AppendPiece(std::string& out, Hex hex) {
  char buffer[24];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), hex.value, 16);
  out.append(buffer, result.ptr);
}

template <typename... Pieces>
void StrAppend(std::string* out, const Pieces&... pieces) {
  (AppendPiece(*out, pieces), ...);
}

template <typename... Pieces>
std::string StrCat(const Pieces&... pieces) {
  std::string out;
  (AppendPiece(out, pieces), ...);
  return out;
}

}  // namespace b2bua::proto
