#include "b2bua/redirect_policy.h"

#include <utility>

#include "proto/sip_chars.h"

namespace b2bua {
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

std::string_view StripTrailingDot(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return s;
}

}  // namespace

bool Cidr::Parse(std::string_view text, Cidr* out) {
  size_t slash = text.find('/');
  proto::NetAddress address;
  if (!proto::NetAddress::ParseIp(text.substr(0, slash), 0, &address)) return false;
  const int width = address.is_v6() ? kIpv6Bits : kIpv4Bits;
  int length = width;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return false;
    length = 0;
    for (char c : digits) {
      if (!proto::IsDigit(c)) return false;
      length = length * 10 + (c - '0');
    }
    if (length > width) return false;
  }
  if (!HostBitsClear(address.bytes(), length, width)) return false;
  Cidr cidr;
  cidr.bytes_ = address.bytes();
  cidr.v6_ = address.is_v6();
  cidr.prefix_length_ = static_cast<uint8_t>(length);
  // Contains() sees mapped addresses as IPv4, so a mapped prefix must be IPv4 too. One
  // shorter than /96 reaches beyond the mapped block and stays IPv6.
  if (cidr.v6_ && length >= kMappedPrefixBits && IsIpv4Mapped(cidr.bytes_)) {
    cidr.bytes_ = UnmapIpv4(cidr.bytes_);
    cidr.v6_ = false;
    cidr.prefix_length_ = static_cast<uint8_t>(length - kMappedPrefixBits);
  }
  *out = cidr;
  return true;
}

bool Cidr::Contains(const proto::NetAddress& address) const {
  std::array<uint8_t, 16> bytes = address.bytes();
  bool v6 = address.is_v6();
  if (v6 && IsIpv4Mapped(bytes)) {
    bytes = UnmapIpv4(bytes);
    v6 = false;
  }
  return v6 == v6_ && PrefixEqual(bytes, bytes_, prefix_length_);
}

bool DomainMatches(std::string_view host, std::string_view domain) {
  host = StripTrailingDot(host);
  domain = StripTrailingDot(domain);
  if (!domain.empty() && domain.front() == '.') domain.remove_prefix(1);
  // An empty domain would match every host: a config slip must not open (or close) all.
  if (domain.empty() || host.size() < domain.size()) return false;
  if (host.size() == domain.size()) return proto::EqualsIgnoreCase(host, domain);
  // The dot boundary: "example.com" must not match "badexample.com".
  return host[host.size() - domain.size() - 1] == '.' &&
         proto::EqualsIgnoreCase(host.substr(host.size() - domain.size()), domain);
}

std::string_view PolicyDecisionName(PolicyDecision decision) {
  switch (decision) {
    case PolicyDecision::kAccept: return "accept";
    case PolicyDecision::kAcceptReplace: return "accept-replace";
    case PolicyDecision::kReject: return "reject";
    case PolicyDecision::kStop: return "stop";
    case PolicyDecision::kPending: return "pending";
  }
  return "unknown";
}

TargetKind Classify(const Target& target) {
  proto::SipUri uri;
  if (target.ParseRequestUri(&uri) != proto::UriError::kNone) return TargetKind::kOther;
  switch (uri.scheme) {
    case proto::UriScheme::kSip:
    case proto::UriScheme::kSips:
      return TargetKind::kSipUri;
    case proto::UriScheme::kTel:
      return TargetKind::kTelNumber;
    case proto::UriScheme::kOther:
      return TargetKind::kOther;
  }
  return TargetKind::kOther;
}

ConfiguredRedirectPolicy::ConfiguredRedirectPolicy(RedirectSecurity security, bool replace_to)
    : security_(std::move(security)), replace_to_(replace_to) {}

PolicyDecision ConfiguredRedirectPolicy::Decide(const Target& target, uint64_t call_cookie) {
  proto::SipUri uri;
  if (target.ParseRequestUri(&uri) != proto::UriError::kNone) return PolicyDecision::kReject;
  if (!SchemeAllowed(uri.scheme_text)) return PolicyDecision::kReject;
  if (uri.IsSip()) {
    if (!HostAllowed(uri.host, uri.host_kind)) return PolicyDecision::kReject;
    if (!uri.maddr.empty()) {
      std::string_view maddr = uri.maddr;
      bool bracketed = maddr.size() >= 2 && maddr.front() == '[' && maddr.back() == ']';
      if (bracketed) maddr = maddr.substr(1, maddr.size() - 2);
      bool v6 = bracketed || maddr.find(':') != std::string_view::npos;
      if (!HostAllowed(maddr, proto::ClassifyHost(maddr, v6))) return PolicyDecision::kReject;
    }
  }
  return replace_to_ ? PolicyDecision::kAcceptReplace : PolicyDecision::kAccept;
}

bool ConfiguredRedirectPolicy::AddressAllowed(const proto::NetAddress& address) const {
  for (const Cidr& cidr : security_.deny_cidrs)
    if (cidr.Contains(address)) return false;
  if (security_.allow_cidrs.empty()) return true;
  for (const Cidr& cidr : security_.allow_cidrs)
    if (cidr.Contains(address)) return true;
  return false;
}

bool ConfiguredRedirectPolicy::DomainAllowed(std::string_view host) const {
  for (const std::string& domain : security_.deny_domains)
    if (DomainMatches(host, domain)) return false;
  if (security_.allow_domains.empty()) return true;
  for (const std::string& domain : security_.allow_domains)
    if (DomainMatches(host, domain)) return true;
  return false;
}

bool ConfiguredRedirectPolicy::SchemeAllowed(std::string_view scheme) const {
  for (const std::string& allowed : security_.allowed_schemes)
    if (proto::EqualsIgnoreCase(scheme, allowed)) return true;
  return false;
}

bool ConfiguredRedirectPolicy::HostAllowed(std::string_view host, proto::HostKind kind) const {
  switch (kind) {
    case proto::HostKind::kIpv4:
    case proto::HostKind::kIpv6: {
      proto::NetAddress address;
      // ParseUri() is lenient: IPv4 with leading zeros ("010.0.0.1", octal to some stacks),
      // IPv6 like "2001:db8:::192.0.2.1". What cannot be read as one address cannot be
      // vetted, so it is refused.
      if (!proto::NetAddress::ParseIp(host, 0, &address)) return false;
      return AddressAllowed(address);
    }
    case proto::HostKind::kName:
      return DomainAllowed(host);
    case proto::HostKind::kNone:
      return false;
  }
  return false;
}

}  // namespace b2bua
