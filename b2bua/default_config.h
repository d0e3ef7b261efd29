#pragma once

#include <string_view>

namespace b2bua {

/// The configuration used when no file is given (DefaultConfig() parses it). It trusts
/// loopback only: callers elsewhere are refused. It routes each call from loopback to the
/// host and port of its Request-URI (there are no routes) and follows 3xx redirects. It denies no addresses beyond the B2BUA's own, so that a lab set-up on
/// loopback or private addresses works as is; a public edge should start from
/// deploy/b2bua.example.yaml, whose deny lists keep redirects off internal networks.
/// Every value equals the built-in default of its key; they are spelled out so that the
/// text doubles as a reference of the defaults.
inline constexpr std::string_view kDefaultConfigYaml = R"yaml(# b2bua built-in default configuration
# Loopback only: nothing outside this host may place calls or relay through the B2BUA.
access:
  trusted: [127.0.0.0/8, "::1/128"]   # trust domain (RFC 3325): PAI kept, may relay
  callers: [127.0.0.0/8, "::1/128"]   # who may start dialogs at all
  unknown_source: reject              # 403; "drop" answers nothing
  relay_to_request_uri: trusted       # no route matched: Request-URI host for these only
  scanner_user_agents: [friendly-scanner, sipvicious, sipcli, sip-scan, VaxSIPUserAgent,
                        iWar, sundayddr, smap, SIVuS, Test Agent, pplsip]
  flood: { window: 2s, max_requests: 200, block_for: 60s, max_sources: 1000000 }
  max_calls_per_source: 0             # 0: no limit

limits:
  max_calls: 100000          # over it, new INVITEs get 503 with Retry-After
  max_call_duration: 4h
  no_answer_timeout: 180s    # Timer C
  drain_timeout: 30s
  calls_per_second: 0        # all shards together; 0: no limit
  max_request_uri_bytes: 1024  # longer: 414

timers: { t1: 500ms, t2: 4s, t4: 5s }

udp: { socket_buffer_bytes: 4194304, max_datagram_bytes: 65535 }

# Per shard. A message over max_message_bytes is answered 513 and its connection closed.
tcp: { max_message_bytes: 65535, max_connections: 10000, max_connections_per_source: 64,
       idle_timeout: 5m, first_byte_timeout: 10s, message_timeout: 10s, connect_timeout: 5s }

headers:
  pass: [P-Asserted-Identity, P-Preferred-Identity, Privacy, Allow, Supported, Require,
         Accept, Content-Type, Content-Disposition, Session-Expires, Min-SE, User-Agent,
         Subject, Organization, Date, Reason, Alert-Info, Call-Info, Priority, Identity]
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
  max_parallel: 8
  early_media: first
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
