#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/net_address.h"

namespace b2bua::proto {

/// An IPv4 or IPv6 prefix such as "10.0.0.0/8" or "2001:db8::/32".
///
/// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) count as the IPv4 address they carry, since a
/// dual-stack socket sends to that IPv4 host: "sip:x@[::ffff:10.0.0.1]" must not slip past a
/// deny of 10.0.0.0/8. A prefix written in mapped form with a length of 96 or more is stored
/// as the IPv4 prefix it denotes. So 0.0.0.0/0 holds every IPv4 address, mapped ones
/// included, and ::/0 holds every IPv6 address that is not IPv4-mapped.
class Cidr {
 public:
  Cidr() = default;

  /// Safe from any thread (config load). Parses "ADDR/LEN" or a bare address (a /32 or /128
  /// host prefix); IPv6 may be bracketed. False for a bad address, a length out of range, or
  /// bits set past the length ("10.0.0.1/8": most likely a typo, refused at load).
  static bool Parse(std::string_view text, Cidr* out);
  /// Safe from any thread (config load). Parse() with the reason for a refusal: not an
  /// address, a length out of range, or host bits set. A bracketed IPv4 is not an address.
  static absl::StatusOr<Cidr> ParseOrExplain(std::string_view text);

  /// Safe from any thread. True when `address` lies in the prefix; the port is ignored.
  bool Contains(const NetAddress& address) const;

  bool is_v6() const { return v6_; }
  int prefix_length() const { return prefix_length_; }
  /// Network-order bytes; IPv4 in the first four.
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  /// "10.0.0.0/8", "2001:db8::/32".
  std::string ToString() const;

  friend bool operator==(const Cidr&, const Cidr&) = default;

 private:
  enum class Problem : uint8_t { kNone, kNotAnAddress, kLength, kHostBits };
  static Problem ParseChecked(std::string_view text, Cidr* out, int* width, int* length);

  std::array<uint8_t, 16> bytes_{};
  uint8_t prefix_length_ = 0;
  bool v6_ = false;
};

/// A set of prefixes, parsed once when the config is loaded and asked per packet.
/// Contains() walks the IPv4 or the IPv6 prefixes only, with one masked compare each; no
/// allocation. Immutable once built: safe from any thread.
class CidrList {
 public:
  CidrList() = default;
  explicit CidrList(std::vector<Cidr> cidrs);

  /// Every text parsed with Cidr::ParseOrExplain(); its error for the first bad one.
  static absl::StatusOr<CidrList> Parse(const std::vector<std::string>& texts);

  /// True when some prefix holds `address` (the port is ignored).
  bool Contains(const NetAddress& address) const;
  bool empty() const { return v4_.empty() && v6_.empty(); }
  /// In the order given.
  const std::vector<Cidr>& cidrs() const { return cidrs_; }

  friend bool operator==(const CidrList& a, const CidrList& b) { return a.cidrs_ == b.cidrs_; }

 private:
  struct V4 {
    uint32_t network;
    uint32_t mask;
  };
  struct V6 {
    uint64_t network[2];
    uint64_t mask[2];
  };
  std::vector<Cidr> cidrs_;
  std::vector<V4> v4_;
  std::vector<V6> v6_;
};

}  // namespace b2bua::proto
