#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "proto/sip_chars.h"
#include "proto/sip_uri.h"

namespace b2bua::proto {

/// Headers the parser knows by name (long or compact form). Everything else is kOther and
/// is kept verbatim, in order, like every known header.
enum class HeaderId : uint8_t {
  kOther = 0,
  kAccept,
  kAcceptContact,
  kAcceptEncoding,
  kAcceptLanguage,
  kAlertInfo,
  kAllow,
  kAllowEvents,
  kAuthenticationInfo,
  kAuthorization,
  kCallId,
  kCallInfo,
  kContact,
  kContentDisposition,
  kContentEncoding,
  kContentLanguage,
  kContentLength,
  kContentType,
  kCSeq,
  kDate,
  kDiversion,
  kErrorInfo,
  kEvent,
  kExpires,
  kFrom,
  kHistoryInfo,
  kIdentity,
  kIdentityInfo,
  kInReplyTo,
  kMaxForwards,
  kMimeVersion,
  kMinExpires,
  kMinSe,
  kOrganization,
  kPAssertedIdentity,
  kPriority,
  kProxyAuthenticate,
  kProxyAuthorization,
  kProxyRequire,
  kRAck,
  kReason,
  kRecordRoute,
  kReferredBy,
  kReferTo,
  kRejectContact,
  kReplyTo,
  kRequestDisposition,
  kRequire,
  kRetryAfter,
  kRoute,
  kRSeq,
  kServer,
  kSessionExpires,
  kSubject,
  kSupported,
  kTimestamp,
  kTo,
  kUnsupported,
  kUserAgent,
  kVia,
  kWarning,
  kWwwAuthenticate,
  kCount,
};

/// Maps a header name as it appears on the wire (any case, long or compact form).
HeaderId LookupHeaderId(std::string_view name);
/// The canonical long name ("Call-ID", "CSeq"); empty for kOther.
std::string_view HeaderName(HeaderId id);

enum class Method : uint8_t {
  kUnknown = 0,
  kInvite,
  kAck,
  kBye,
  kCancel,
  kOptions,
  kRegister,
  kPrack,
  kSubscribe,
  kNotify,
  kPublish,
  kInfo,
  kRefer,
  kMessage,
  kUpdate,
};

/// Methods are case-sensitive (RFC 3261 7.1): "invite" is an unknown method.
Method LookupMethod(std::string_view token);
std::string_view MethodName(Method method);

/// One header line. `value` has its surrounding LWS removed; a folded value keeps its
/// inner CRLF + whitespace, which every value parser treats as LWS.
struct HeaderField {
  std::string_view name;
  std::string_view value;
  HeaderId id = HeaderId::kOther;
};

/// name-addr or addr-spec: From, To, Contact, Route, Record-Route, Reply-To, ...
struct NameAddr {
  std::string_view text;          // the whole value, params included
  std::string_view display_name;  // without quotes; escapes kept as on the wire
  std::string_view params;        // header parameters, ";tag=x;q=0.5", empty when none
  std::string_view tag;           // value of ;tag=
  SipUri uri;
  bool angle_brackets = false;    // written as <uri>
  bool quoted_display_name = false;
};

/// Per-value defects that do not make the whole message unusable: a redirect target with a
/// broken q-value is skipped and counted, the rest of the 3xx still serves.
enum class ContactDefect : uint8_t { kNone, kBadQValue, kBadExpires };

struct Contact {
  NameAddr address;
  int64_t expires = -1;      // ;expires= in seconds, -1 when absent
  int16_t q_millis = -1;     // ;q= in thousandths (0..1000), -1 when absent
  ContactDefect defect = ContactDefect::kNone;
};

/// RFC 3261 8.1.1.7: every branch of an RFC 3261 element starts with this, so that
/// transactions can be matched by branch alone (17.2.3).
inline constexpr std::string_view kBranchMagicCookie = "z9hG4bK";

struct Via {
  std::string_view text;           // the whole value
  std::string_view protocol_name;  // "SIP"
  std::string_view protocol_version;  // "2.0"
  std::string_view transport;      // "UDP", "TCP", "TLS", "SCTP", or an extension token
  std::string_view host;           // IPv6 references without brackets
  std::string_view params;         // ";branch=..." with the leading ';'
  std::string_view branch;
  std::string_view received;       // brackets of an IPv6 value removed
  std::string_view maddr;
  uint16_t port = 0;               // 0 when absent
  uint16_t rport = 0;              // value of rport=, 0 when absent or empty
  int16_t ttl = -1;
  HostKind host_kind = HostKind::kNone;
  bool has_rport = false;          // ";rport" with or without value (RFC 3581)
};

/// Defaults to reset from; see kEmptySipUri for why not `= NameAddr{}`.
inline constexpr NameAddr kEmptyNameAddr{};
inline constexpr Contact kEmptyContact{};
inline constexpr Via kEmptyVia{};

struct CSeq {
  uint32_t number = 0;
  std::string_view method_text;
  Method method = Method::kUnknown;
};

class ParserState;

/// A parsed SIP message. It owns nothing: every view points into the buffer handed to
/// SipParser::Parse() and is valid until that buffer is returned to its pool or changed.
///
/// RFC 3261 sets no limit on header lines or on Via, Route and Record-Route values: their
/// arrays start at the capacities below and a message with more grows them, bounded by
/// its size (every value takes bytes of the message). The room stays for the next message,
/// so a shard that reuses one instance allocates only when a message is the largest of its
/// kind so far. Contacts are capped: they become redirect targets.
class SipMessage {
 public:
  static constexpr size_t kInitialHeaders = 192;
  static constexpr size_t kInitialVias = 64;
  static constexpr size_t kMaxContacts = 64;
  static constexpr size_t kInitialRoutes = 32;

