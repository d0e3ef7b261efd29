// Cost of the edge policy (b2bua/edge_guard.h) per request, the work every request from
// outside the trust domain pays before anything else: trust and caller lists, the
// per-source flood table, the scanner User-Agent list. The budget is 1 µs a request.
//
// The request is the corpus INVITE (tests/data/sip/invite_sdp.sip), parsed once; the config is a
// public-edge one: 20 trusted trunk prefixes, callers anywhere, the default scanner list,
// and a flood table already holding `sources` other addresses.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "b2bua/access_policy.h"
#include "b2bua/edge_guard.h"
#include "proto/clock.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"

namespace b2bua {
namespace {

std::string ReadSample(const std::string& name) {
  std::ifstream in(std::string(B2BUA_SIP_DATA_DIR) + "/" + name, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

proto::NetAddress Address(uint32_t n) {
  proto::NetAddress address;
  const std::string text = "198." + std::to_string(18 + (n >> 16) % 2) + "." +
                           std::to_string((n >> 8) & 255) + "." + std::to_string(n & 255);
  proto::NetAddress::ParseIp(text, 5060, &address);
  return address;
}

AccessConfig PublicEdge() {
  AccessConfig access;
  std::vector<std::string> trunks;
  for (int i = 0; i < 20; ++i) trunks.push_back("10." + std::to_string(i) + ".0.0/16");
  access.trusted = *proto::CidrList::Parse(trunks);
  access.callers = *proto::CidrList::Parse({"0.0.0.0/0", "::/0"});
  // Far above what the loop sends, so the measured path is the common one: pass.
  access.flood.max_requests = 1u << 30;
  return access;
}

/** Measure EdgeGuard::Admit for an INVITE from an untrusted caller, `sources` addresses
    already in the flood table. */
void BM_EdgeAdmitUntrustedInvite(benchmark::State& state) {
  const std::string bytes = ReadSample("invite_sdp.sip");
  proto::SipMessage message;
  if (!proto::SipParser().Parse(bytes, proto::Framing::kDatagram, &message).ok()) {
    state.SkipWithError("invite_sdp.sip does not parse");
    return;
  }
  const AccessConfig access = PublicEdge();
  EdgeGuard guard;
  proto::FakeClock clock;
  const uint32_t sources = static_cast<uint32_t>(state.range(0));
  for (uint32_t i = 0; i < sources; ++i) guard.Admit(access, message, Address(i), clock.Now());
  uint32_t n = 0;
  int64_t accepted = 0;
  for (auto _ : state) {
    const EdgeVerdict verdict =
        guard.Admit(access, message, Address(n++ % (sources ? sources : 1)), clock.Now());
    accepted += verdict == EdgeVerdict::kAccept;
  }
  benchmark::DoNotOptimize(accepted);
  if (accepted != static_cast<int64_t>(state.iterations())) state.SkipWithError("refused");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_EdgeAdmitUntrustedInvite)->Arg(1)->Arg(10000)->Arg(1000000);

/** Measure EdgeGuard::Admit for a request from a trusted trunk: two prefix walks. */
void BM_EdgeAdmitTrusted(benchmark::State& state) {
  const std::string bytes = ReadSample("invite_sdp.sip");
  proto::SipMessage message;
  proto::SipParser().Parse(bytes, proto::Framing::kDatagram, &message);
  const AccessConfig access = PublicEdge();
  EdgeGuard guard;
  proto::FakeClock clock;
  proto::NetAddress trunk;
  proto::NetAddress::ParseIp("10.19.1.1", 5060, &trunk);
  for (auto _ : state) {
    benchmark::DoNotOptimize(guard.Admit(access, message, trunk, clock.Now()));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_EdgeAdmitTrusted);

}  // namespace
}  // namespace b2bua
