#include "proto/net_address.h"
#include "proto/transport.h"

#include <arpa/inet.h>

#include <cstring>

namespace b2bua::proto {

bool NetAddress::ParseIp(std::string_view text, uint16_t port, NetAddress* out) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  char buffer[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof(buffer)) return false;
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  NetAddress result;
  result.port_ = port;
  if (inet_pton(AF_INET, buffer, result.bytes_.data()) == 1) {
    *out = result;
    return true;
  }
  if (inet_pton(AF_INET6, buffer, result.bytes_.data()) == 1) {
    result.v6_ = true;
    *out = result;
    return true;
  }
  return false;
}

bool NetAddress::ParseIpPort(std::string_view text, NetAddress* out) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == text.size()) return false;
  std::string_view host = text.substr(0, colon);
  std::string_view digits = text.substr(colon + 1);
  // An unbracketed IPv6 literal has more colons: its port must be bracketed.
  if (host.find(':') != std::string_view::npos && host.front() != '[') return false;
  uint32_t port = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    port = port * 10 + static_cast<uint32_t>(c - '0');
    if (port > 65535) return false;
  }
  return ParseIp(host, static_cast<uint16_t>(port), out);
}

NetAddress NetAddress::FromSockaddr(const sockaddr* address, socklen_t length) {
  NetAddress result;
  if (address->sa_family == AF_INET && length >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    std::memcpy(result.bytes_.data(), &v4->sin_addr, 4);
    result.port_ = ntohs(v4->sin_port);
  } else if (address->sa_family == AF_INET6 &&
             length >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    std::memcpy(result.bytes_.data(), &v6->sin6_addr, 16);
    result.port_ = ntohs(v6->sin6_port);
    result.v6_ = true;
  }
  return result;
}

socklen_t NetAddress::ToSockaddr(sockaddr_storage* storage) const {
  std::memset(storage, 0, sizeof(*storage));
  if (v6_) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(storage);
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port_);
    std::memcpy(&v6->sin6_addr, bytes_.data(), 16);
    return sizeof(sockaddr_in6);
  }
  auto* v4 = reinterpret_cast<sockaddr_in*>(storage);
  v4->sin_family = AF_INET;
  v4->sin_port = htons(port_);
  std::memcpy(&v4->sin_addr, bytes_.data(), 4);
  return sizeof(sockaddr_in);
}

bool NetAddress::is_loopback() const {
  if (!v6_) return bytes_[0] == 127;
  static constexpr std::array<uint8_t, 16> kV6Loopback{0, 0, 0, 0, 0, 0, 0, 0,
                                                      0, 0, 0, 0, 0, 0, 0, 1};
  return bytes_ == kV6Loopback;
}

bool NetAddress::is_unspecified() const {
  for (size_t i = 0; i < (v6_ ? 16u : 4u); ++i)
    if (bytes_[i] != 0) return false;
  return true;
}

size_t NetAddress::WriteIp(char* out) const {
  if (inet_ntop(v6_ ? AF_INET6 : AF_INET, bytes_.data(), out, INET6_ADDRSTRLEN) == nullptr)
    return 0;
  return std::strlen(out);
}

std::string NetAddress::IpString() const {
  char buffer[INET6_ADDRSTRLEN];
  return std::string(buffer, WriteIp(buffer));
}

std::string NetAddress::ToString() const {
  std::string ip = IpString();
  std::string result = v6_ ? "[" + ip + "]" : ip;
  result += ':';
  result += std::to_string(port_);
  return result;
}

std::string_view TransportName(TransportKind kind) {
  switch (kind) {
    case TransportKind::kUdp: return "UDP";
    case TransportKind::kTcp: return "TCP";
    case TransportKind::kTls: return "TLS";
  }
  return "UDP";
}

}  // namespace b2bua::proto
