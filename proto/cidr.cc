#include "proto/cidr.h"

#include <arpa/inet.h>

#include <utility>

#include "absl/status/status.h"
#include "proto/sip_chars.h"
#include "proto/str_util.h"

namespace b2bua::proto {
namespace {

constexpr int kIpv4Bits = 32;
constexpr int kIpv6Bits = 128;
// ::ffff:0:0/96, the IPv4-mapped block (RFC 4291 2.5.5.2).
constexpr int kMappedPrefixBits = 96;

bool IsIpv4Mapped(const std::array<uint8_t, 16>& bytes) {
  for (int i = 0; i < 10; ++i)
    if (bytes[i] != 0) return false;
  return bytes[10] == 0xff && bytes[11] == 0xff;
}

// Moves the IPv4 address out of a mapped IPv6 one into the first four bytes.
std::array<uint8_t, 16> UnmapIpv4(const std::array<uint8_t, 16>& bytes) {
  std::array<uint8_t, 16> v4{};
  for (int i = 0; i < 4; ++i) v4[i] = bytes[12 + i];
  return v4;
}

// True when the first `bits` bits of `a` and `b` agree.
bool PrefixEqual(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b, int bits) {
  int whole = bits / 8;
  for (int i = 0; i < whole; ++i)
    if (a[i] != b[i]) return false;
  int rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

bool HostBitsClear(const std::array<uint8_t, 16>& bytes, int prefix, int width) {
  for (int bit = prefix; bit < width; ++bit)
    if (bytes[bit / 8] & (0x80 >> (bit % 8))) return false;
  return true;
}

uint64_t Load64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

uint32_t Load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// The top `bits` of a 64-bit word set (bits 0..64).
uint64_t Mask64(int bits) {
  if (bits <= 0) return 0;
  if (bits >= 64) return ~uint64_t{0};
  return ~uint64_t{0} << (64 - bits);
}

}  // namespace

Cidr::Problem Cidr::ParseChecked(std::string_view text, Cidr* out, int* width, int* length) {
  const size_t slash = text.find('/');
  std::string_view ip = text.substr(0, slash);
  NetAddress address;
  // "[2001:db8::]/32", as IPv6 is written in URIs; a bracketed IPv4 is a typo.
  const bool bracketed = ip.size() > 2 && ip.front() == '[' && ip.back() == ']';
  if (!NetAddress::ParseIp(ip, 0, &address) || (bracketed && !address.is_v6()))
    return Problem::kNotAnAddress;
  *width = address.is_v6() ? kIpv6Bits : kIpv4Bits;
  *length = *width;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return Problem::kLength;
    *length = 0;
    for (char c : digits) {
      if (!IsDigit(c)) return Problem::kLength;
      *length = *length * 10 + (c - '0');
    }
    if (*length > *width) return Problem::kLength;
  }
  // "10.0.0.1/8" is nearly always a typo for "10.0.0.0/8" or "10.0.0.1/32"; refusing it
  // keeps the lists meaning what they look like.
  if (!HostBitsClear(address.bytes(), *length, *width)) return Problem::kHostBits;
  Cidr cidr;
  cidr.bytes_ = address.bytes();
  cidr.v6_ = address.is_v6();
  cidr.prefix_length_ = static_cast<uint8_t>(*length);
  // Contains() sees mapped addresses as IPv4, so a mapped prefix must be IPv4 too. One
  // shorter than /96 reaches beyond the mapped block and stays IPv6.
  if (cidr.v6_ && *length >= kMappedPrefixBits && IsIpv4Mapped(cidr.bytes_)) {
    cidr.bytes_ = UnmapIpv4(cidr.bytes_);
    cidr.v6_ = false;
    cidr.prefix_length_ = static_cast<uint8_t>(*length - kMappedPrefixBits);
  }
  *out = cidr;
  return Problem::kNone;
}

bool Cidr::Parse(std::string_view text, Cidr* out) {
  int width = 0;
  int length = 0;
  return ParseChecked(text, out, &width, &length) == Problem::kNone;
}

absl::StatusOr<Cidr> Cidr::ParseOrExplain(std::string_view text) {
  Cidr cidr;
  int width = 0;
  int length = 0;
  switch (ParseChecked(text, &cidr, &width, &length)) {
    case Problem::kNone:
      return cidr;
    case Problem::kNotAnAddress:
      return absl::InvalidArgumentError(StrCat(
          "'", text,
          "' is not a CIDR (expected an IPv4 or IPv6 address, then '/' and a prefix length)"));
    case Problem::kLength:
      return absl::InvalidArgumentError(
          StrCat("'", text, "': the prefix length must be 0..", width));
    case Problem::kHostBits:
      return absl::InvalidArgumentError(StrCat("'", text, "' has bits set after the /", length,
                                               " prefix (host bits must be zero)"));
  }
  return absl::InvalidArgumentError(StrCat("'", text, "' is not a CIDR"));
}

bool Cidr::Contains(const NetAddress& address) const {
  std::array<uint8_t, 16> bytes = address.bytes();
  bool v6 = address.is_v6();
  if (v6 && IsIpv4Mapped(bytes)) {
    bytes = UnmapIpv4(bytes);
    v6 = false;
  }
  return v6 == v6_ && PrefixEqual(bytes, bytes_, prefix_length_);
}

std::string Cidr::ToString() const {
  const std::array<uint8_t, 16>& b = bytes_;
  std::string ip;
  if (v6_) {
    // RFC 5952 text, as an operator writes it in the config.
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, b.data(), text, sizeof(text)) != nullptr) ip = text;
  } else {
    ip = StrCat(int{b[0]}, ".", int{b[1]}, ".", int{b[2]}, ".", int{b[3]});
  }
  return StrCat(ip, "/", int{prefix_length_});
}

