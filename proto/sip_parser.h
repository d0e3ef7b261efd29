#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proto/sip_message.h"

namespace b2bua::proto {

/// How message boundaries are found (RFC 3261 18.3).
enum class Framing : uint8_t {
  kDatagram,  // UDP: one message per datagram; the body is the rest of the datagram
  kStream,    // TCP/TLS: Content-Length is mandatory; bytes may arrive in pieces
};

enum class ParseStatus : uint8_t {
  kComplete,    // one message parsed; `consumed` bytes belong to it
  kIncomplete,  // stream framing only: wait for more bytes
  kKeepAlive,   // the input is only CRLFs (RFC 5626 keep-alive); skip `consumed` bytes.
                // CRLFs before a message are skipped and counted in its `consumed`.
  kMalformed,   // the input is not a valid message; see `problem`
  kTooLarge,    // over the configured size limit
};

/// What is wrong with a message: shared by the parser (syntax) and the request validator
/// (semantics) so that one writer turns either into a reason phrase.
enum class Defect : uint8_t {
  kNone,
  kBadStartLine,
  kBadMethod,
  kBadRequestUri,
  kBadVersion,
  kBadStatusCode,
  kBadHeaderName,
  kBadHeaderValue,
  kDuplicateHeader,
  kTooManyHeaders,
  kTooManyValues,
  kBadContentLength,
  kBodyTruncated,
  kMissingContentLength,
  kNoEmptyLine,
  kMessageTooLarge,
  kMissingHeader,
  kCSeqMethodMismatch,
  kMethodNotImplemented,
  kUnsupportedUriScheme,
  kTooManyHops,
  kUnsupportedExtension,
  kBadBranch,
  kBadAddressOfRecord,
  kRequestUriTooLong,
};

/// A short English text for a defect ("bad header value"). Static storage.
std::string_view DefectText(Defect defect);

struct Problem {
  Defect defect = Defect::kNone;
  HeaderId header = HeaderId::kOther;
  std::string_view header_name;  // the header as spelled on the wire; view into the input
  uint16_t response_code = 0;    // what a server answers; 0 means drop silently

  explicit operator bool() const { return defect != Defect::kNone; }
};

struct ParseResult {
  ParseStatus status = ParseStatus::kMalformed;
  uint32_t consumed = 0;
  Problem problem;

  bool ok() const { return status == ParseStatus::kComplete; }
};

struct ParserLimits {
  size_t max_message_bytes = 64 * 1024;
};

/// Writes the reason phrase for `problem` ("Bad Via Header", "Version Not Supported") into
/// `out` without allocating; returns the bytes written (truncated at `capacity`).
size_t WriteReasonPhrase(const Problem& problem, char* out, size_t capacity);

/// A zero-copy SIP parser (RFC 3261 sections 7, 18.3, 20 and 25). One instance per shard;
/// it keeps no state between calls, never allocates, never throws and never reads outside
/// `input`.
class SipParser {
 public:
  explicit SipParser(ParserLimits limits = {}) : limits_(limits) {}

  /// Parses the message at the front of `input` into `*message` (cleared first).
  /// The views stored in `*message` point into `input` and are valid while it is.
  /// After kMalformed, `*message` still holds the header lines read so far, which lets a
  /// server copy Via, From, To, Call-ID and CSeq into its 400.
  ParseResult Parse(std::string_view input, Framing framing, SipMessage* message) const;

  /// Parse() without its fast paths: the line loop for the common shape of a message, and
  /// the one-pass readers of the common value shapes (Via, Contact, Route, Record-Route,
  /// From, To, the Request-URI). Every value goes through the grammar's split-then-parse
  /// functions, which alone decide defects. The differential tests hold Parse() to it:
  /// same result, same message, field for field.
  ParseResult ParseExact(std::string_view input, Framing framing, SipMessage* message) const;

  const ParserLimits& limits() const { return limits_; }

 private:
  ParserLimits limits_;
};

}  // namespace b2bua::proto
