// OPTIONS probes of the routes' next hops: a hop that stops answering is skipped until it
// answers again.

#include "b2bua/call_state.h"

namespace b2bua {

void CallEngine::StartProbing() {
  context_.timers->Cancel(&probe_timer_);
  const proto::Duration interval = config_->probe.options_interval;
  if (interval <= proto::Duration::zero()) {
    hop_health_.ForgetDead();
    return;
  }
  // Spread the shards' first probes over the interval rather than all at once.
  probe_timer_ = context_.timers->Schedule(
      interval * (context_.shard_index + 1) / std::max<uint32_t>(context_.shard_count, 1), this,
      kProbe, 0);
}

void CallEngine::ProbeNextHops() {
  const proto::Duration interval = config_->probe.options_interval;
  if (interval <= proto::Duration::zero()) return;
  const uint64_t round = hop_health_.StartRound();
  for (const Route& route : config_->routes.routes()) {
    for (const NextHop& hop : route.next_hops) {
      proto::SipUri uri;
      if (proto::ParseUri(hop.uri, &uri) != proto::UriError::kNone) continue;
      Peer destination;
      if (DestinationFor(uri, &destination)) {
        SendProbe(hop, destination);
        continue;
      }
      if (uri.host_kind != proto::HostKind::kName || context_.resolver == nullptr) continue;
      // A name is probed at every address it resolves to, as calls will try them; an
      // answer from an earlier round (the config changed) is dropped.
      std::optional<proto::TransportKind> transport;
      if (!uri.transport.empty()) transport = hop.transport;
      context_.resolver->Resolve(
          uri.host, uri.port, transport, uri.scheme == proto::UriScheme::kSips,
          [this, round, hop](const proto::ResolvedTargets& result) {
            if (round != hop_health_.round()) return;
            for (const proto::ResolvedTarget& target : result.targets) {
              if (target.tls) continue;  // no TLS transport to probe over
              Peer resolved;
              resolved.address = target.address;
              resolved.transport = target.transport;
              SendProbe(hop, resolved);
            }
          });
    }
  }
  probe_timer_ = context_.timers->Schedule(interval, this, kProbe, 0);
}

void CallEngine::SendProbe(const NextHop& hop, const Peer& destination) {
  const std::optional<size_t> slot = hop_health_.AddProbe(destination.address);
  if (!slot) return;
  // The Call-ID names this shard, so the answer comes back here.
  std::string branch = tokens_.Branch('o');
  const bool v6 = hop.host.find(':') != std::string::npos;
  const std::string host_port = StrCat(v6 ? "[" : "", hop.host, v6 ? "]" : "", ":", hop.port);
  std::string out = StrCat(
      "OPTIONS sip:", host_port, " SIP/2.0\r\nVia: SIP/2.0/",
      proto::TransportName(destination.transport), " ", HostPortFor(destination.transport), ";branch=", branch,
      ";rport\r\nMax-Forwards: 70\r\n", "From: <sip:b2bua@", local_host_port_, ">;tag=",
      tokens_.Token('p'), "\r\nTo: <sip:", host_port, ">\r\nCall-ID: ",
      tokens_.CallId('q', "probe"),
      "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
  context_.counters->requests_sent[static_cast<size_t>(Method::kOptions)].Inc();
  transactions_->SendRequest(std::move(out), branch, Method::kOptions, destination,
                             kProbeCookie | *slot);
}

void CallEngine::OnProbeResult(uint64_t cookie, bool answered) {
  hop_health_.OnProbeResult(static_cast<size_t>(cookie & ~kProbeCookie), answered);
}

}  // namespace b2bua
