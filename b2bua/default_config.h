#pragma once

#include <string_view>

namespace b2bua {

/// The configuration used when no file is given (DefaultConfig() parses it). It routes each
/// call to the host and port of its Request-URI (there are no routes) and follows 3xx
/// redirects. It denies no addresses beyond the B2BUA's own, so that a lab set-up on
/// loopback or private addresses works as is; a public edge should start from
/// deploy/b2bua.example.yaml, whose deny lists keep redirects off internal networks.
/// Every value equals the built-in default of its key; they are spelled out so that the
/// text doubles as a reference of the defaults.
inline constexpr std::string_view kDefaultConfigYaml = R"yaml(# b2bua built-in default configuration
limits:
  max_calls: 100000          # over it, new INVITEs get 503 with Retry-After
  max_call_duration: 4h
  no_answer_timeout: 180s    # Timer C
  drain_timeout: 30s

timers: { t1: 500ms, t2: 4s, t4: 5s }

udp: { socket_buffer_bytes: 4194304, max_datagram_bytes: 65535 }

headers:
  pass: [P-Asserted-Identity, P-Preferred-Identity, Privacy, Allow, Supported, Require,
         Accept, Content-Type, Content-Disposition, Session-Expires, Min-SE, User-Agent,
         Subject, Organization, Date, Reason, Alert-Info, Call-Info, Priority]
  strip: []
  pass_unknown: false

redirect:
  mode: follow
  send_181: true
  max_depth: 5
  max_targets: 16
  target_timeout: 8s
  to_uri: keep
  try_next_on: ["4xx", "5xx"]
  history_info: true
  diversion: false
  relay_last_3xx: false
  fork: serial
  cache_301: { entries: 1000, ttl: 1h }
  allow: { domains: [], cidrs: [], schemes: [sip, sips] }
  deny: { domains: [], cidrs: [] }
  deny_self: true

failover_on: [408, 500, 502, 503, 504]

probe: { options_interval: 30s }

# No routes: the Request-URI host and port are the next hop.
routes: []
)yaml";

}  // namespace b2bua
