#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"

namespace b2bua {

/// What happens to the headers the B2BUA does not generate itself when it copies a
/// message from one leg to the other. Header names compare case-insensitively, and a
/// compact form ("k", "c", "s", ...) counts as its long name.
class HeaderPolicy {
 public:
  /// The `pass` list used when the file has none.
  static const std::vector<std::string>& DefaultPass();

  /// Passes DefaultPass(), strips nothing, drops unknown headers.
  HeaderPolicy();
  HeaderPolicy(std::vector<std::string> pass, std::vector<std::string> strip, bool pass_unknown);

  /// Whether a header named `name` is copied to the other leg: never when it is in
  /// `strip`, always when it is in `pass`, and otherwise (a header named in neither list,
  /// typically an X- header) only when `pass_unknown` is set. Safe from any thread; O(1)
  /// and allocation-free.
  bool IsPassed(std::string_view name) const;

  /// The lists as configured (spelling kept), for logs and the admin dump.
  const std::vector<std::string>& pass() const { return pass_; }
  const std::vector<std::string>& strip() const { return strip_; }
  bool pass_unknown() const { return pass_unknown_; }

 private:
  // Hashes and compares ASCII case-insensitively, so a lookup needs no lower-cased copy.
  struct CaseInsensitiveHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const;
  };
  struct CaseInsensitiveEq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const;
  };
  using NameSet = absl::flat_hash_set<std::string, CaseInsensitiveHash, CaseInsensitiveEq>;

  void Index();

  std::vector<std::string> pass_;
  std::vector<std::string> strip_;
  bool pass_unknown_ = false;
  // pass_ and strip_ under their long names; IsPassed() maps a compact name to its long one.
  NameSet pass_index_;
  NameSet strip_index_;
};

}  // namespace b2bua
