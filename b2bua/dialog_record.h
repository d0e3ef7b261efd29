#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/net_address.h"
#include "proto/transport.h"

namespace b2bua {

/// One side of a bridged call, seen from the B2BUA: the dialog state RFC 3261 12.1 keeps,
/// and where in-dialog requests to that side go. The call engine's legs and the cluster's
/// dialog records hold the same thing.
struct Dialog {
  std::string call_id;
  std::string local_party;    // our From (callee leg) or To (caller leg), with our tag
  std::string remote_party;   // the far end's name-addr, with its tag once known
  std::string remote_target;  // the far end's Contact URI
  std::vector<std::string> route_set;  // Route values in the order they are sent
  uint32_t local_cseq = 0;
  uint32_t remote_cseq = 0;
  proto::Peer peer;  // where in-dialog requests to this side go

  friend bool operator==(const Dialog&, const Dialog&) = default;
};

/// What is kept of a confirmed call in the cluster's dialog store, so that another instance
/// can answer and relay its in-dialog requests once the owner is gone. Written when the
/// caller ACKs the 2xx, rewritten when an in-dialog request changes a CSeq or a target,
/// removed when the call ends. Deadlines are absolute (Unix milliseconds): the instance that
/// reads them runs its own clock.
struct DialogRecord {
  /// The key in the store and in the routing token of both legs' Contact: the owner's
  /// instance id, its boot epoch, the shard and the call (DialogKey()).
  std::string key;
  /// The instance that owns the call now.
  std::string owner;
  Dialog caller;  // the A-leg: the B2BUA is the UAS (a stream connection id is not kept)
  Dialog callee;  // the B-leg: the B2BUA is the UAC
  uint32_t caller_invite_cseq = 0;
  uint32_t callee_invite_cseq = 0;
  /// When max_call_duration ends the call (Unix ms); 0: never.
  int64_t ends_at_unix_ms = 0;
  /// When the call was answered (Unix ms), for its call record.
  int64_t started_at_unix_ms = 0;

  friend bool operator==(const DialogRecord&, const DialogRecord&) = default;
};

/// Safe from any thread. The record as bytes: length-prefixed fields ("<len>:<bytes>"), a
/// version first, so no SIP value needs escaping.
std::string EncodeDialogRecord(const DialogRecord& record);

/// Safe from any thread. The record `bytes` hold, or nullopt when they are not one this
/// version wrote: the store is shared, so its content is checked like any input.
std::optional<DialogRecord> DecodeDialogRecord(std::string_view bytes);

/// Safe from any thread. A call's key: "<instance>.<boot epoch hex>.<shard>.<call hex>";
/// unique across instances and their restarts. Only [a-z0-9.] given a valid instance id, so it
/// can stand in a SIP URI user part.
std::string DialogKey(std::string_view instance_id, uint64_t boot_epoch, uint32_t shard,
                      uint64_t call);

/// The routing token of a cluster Contact's user part: "b2b-<key>". The front sends a
/// request carrying it to the instance the key names (its first dot-separated field).
inline constexpr std::string_view kRoutingTokenPrefix = "b2b-";

/// Safe from any thread. The key inside a Request-URI user part "b2b-<key>", or empty.
std::string_view KeyFromRoutingToken(std::string_view user);
/// Safe from any thread. The instance id a key starts with, or empty.
std::string_view OwnerOfKey(std::string_view key);

}  // namespace b2bua
