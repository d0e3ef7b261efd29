#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "b2bua/access_policy.h"
#include "b2bua/header_policy.h"
#include "proto/sip_message.h"
#include "proto/transport.h"

namespace b2bua {

// Building one leg's message from the other leg's: which headers cross, which the B2BUA
// writes itself, and the identity headers of RFC 3325. Plain functions, no engine state.

/// The headers every leg's dialog is built from (Via, Route, Record-Route, Call-ID, CSeq,
/// From, To, Contact, Max-Forwards, Content-Length): the B2BUA writes them anew for each
/// leg, so naming one in headers.pass is a configuration error.
bool IsDialogHeader(proto::HeaderId id);

/// The dialog headers and the others the B2BUA writes per leg (Content-Type with the body,
/// History-Info and Diversion for redirects, credentials meant for one hop): none of them
/// ever crosses from one leg to the other, whatever headers.pass says.
bool IsHopByHop(proto::HeaderId id);

/// "Name: value\r\n".
void AppendHeader(std::string& out, std::string_view name, std::string_view value);
/// Content-Type (when there is a body), Content-Length, the empty line and the body.
void AppendBody(std::string& out, std::string_view body, std::string_view content_type);

/// Which identity headers (RFC 3325) PassedHeaders() lets through.
enum class IdentityHeaders : uint8_t {
  kAsserted,    // the sender is in the trust domain: its P-Asserted-Identity passes
  kUntrusted,   // anyone could have written a P-Asserted-Identity: it is dropped
  kPerNextHop,  // neither: the call adds them for each next hop (CallerIdentity)
};

/// kAsserted for a sender in access.trusted, kUntrusted otherwise.
IdentityHeaders IdentityFrom(const AccessConfig& access, const proto::Peer& sender);

/// The headers of `message` the policy lets through to the other leg, as ready-made lines.
std::string PassedHeaders(const proto::SipMessage& message, const HeaderPolicy& policy,
                          IdentityHeaders identity);

/// The identity headers of a new INVITE, which go out or not per next hop.
struct CallerIdentity {
  std::string asserted;     // P-Asserted-Identity lines, from a trusted source only
  std::string preferred;    // P-Preferred-Identity lines
  bool privacy_id = false;  // "Privacy: id": the asserted identity stays in the trust domain
};
CallerIdentity ExtractIdentity(const proto::SipMessage& request, const HeaderPolicy& policy,
                               bool trusted_source);

/// A name-addr value without its tag parameter, so that a new tag can be appended.
std::string WithoutTag(const proto::NameAddr& address);

/// The top Via of a received request with RFC 3581 rport filled in and received added,
/// so that responses find their way back through NAT (RFC 3261 18.2.1).
std::string TopViaForResponse(const proto::Via& via, const proto::Peer& source);

}  // namespace b2bua
