#include "proto/sip_message.h"

#include <array>
#include <cstring>

#include "proto/sip_chars.h"
#include "proto/sip_header_names.h"

namespace b2bua::proto {
namespace {

struct HeaderNameEntry {
  std::string_view name;
  HeaderId id;
  char compact;  // 0 when the header has no compact form
};

// Long names and the compact forms of RFC 3261 7.3.3 and the IANA SIP parameters registry.
constexpr HeaderNameEntry kHeaderNames[] = {
    {"Accept", HeaderId::kAccept, 0},
    {"Accept-Contact", HeaderId::kAcceptContact, 'a'},
    {"Accept-Encoding", HeaderId::kAcceptEncoding, 0},
    {"Accept-Language", HeaderId::kAcceptLanguage, 0},
    {"Alert-Info", HeaderId::kAlertInfo, 0},
    {"Allow", HeaderId::kAllow, 0},
    {"Allow-Events", HeaderId::kAllowEvents, 'u'},
    {"Authentication-Info", HeaderId::kAuthenticationInfo, 0},
    {"Authorization", HeaderId::kAuthorization, 0},
    {"Call-ID", HeaderId::kCallId, 'i'},
    {"Call-Info", HeaderId::kCallInfo, 0},
    {"Contact", HeaderId::kContact, 'm'},
    {"Content-Disposition", HeaderId::kContentDisposition, 0},
    {"Content-Encoding", HeaderId::kContentEncoding, 'e'},
    {"Content-Language", HeaderId::kContentLanguage, 0},
    {"Content-Length", HeaderId::kContentLength, 'l'},
    {"Content-Type", HeaderId::kContentType, 'c'},
    {"CSeq", HeaderId::kCSeq, 0},
    {"Date", HeaderId::kDate, 0},
    {"Diversion", HeaderId::kDiversion, 0},
    {"Error-Info", HeaderId::kErrorInfo, 0},
    {"Event", HeaderId::kEvent, 'o'},
    {"Expires", HeaderId::kExpires, 0},
    {"From", HeaderId::kFrom, 'f'},
    {"History-Info", HeaderId::kHistoryInfo, 0},
    {"Identity", HeaderId::kIdentity, 'y'},
    {"Identity-Info", HeaderId::kIdentityInfo, 'n'},
    {"In-Reply-To", HeaderId::kInReplyTo, 0},
    {"Max-Forwards", HeaderId::kMaxForwards, 0},
    {"MIME-Version", HeaderId::kMimeVersion, 0},
    {"Min-Expires", HeaderId::kMinExpires, 0},
    {"Min-SE", HeaderId::kMinSe, 0},
    {"Organization", HeaderId::kOrganization, 0},
    {"P-Asserted-Identity", HeaderId::kPAssertedIdentity, 0},
    {"Priority", HeaderId::kPriority, 0},
    {"Proxy-Authenticate", HeaderId::kProxyAuthenticate, 0},
    {"Proxy-Authorization", HeaderId::kProxyAuthorization, 0},
    {"Proxy-Require", HeaderId::kProxyRequire, 0},
    {"RAck", HeaderId::kRAck, 0},
    {"Reason", HeaderId::kReason, 0},
    {"Record-Route", HeaderId::kRecordRoute, 0},
    {"Refer-To", HeaderId::kReferTo, 'r'},
    {"Referred-By", HeaderId::kReferredBy, 'b'},
    {"Reject-Contact", HeaderId::kRejectContact, 'j'},
    {"Reply-To", HeaderId::kReplyTo, 0},
    {"Request-Disposition", HeaderId::kRequestDisposition, 'd'},
    {"Require", HeaderId::kRequire, 0},
    {"Retry-After", HeaderId::kRetryAfter, 0},
    {"Route", HeaderId::kRoute, 0},
    {"RSeq", HeaderId::kRSeq, 0},
    {"Server", HeaderId::kServer, 0},
    {"Session-Expires", HeaderId::kSessionExpires, 'x'},
    {"Subject", HeaderId::kSubject, 's'},
    {"Supported", HeaderId::kSupported, 'k'},
    {"Timestamp", HeaderId::kTimestamp, 0},
    {"To", HeaderId::kTo, 't'},
    {"Unsupported", HeaderId::kUnsupported, 0},
    {"User-Agent", HeaderId::kUserAgent, 0},
    {"Via", HeaderId::kVia, 'v'},
    {"Warning", HeaderId::kWarning, 0},
    {"WWW-Authenticate", HeaderId::kWwwAuthenticate, 0},
};

constexpr detail::HeaderNameIndex BuildIndex() {
  detail::HeaderNameIndex index{};
  for (const auto& e : kHeaderNames) {
    size_t n = e.name.size();
    if (n > detail::kMaxHeaderNameLength) index.collision = true;
    if (n < 2 || n > detail::kMaxHeaderNameLength) continue;
    auto& slot = index.slots[detail::HeaderNameHash(n, e.name[0], e.name[n / 2], e.name[n - 1])];
    if (slot.length != 0) index.collision = true;
    slot.length = static_cast<uint8_t>(n);
    slot.id = e.id;
    for (size_t k = 0; k < n; ++k) {
      char c = e.name[k];
      bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      slot.lower[k] = ToLowerAscii(c);
      slot.fold[k] = letter ? 0x20 : 0;
    }
    if (e.compact) index.compact[e.compact - 'a'] = e.id;
  }
  return index;
}

struct MethodEntry {
  std::string_view name;
  Method method;
};
constexpr MethodEntry kMethods[] = {
    {"INVITE", Method::kInvite},     {"ACK", Method::kAck},           {"BYE", Method::kBye},
    {"CANCEL", Method::kCancel},     {"OPTIONS", Method::kOptions},   {"REGISTER", Method::kRegister},
    {"PRACK", Method::kPrack},       {"SUBSCRIBE", Method::kSubscribe}, {"NOTIFY", Method::kNotify},
    {"PUBLISH", Method::kPublish},   {"INFO", Method::kInfo},         {"REFER", Method::kRefer},
    {"MESSAGE", Method::kMessage},   {"UPDATE", Method::kUpdate},
};

}  // namespace

// A new name that collides in HeaderNameHash() fails the build: change its constants.
constexpr detail::HeaderNameIndex detail::kHeaderNameIndex = BuildIndex();
static_assert(!detail::kHeaderNameIndex.collision, "header names collide in HeaderNameHash()");

HeaderId LookupHeaderId(std::string_view name) {
  return detail::LookupHeaderIdInline(name.data(), name.size());
}

std::string_view HeaderName(HeaderId id) {
  for (const auto& e : kHeaderNames)
    if (e.id == id) return e.name;
  return {};
}

Method LookupMethod(std::string_view token) {
  // Only names of the same length and first letter are compared.
  for (const auto& m : kMethods)
    if (m.name.size() == token.size() && m.name[0] == token[0] && m.name == token) return m.method;
  return Method::kUnknown;
}

std::string_view MethodName(Method method) {
  for (const auto& m : kMethods)
    if (m.method == method) return m.name;
  return {};
}

void SipMessage::Clear() {
  method_text_ = {};
  reason_phrase_ = {};
  call_id_ = {};
  content_type_ = {};
  body_ = {};
  raw_ = {};
  request_uri_ = kEmptySipUri;
  from_ = kEmptyNameAddr;
  to_ = kEmptyNameAddr;
  cseq_ = CSeq{};
  content_length_ = -1;
  expires_ = -1;
  max_forwards_ = -1;
  status_code_ = 0;
  method_ = Method::kUnknown;
  is_request_ = false;
  has_from_ = has_to_ = has_cseq_ = contact_star_ = false;
  header_count_ = via_count_ = contact_count_ = route_count_ = record_route_count_ = 0;
}

const HeaderField* SipMessage::FindHeader(HeaderId id) const {
  for (size_t i = 0; i < header_count_; ++i)
    if (headers_[i].id == id) return &headers_[i];
  return nullptr;
}

const HeaderField* SipMessage::FindHeader(std::string_view name) const {
  HeaderId id = LookupHeaderId(name);
  if (id != HeaderId::kOther) return FindHeader(id);
  for (size_t i = 0; i < header_count_; ++i)
    if (headers_[i].id == HeaderId::kOther && EqualsIgnoreCase(headers_[i].name, name))
      return &headers_[i];
  return nullptr;
}

}  // namespace b2bua::proto
