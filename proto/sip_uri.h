#pragma once

#include <cstdint>
#include <string_view>

namespace b2bua::proto {

enum class UriScheme : uint8_t { kSip, kSips, kTel, kOther };
enum class HostKind : uint8_t { kNone, kName, kIpv4, kIpv6 };

/// A parsed URI. Every view points into the text handed to ParseUri() and is valid
/// as long as that text is. Escapes (%HH) are kept as they were on the wire.
struct SipUri {
  std::string_view text;         // the whole URI
  std::string_view scheme_text;  // "sip", "SIPS", "tel", "soap.beep", ...
  std::string_view user;         // escaped; the number for tel:
  std::string_view password;
  std::string_view host;         // IPv6 references without their brackets
  std::string_view params;       // ";a=b;lr" with the leading ';', empty when none
  std::string_view headers;      // what follows '?', empty when none
  std::string_view transport;    // value of ;transport=
  std::string_view maddr;        // value of ;maddr=
  uint16_t port = 0;             // 0 when absent
  UriScheme scheme = UriScheme::kOther;
  HostKind host_kind = HostKind::kNone;
  bool has_user = false;         // "sip:@host" has an empty user; "sip:host" has none
  bool lr = false;               // ;lr present (loose routing)

  bool IsSip() const { return scheme == UriScheme::kSip || scheme == UriScheme::kSips; }
};

/// A default SipUri to reset from. `*uri = kEmptySipUri` copies read-only data, where
/// `*uri = SipUri{}` builds a stack temporary with narrow stores and copies it with wide
/// loads, which stalls on store forwarding (measured in SipParser::Parse).
inline constexpr SipUri kEmptySipUri{};

enum class UriError : uint8_t {
  kNone,
  kEmpty,
  kBadScheme,
  kBadUser,
  kBadHost,
  kBadPort,
  kBadParam,
  kBadHeaders,
  kBadTelNumber,
  kBadEscape,
};

/// Text naming a URI defect, for logs and reason phrases. Static storage.
std::string_view UriErrorText(UriError error);

/// Parses exactly one URI: `text` holds nothing else (no brackets, no surrounding LWS).
/// Never allocates; on error `*out` is partially filled.
UriError ParseUri(std::string_view text, SipUri* out);

/// Where a URI handed to ParseUriPrefix() ends.
enum class UriEnd : uint8_t {
  kText,      // at `end`: the text is exactly one URI (Request-URI)
  kAngle,     // at the '>' of a name-addr
  kAddrSpec,  // at the first ';', ',' or LWS, or at `end` (addr-spec in a header, RFC 3261 20.10)
};

/// The one-pass fast path of ParseUri() for the common shape of a sip:/sips: URI: an
/// optional user of unreserved and user-unreserved characters, a host name or dotted IPv4,
/// an optional port and, unless `until` is kAddrSpec, unescaped ;name[=value] parameters.
/// Returns the end of the URI (the '>' for kAngle) with `*out` filled exactly as ParseUri()
/// fills it for that text, or nullptr for any other shape, including every invalid one:
/// then ParseUri() on the delimited text gives the verdict (`*out` may be partly written by
/// then; ParseUri() resets it). Reads only [begin, limit), where
/// `limit` >= `end` is the end of the caller's buffer (vector loads may cross `end`).
const char* ParseUriPrefix(const char* begin, const char* end, const char* limit, UriEnd until,
                           SipUri* out);

/// Takes the longest run of host-name characters at `begin` and classifies it as
/// ClassifyHost(run, false) does; `*run_end` is where the run stops. Reads only
/// [begin, limit), `limit` >= `end`.
HostKind ScanHost(const char* begin, const char* end, const char* limit, const char** run_end);

/// Checks a host (name, dotted IPv4, or IPv6 without brackets) and tells its kind.
HostKind ClassifyHost(std::string_view host, bool bracketed);

/// Reads a decimal port 1..65535. Returns false for anything else.
bool ParsePort(std::string_view digits, uint16_t* port);

/// Iterates over ";name[=value]" parameters (URI or header parameters) without allocating.
/// The views point into the parameter text. Surrounding LWS is trimmed from names and values.
class ParamIterator {
 public:
  explicit ParamIterator(std::string_view params) : rest_(params) {}
  /// Advances to the next parameter; false at the end.
  bool Next(std::string_view* name, std::string_view* value);

 private:
  std::string_view rest_;
};

/// Finds parameter `name` (case-insensitive) in a parameter text. `*value` is empty for a
/// parameter without "=value".
bool FindParam(std::string_view params, std::string_view name, std::string_view* value);

}  // namespace b2bua::proto
