#pragma once

#include <string_view>

#include "proto/sip_message.h"
#include "proto/sip_parser.h"

namespace b2bua::proto {

/// What a request must satisfy before a UAS (the A-leg side of the B2BUA) acts on it.
struct RequestPolicy {
  /// Option tags this element implements; anything else in Require is answered 420.
  /// Comma-separated, e.g. "timer,100rel". Must outlive the calls that use it.
  std::string_view supported_option_tags;
  /// A longer Request-URI is answered 414 (RFC 3261 21.4.12): nothing downstream needs one,
  /// and a huge one is a probe for buffer handling.
  size_t max_request_uri_bytes = 1024;
};

/// Semantic checks that follow a successful parse (RFC 3261 8.2, 16.3 and 20): mandatory
/// headers, CSeq method, Request-URI scheme and length, Max-Forwards, Require, the Via
/// branch, Contact ('*' only in a REGISTER with Expires: 0, q-values in the grammar).
/// Returns an empty Problem when the request may proceed. Never allocates.
/// When the verdict is 420, `*unsupported` (if not null) receives the first Require
/// header value holding an unsupported tag, for the Unsupported header of the answer.
Problem ValidateRequest(const SipMessage& request, const RequestPolicy& policy,
                        std::string_view* unsupported = nullptr);

/// Checks the headers every response must carry before a transaction matches it; a failing
/// response is dropped (RFC 3261 18.1.2 and 8.1.3.3).
Problem ValidateResponse(const SipMessage& response);

}  // namespace b2bua::proto
