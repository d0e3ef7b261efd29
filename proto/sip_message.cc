#include "proto/sip_message.h"

#include <array>

#include "proto/sip_chars.h"

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
    {"Allow", HeaderId::kAllow, 0},
    {"Allow-Events", HeaderId::kAllowEvents, 'u'},
    {"Authorization", HeaderId::kAuthorization, 0},
    {"Call-ID", HeaderId::kCallId, 'i'},
    {"Contact", HeaderId::kContact, 'm'},
    {"Content-Encoding", HeaderId::kContentEncoding, 'e'},
    {"Content-Length", HeaderId::kContentLength, 'l'},
    {"Content-Type", HeaderId::kContentType, 'c'},
    {"CSeq", HeaderId::kCSeq, 0},
    {"Date", HeaderId::kDate, 0},
    {"Diversion", HeaderId::kDiversion, 0},
    {"Event", HeaderId::kEvent, 'o'},
    {"Expires", HeaderId::kExpires, 0},
    {"From", HeaderId::kFrom, 'f'},
    {"History-Info", HeaderId::kHistoryInfo, 0},
    {"Identity", HeaderId::kIdentity, 'y'},
    {"Identity-Info", HeaderId::kIdentityInfo, 'n'},
    {"Max-Forwards", HeaderId::kMaxForwards, 0},
    {"P-Asserted-Identity", HeaderId::kPAssertedIdentity, 0},
    {"Proxy-Authorization", HeaderId::kProxyAuthorization, 0},
    {"Proxy-Require", HeaderId::kProxyRequire, 0},
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
    {"Session-Expires", HeaderId::kSessionExpires, 'x'},
    {"Subject", HeaderId::kSubject, 's'},
    {"Supported", HeaderId::kSupported, 'k'},
    {"To", HeaderId::kTo, 't'},
    {"Unsupported", HeaderId::kUnsupported, 0},
    {"Via", HeaderId::kVia, 'v'},
};

constexpr size_t kMaxNameLength = 20;
constexpr size_t kBucketDepth = 3;

// Buckets by (length, lowercase first letter) so a lookup compares at most a few names.
struct HeaderNameIndex {
  std::array<std::array<std::array<uint8_t, kBucketDepth>, 26>, kMaxNameLength + 1> long_names{};
  std::array<HeaderId, 26> compact{};
};

constexpr HeaderNameIndex BuildIndex() {
  HeaderNameIndex index{};
  for (size_t i = 0; i < std::size(kHeaderNames); ++i) {
    const auto& e = kHeaderNames[i];
    auto& bucket = index.long_names[e.name.size()][ToLowerAscii(e.name[0]) - 'a'];
    size_t slot = 0;
    while (bucket[slot] != 0) ++slot;  // overflows the array at compile time if too deep
    bucket[slot] = static_cast<uint8_t>(i + 1);
    if (e.compact) index.compact[e.compact - 'a'] = e.id;
  }
  return index;
}
constexpr HeaderNameIndex kIndex = BuildIndex();

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

HeaderId LookupHeaderId(std::string_view name) {
  if (name.empty()) return HeaderId::kOther;
  char first = ToLowerAscii(name[0]);
  if (first < 'a' || first > 'z') return HeaderId::kOther;
  if (name.size() == 1) return kIndex.compact[first - 'a'];
  if (name.size() > kMaxNameLength) return HeaderId::kOther;
  for (uint8_t slot : kIndex.long_names[name.size()][first - 'a']) {
    if (slot == 0) break;
    const auto& e = kHeaderNames[slot - 1];
    // Most peers spell names canonically: an exact compare settles those.
    if (e.name == name || EqualsIgnoreCase(e.name, name)) return e.id;
  }
  return HeaderId::kOther;
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
  request_uri_ = SipUri{};
  from_ = NameAddr{};
  to_ = NameAddr{};
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
