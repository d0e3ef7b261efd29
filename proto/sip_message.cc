#include "proto/sip_message.h"

#include <array>
#include <cstring>

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
constexpr size_t kFoldedBytes = 24;  // kMaxNameLength rounded up to whole 8-byte words
constexpr size_t kHashSlots = 128;

// A long name as two byte strings compared a word at a time: `lower` is the name in lower
// case and `fold` has 0x20 where a letter may differ in case. (in ^ lower) & ~fold == 0 then
// accepts exactly the spellings EqualsIgnoreCase accepts, with no per-byte loop.
struct FoldedName {
  std::array<char, kFoldedBytes> lower{};
  std::array<char, kFoldedBytes> fold{};
};

// Header names hash perfectly on (length, first, middle and last letter); BuildIndex()
// refuses to compile if a new name collides.
constexpr size_t NameHash(size_t n, char first, char middle, char last) {
  auto lower = [](char c) { return static_cast<size_t>(static_cast<uint8_t>(c) | 0x20); };
  return (n + 2 * lower(first) + lower(last) + 15 * lower(middle)) & (kHashSlots - 1);
}

struct HeaderNameIndex {
  std::array<uint8_t, kHashSlots> slots{};  // index into kHeaderNames plus one, 0 when empty
  std::array<FoldedName, std::size(kHeaderNames)> folded{};
  std::array<HeaderId, 26> compact{};
  bool collision = false;
};

constexpr HeaderNameIndex BuildIndex() {
  HeaderNameIndex index{};
  for (size_t i = 0; i < std::size(kHeaderNames); ++i) {
    const auto& e = kHeaderNames[i];
    size_t n = e.name.size();
    size_t h = NameHash(n, e.name[0], e.name[n / 2], e.name[n - 1]);
    if (index.slots[h] != 0 || n > kMaxNameLength) index.collision = true;
    index.slots[h] = static_cast<uint8_t>(i + 1);
    for (size_t k = 0; k < n; ++k) {
      char c = e.name[k];
      bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      index.folded[i].lower[k] = ToLowerAscii(c);
      index.folded[i].fold[k] = letter ? 0x20 : 0;
    }
    if (e.compact) index.compact[e.compact - 'a'] = e.id;
  }
  return index;
}
constexpr HeaderNameIndex kIndex = BuildIndex();
static_assert(!kIndex.collision, "header names collide in NameHash(): change its constants");

template <typename Word>
bool WordMatches(const char* in, const FoldedName& f, size_t at) {
  Word a, lower, fold;
  std::memcpy(&a, in + at, sizeof(Word));
  std::memcpy(&lower, f.lower.data() + at, sizeof(Word));
  std::memcpy(&fold, f.fold.data() + at, sizeof(Word));
  return ((a ^ lower) & ~fold) == 0;
}

// Compares the n >= 2 bytes at `in` with a folded name of the same length. The last word
// overlaps the previous one instead of reading past `in + n`.
bool MatchesFolded(const char* in, size_t n, const FoldedName& f) {
  if (n >= 8) {
    for (size_t k = 0; k + 8 < n; k += 8)
      if (!WordMatches<uint64_t>(in, f, k)) return false;
    return WordMatches<uint64_t>(in, f, n - 8);
  }
  if (n >= 4) return WordMatches<uint32_t>(in, f, 0) && WordMatches<uint32_t>(in, f, n - 4);
  return WordMatches<uint16_t>(in, f, 0) && WordMatches<uint16_t>(in, f, n - 2);
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

HeaderId LookupHeaderId(std::string_view name) {
  const size_t n = name.size();
  if (n == 0) return HeaderId::kOther;
  if (n == 1) {
    char first = ToLowerAscii(name[0]);
    return first >= 'a' && first <= 'z' ? kIndex.compact[first - 'a'] : HeaderId::kOther;
  }
  if (n > kMaxNameLength) return HeaderId::kOther;
  uint8_t slot = kIndex.slots[NameHash(n, name[0], name[n / 2], name[n - 1])];
  if (slot == 0) return HeaderId::kOther;
  const auto& e = kHeaderNames[slot - 1];
  if (e.name.size() != n || !MatchesFolded(name.data(), n, kIndex.folded[slot - 1]))
    return HeaderId::kOther;
  return e.id;
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
