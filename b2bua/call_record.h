#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "b2bua/target_search.h"
#include "proto/clock.h"

namespace b2bua {

// The call record: one line per call that went through the redirect engine, key=value, so
// that log shippers parse it without a schema.

/// One INVITE of a redirected call's callee leg, as the record lists it.
struct BranchRecord {
  uint16_t target = 0;  // index in the call's target set
  proto::TimePoint started{};
  proto::TimePoint ended{};  // {} while no final answer came
};

/// Safe from any thread. The redirect part of a record, starting with a space:
/// ` request_uri="..." depth=N loops=N refused=N hops=[{target="..." q=1.000 state=...
/// status=N answer_ms=N start_ms=N},...]`. Hops are the targets other than the original, in
/// the order they left pending; answer_ms and start_ms come from the target's last branch
/// in `branches` (start_ms from `call_started`), and are left out when it had none.
std::string RedirectRecordFields(std::string_view request_uri, const TargetSearch& search,
                                 int refused, std::span<const BranchRecord> branches,
                                 proto::TimePoint call_started);

/// Safe from any thread. The whole line: `call-record call_id="..." outcome=...
/// duration_ms=N` and the redirect fields. The Call-ID is the caller's: that is what the
/// caller's support desk will quote.
std::string CallRecordLine(std::string_view call_id, std::string_view outcome,
                           proto::Duration duration, std::string_view redirect_fields);

}  // namespace b2bua
