#include "b2bua/redirect_policy.h"

#include <utility>

#include "proto/sip_chars.h"

namespace b2bua {
namespace {

std::string_view StripTrailingDot(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return s;
}

}  // namespace

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

ConfiguredRedirectPolicy::ConfiguredRedirectPolicy(RedirectSecurity security, bool replace_to)
    : security_(std::move(security)), replace_to_(replace_to) {}

PolicyDecision ConfiguredRedirectPolicy::Decide(const Target& target, uint64_t /*call_cookie*/) {
  return Check(target);
}

PolicyDecision ConfiguredRedirectPolicy::Check(const Target& target) const {
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

std::shared_ptr<const ConfiguredRedirectPolicy> ConfiguredRedirectPolicy::FromSettings(
    const RedirectSettings& settings) {
  RedirectSecurity security;
  security.allow_domains = settings.allow.domains;
  security.deny_domains = settings.deny.domains;
  security.allow_cidrs = settings.allow.cidrs;
  security.deny_cidrs = settings.deny.cidrs;
  security.allowed_schemes = settings.allow.schemes;
  // tel: targets are re-routed by number through the route table, never dialled as is.
  security.allowed_schemes.push_back("tel");
  return std::make_shared<const ConfiguredRedirectPolicy>(
      std::move(security), settings.to_uri == RedirectToUri::kReplace);
}

bool ConfiguredRedirectPolicy::AddressAllowed(const proto::NetAddress& address) const {
  if (security_.deny_cidrs.Contains(address)) return false;
  return security_.allow_cidrs.empty() || security_.allow_cidrs.Contains(address);
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
