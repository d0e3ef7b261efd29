#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "proto/sip_message.h"
#include "proto/sip_parser.h"

namespace b2bua::proto {

/// Writes an outgoing message into a caller-owned, preallocated buffer. Never allocates
/// and never throws: when the buffer is too small it stops writing and `overflowed()`
/// tells so; the caller then drops the message and counts it.
class MessageWriter {
 public:
  MessageWriter(char* buffer, size_t capacity) : begin_(buffer), capacity_(capacity) {}

  void RequestLine(std::string_view method, std::string_view request_uri);
  void StatusLine(int code, std::string_view reason);
  /// "Name: value\r\n".
  void Header(std::string_view name, std::string_view value);
  /// "Name: " followed by the parts, concatenated, then "\r\n".
  void HeaderParts(std::string_view name, std::initializer_list<std::string_view> parts);
  void HeaderNumber(std::string_view name, uint64_t value);
  /// Writes Content-Length for `body`, the empty line and the body. Call last.
  void Body(std::string_view body);

  void Append(std::string_view bytes);
  void AppendNumber(uint64_t value);

  bool overflowed() const { return overflowed_; }
  size_t size() const { return size_; }
  std::string_view view() const { return {begin_, size_}; }

 private:
  char* begin_;
  size_t capacity_;
  size_t size_ = 0;
  bool overflowed_ = false;
};

/// Re-serializes a parsed message: start line and every header in the original order,
/// each Content-Length replaced by one recomputed from `body` (written last, before the
/// empty line). Used to re-emit a message whose body was changed or checked.
void WriteMessage(const SipMessage& message, std::string_view body, MessageWriter& out);

/// Writes a response to `request` per RFC 3261 8.2.6: the Via headers, From, To (with
/// `to_tag` added when To has none and a tag is given), Call-ID and CSeq are copied
/// verbatim, then `extra_headers` (already formatted "Name: value\r\n" lines, may be empty),
/// and Content-Length: 0.
void WriteResponse(const SipMessage& request, int code, std::string_view reason,
                   std::string_view to_tag, std::string_view extra_headers, MessageWriter& out);

/// WriteResponse() for an answer given without transaction state (RFC 3261 8.2.6.2): the
/// To tag is derived from the request, so a retransmission gets the same tag and the
/// caller's ACK names it.
void WriteStatelessResponse(const SipMessage& request, int code, std::string_view reason,
                            std::string_view extra_headers, MessageWriter& out);

/// Writes the stateless answer to a request that failed parsing or validation: the status
/// code of `problem`, its reason phrase ("Bad Via Header"), and for 420 an Unsupported
/// header naming `unsupported`. Returns false when the request lacks what a response
/// needs (no Via, for instance): such a request is dropped, not answered.
bool WriteProblemResponse(const SipMessage& request, const Problem& problem,
                          std::string_view unsupported, MessageWriter& out);

}  // namespace b2bua::proto
