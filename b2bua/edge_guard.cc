#include "b2bua/edge_guard.h"

namespace b2bua {

EdgeVerdict EdgeGuard::Admit(const AccessConfig& access, const proto::SipMessage& request,
                             const proto::NetAddress& source, proto::TimePoint now) {
  if (access.IsTrusted(source)) return EdgeVerdict::kAccept;
  switch (flood_.Count(source, now, access.flood)) {
    case FloodGuard::Verdict::kPass: break;
    case FloodGuard::Verdict::kBlockedNow: return EdgeVerdict::kBlockFlood;
    case FloodGuard::Verdict::kBlocked: return EdgeVerdict::kDropFlood;
  }
  if (!access.scanner_user_agents.empty()) {
    const proto::HeaderField* agent = request.FindHeader(proto::HeaderId::kUserAgent);
    if (agent != nullptr && access.scanner_user_agents.Matches(agent->value, &scratch_))
      return EdgeVerdict::kDropScanner;
  }
  if (!request.to().tag.empty() || access.IsCaller(source)) return EdgeVerdict::kAccept;
  if (access.unknown_source == UnknownSourceAction::kDrop ||
      request.method() == proto::Method::kAck)
    return EdgeVerdict::kDropUntrusted;
  return EdgeVerdict::kRejectUntrusted;
}

}  // namespace b2bua