CidrList::CidrList(std::vector<Cidr> cidrs) : cidrs_(std::move(cidrs)) {
  for (const Cidr& c : cidrs_) {
    const uint8_t* b = c.bytes().data();
    if (c.is_v6()) {
      V6 v;
      v.mask[0] = Mask64(c.prefix_length());
      v.mask[1] = Mask64(c.prefix_length() - 64);
      v.network[0] = Load64(b) & v.mask[0];
      v.network[1] = Load64(b + 8) & v.mask[1];
      v6_.push_back(v);
    } else {
      const uint32_t mask =
          c.prefix_length() == 0 ? 0 : ~uint32_t{0} << (kIpv4Bits - c.prefix_length());
      v4_.push_back(V4{Load32(b) & mask, mask});
    }
  }
}

absl::StatusOr<CidrList> CidrList::Parse(const std::vector<std::string>& texts) {
  std::vector<Cidr> cidrs;
  cidrs.reserve(texts.size());
  for (const std::string& text : texts) {
    absl::StatusOr<Cidr> cidr = Cidr::ParseOrExplain(text);
    if (!cidr.ok()) return cidr.status();
    cidrs.push_back(*cidr);
  }
  return CidrList(std::move(cidrs));
}

bool CidrList::Contains(const NetAddress& address) const {
  const uint8_t* b = address.bytes().data();
  bool v6 = address.is_v6();
  if (v6 && IsIpv4Mapped(address.bytes())) {
    b += 12;
    v6 = false;
  }
  if (!v6) {
    const uint32_t ip = Load32(b);
    for (const V4& v : v4_)
      if ((ip & v.mask) == v.network) return true;
    return false;
  }
  const uint64_t hi = Load64(b);
  const uint64_t lo = Load64(b + 8);
  for (const V6& v : v6_)
    if ((hi & v.mask[0]) == v.network[0] && (lo & v.mask[1]) == v.network[1]) return true;
  return false;
}

}  // namespace b2bua::proto
