#pragma once

#include <cstdint>
#include <string>

#include "b2bua/access_policy.h"
#include "b2bua/flood_guard.h"
#include "proto/clock.h"
#include "proto/net_address.h"
#include "proto/sip_message.h"

namespace b2bua {

/// What the edge decided for one request, before any other work is done for it.
enum class EdgeVerdict : uint8_t {
  kAccept,
  kRejectUntrusted,  // not a caller, unknown_source: reject: answer 403 (never an ACK)
  kDropUntrusted,    // not a caller, unknown_source: drop
  kDropScanner,      // a scanner's User-Agent
  kBlockFlood,       // this request put its source over the flood limit: log it once
  kDropFlood,        // the source is serving a flood block
};

/// The edge policy of one shard: takes a parsed request and its source, returns a verdict;
/// the shard counts, logs and answers. Cheapest test first: trusted sources pass at once;
/// everyone else is counted for floods, screened for scanners, and may start dialogs only
/// from access.callers. In-dialog requests (To tag) from a caller's far end are left to
/// the dialog lookup, where one the B2BUA does not know gets 481.
class EdgeGuard {
 public:
  /// Owning shard only. No allocation once the flood table and scratch buffer are warm.
  EdgeVerdict Admit(const AccessConfig& access, const proto::SipMessage& request,
                    const proto::NetAddress& source, proto::TimePoint now);

  /// Owning shard only.
  FloodGuard& flood() { return flood_; }
  const FloodGuard& flood() const { return flood_; }

 private:
  FloodGuard flood_;
  std::string scratch_;  // the lower-cased User-Agent of the scanner check
};

}  // namespace b2bua