  /// Forgets the previous message in O(1).
  void Clear();

  bool is_request() const { return is_request_; }
  bool is_response() const { return !is_request_; }

  // Request line.
  Method method() const { return method_; }
  std::string_view method_text() const { return method_text_; }
  const SipUri& request_uri() const { return request_uri_; }
  // Status line.
  int status_code() const { return status_code_; }
  std::string_view reason_phrase() const { return reason_phrase_; }

  /// Every header line in message order, known and unknown.
  const HeaderField* headers() const { return headers_.data(); }
  size_t header_count() const { return header_count_; }
  /// The first header with `id`, or nullptr.
  const HeaderField* FindHeader(HeaderId id) const;
  /// The first header whose name matches (case-insensitive, compact forms resolved).
  const HeaderField* FindHeader(std::string_view name) const;
  /// Calls `fn(std::string_view)` for each comma-separated token of every `id` header
  /// (Require, Supported, Allow, Proxy-Require, ...), in order.
  template <typename Fn>
  void ForEachToken(HeaderId id, Fn&& fn) const;

  const Via* vias() const { return vias_.data(); }
  size_t via_count() const { return via_count_; }
  const Via* top_via() const { return via_count_ ? &vias_[0] : nullptr; }

  bool has_from() const { return has_from_; }
  const NameAddr& from() const { return from_; }
  bool has_to() const { return has_to_; }
  const NameAddr& to() const { return to_; }
  std::string_view call_id() const { return call_id_; }
  bool has_cseq() const { return has_cseq_; }
  const CSeq& cseq() const { return cseq_; }
  /// -1 when absent (RFC 2543 peers omit it).
  int max_forwards() const { return max_forwards_; }
  /// -1 when absent.
  int64_t content_length() const { return content_length_; }
  std::string_view content_type() const { return content_type_; }
  /// Expires header in seconds, -1 when absent.
  int64_t expires() const { return expires_; }

  const Contact* contacts() const { return contacts_.data(); }
  size_t contact_count() const { return contact_count_; }
  /// "Contact: *" (REGISTER wildcard).
  bool contact_star() const { return contact_star_; }
  const NameAddr* routes() const { return routes_.data(); }
  size_t route_count() const { return route_count_; }
  const NameAddr* record_routes() const { return record_routes_.data(); }
  size_t record_route_count() const { return record_route_count_; }

  std::string_view body() const { return body_; }
  /// The start line, headers and body exactly as received (excluding leading CRLFs and any
  /// bytes after the message in a datagram).
  std::string_view raw() const { return raw_; }

 private:
  friend class ParserState;

  std::string_view method_text_;
  std::string_view reason_phrase_;
  std::string_view call_id_;
  std::string_view content_type_;
  std::string_view body_;
  std::string_view raw_;
  SipUri request_uri_;
  NameAddr from_;
  NameAddr to_;
  CSeq cseq_;
  int64_t content_length_ = -1;
  int64_t expires_ = -1;
  int max_forwards_ = -1;
  int status_code_ = 0;
  Method method_ = Method::kUnknown;
  bool is_request_ = false;
  bool has_from_ = false;
  bool has_to_ = false;
  bool has_cseq_ = false;
  bool contact_star_ = false;

  size_t header_count_ = 0;
  size_t via_count_ = 0;
  size_t contact_count_ = 0;
  size_t route_count_ = 0;
  size_t record_route_count_ = 0;
  std::vector<HeaderField> headers_ = std::vector<HeaderField>(kInitialHeaders);
  std::vector<Via> vias_ = std::vector<Via>(kInitialVias);
  std::vector<Contact> contacts_ = std::vector<Contact>(kMaxContacts);
  std::vector<NameAddr> routes_ = std::vector<NameAddr>(kInitialRoutes);
  std::vector<NameAddr> record_routes_ = std::vector<NameAddr>(kInitialRoutes);
};

/// Splits a comma-separated list value into LWS-trimmed items, empty ones included (the parser
/// rejects those). Commas inside quoted strings and angle brackets do not split.
template <typename Fn>
void ForEachListItem(std::string_view value, Fn&& fn) {
  const size_t n = value.size();
  size_t start = 0;
  int angle = 0;
  for (size_t i = 0;; ++i) {
    // Most bytes are not special: skip them with one table test each.
    while (i < n && !HasClass(value[i], kListSpecial)) ++i;
    if (i < n) {
      char c = value[i];
      if (c == '"') {
        for (++i; i < n && value[i] != '"'; ++i)
          if (value[i] == '\\') ++i;
        if (i >= n) i = n - 1;  // unterminated: the item runs to the end
        continue;
      }
      if (c == '<') { ++angle; continue; }
      if (c == '>') { if (angle) --angle; continue; }
      if (angle) continue;  // a comma inside <...>
    }
    fn(TrimLws(value.substr(start, (i < n ? i : n) - start)));
    if (i >= n) return;
    start = i + 1;
  }
}

template <typename Fn>
void SipMessage::ForEachToken(HeaderId id, Fn&& fn) const {
  for (size_t i = 0; i < header_count_; ++i)
    if (headers_[i].id == id)
      ForEachListItem(headers_[i].value, [&](std::string_view item) {
        if (!item.empty()) fn(item);
      });
}

}  // namespace b2bua::proto
