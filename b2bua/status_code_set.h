#pragma once

#include <bitset>
#include <cstddef>
#include <initializer_list>

namespace b2bua {

/// A set of SIP status codes (100..699), filled from YAML items such as 486 or "5xx".
/// Contains() is one bit test, so the data plane can ask it per response.
class StatusCodeSet {
 public:
  StatusCodeSet() = default;
  /// Every code of the given classes: Classes({4, 5}) holds 400..499 and 500..599.
  static StatusCodeSet Classes(std::initializer_list<int> classes) {
    StatusCodeSet set;
    for (int c : classes) set.AddClass(c);
    return set;
  }
  static StatusCodeSet Codes(std::initializer_list<int> codes) {
    StatusCodeSet set;
    for (int code : codes) set.Add(code);
    return set;
  }

  /// Codes outside 100..699 are ignored.
  void Add(int code) {
    if (code >= kMin && code <= kMax) bits_.set(static_cast<size_t>(code));
  }
  /// `status_class` 1..6; anything else is ignored.
  void AddClass(int status_class) {
    for (int code = status_class * 100; code < status_class * 100 + 100; ++code) Add(code);
  }
  bool Contains(int code) const {
    return code >= kMin && code <= kMax && bits_.test(static_cast<size_t>(code));
  }
  bool empty() const { return bits_.none(); }

  /// 4xx and 5xx, built once: a default that objects made per call copy rather than fill
  /// bit by bit.
  static const StatusCodeSet& FailureClasses() {
    static const StatusCodeSet kFailures = Classes({4, 5});
    return kFailures;
  }

  friend bool operator==(const StatusCodeSet&, const StatusCodeSet&) = default;

 private:
  static constexpr int kMin = 100;
  static constexpr int kMax = 699;
  std::bitset<kMax + 1> bits_;
};

}  // namespace b2bua
