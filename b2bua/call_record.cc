#include "b2bua/call_record.h"

#include <chrono>

#include "proto/str_util.h"

namespace b2bua {
namespace {

int64_t Milliseconds(proto::Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// q in thousandths as RFC 3261 writes it: "0.500", "1.000".
std::string QValue(uint16_t q_millis) {
  std::string out = proto::StrCat(q_millis / 1000, ".");
  out += static_cast<char>('0' + q_millis / 100 % 10);
  out += static_cast<char>('0' + q_millis / 10 % 10);
  out += static_cast<char>('0' + q_millis % 10);
  return out;
}

}  // namespace

std::string RedirectRecordFields(std::string_view request_uri, const TargetSearch& search,
                                 int refused, std::span<const BranchRecord> branches,
                                 proto::TimePoint call_started) {
  const TargetSet& targets = search.targets();
  std::string out = proto::StrCat(" request_uri=\"", request_uri, "\" depth=",
                                  search.max_depth_seen(), " loops=", search.loops(),
                                  " refused=", refused, " hops=[");
  bool first = true;
  for (uint16_t index : targets.attempt_order()) {
    const Target& target = targets.at(index);
    if (target.is_original()) continue;
    proto::StrAppend(&out, first ? "" : ",", "{target=\"", target.request_uri,
                     "\" q=", QValue(target.q_millis), " state=",
                     TargetStateName(target.state), " status=", target.status);
    const BranchRecord* last = nullptr;
    for (const BranchRecord& branch : branches)
      if (branch.target == index) last = &branch;
    if (last != nullptr && last->ended != proto::TimePoint{})
      proto::StrAppend(&out, " answer_ms=", Milliseconds(last->ended - last->started));
    if (last != nullptr)
      proto::StrAppend(&out, " start_ms=", Milliseconds(last->started - call_started));
    out += '}';
    first = false;
  }
  out += ']';
  return out;
}

std::string CallRecordLine(std::string_view call_id, std::string_view outcome,
                           proto::Duration duration, std::string_view redirect_fields) {
  return proto::StrCat("call-record call_id=\"", call_id, "\" outcome=", outcome,
                       " duration_ms=", Milliseconds(duration), redirect_fields);
}

}  // namespace b2bua
