#pragma once

#include "absl/status/statusor.h"
#include "proto/net_address.h"

namespace b2bua::proto {

/// Boundary (start-up). A non-blocking, close-on-exec socket of `type` (SOCK_DGRAM or
/// SOCK_STREAM) bound to `listen` with SO_REUSEPORT, so that every shard binds the same
/// address and the kernel spreads peers across them. IPv6 sockets are v6-only. On success
/// `*bound` is the address actually bound (a port 0 resolved) and the caller owns the fd.
absl::StatusOr<int> OpenReusePortSocket(int type, const NetAddress& listen, NetAddress* bound);

}  // namespace b2bua::proto
