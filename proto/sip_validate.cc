#include "proto/sip_validate.h"

#include "proto/sip_chars.h"

namespace b2bua::proto {
namespace {

Problem Reject(Defect defect, uint16_t code, HeaderId header = HeaderId::kOther) {
  Problem p;
  p.defect = defect;
  p.header = header;
  p.response_code = code;
  return p;
}

bool TagSupported(std::string_view supported, std::string_view tag) {
  bool found = false;
  ForEachListItem(supported, [&](std::string_view item) { found = found || item == tag; });
  return found;
}

// An Expires header whose value is 0 (leading zeros and LWS allowed).
bool ExpiresZero(const SipMessage& request) {
  const HeaderField* expires = request.FindHeader(HeaderId::kExpires);
  if (expires == nullptr) return false;
  std::string_view v = expires->value;
  if (v.empty()) return false;
  for (char c : v)
    if (c != '0') return false;
  return true;
}

}  // namespace

Problem ValidateRequest(const SipMessage& request, const RequestPolicy& policy,
                        std::string_view* unsupported) {
  Problem p = [&]() -> Problem {
    // RFC 3261 8.1.1: every request carries these; Max-Forwards may be missing from RFC 2543
    // peers and is then treated as 70 by whoever forwards.
    if (request.via_count() == 0) return Reject(Defect::kMissingHeader, 400, HeaderId::kVia);
    if (!request.has_from()) return Reject(Defect::kMissingHeader, 400, HeaderId::kFrom);
    if (!request.has_to()) return Reject(Defect::kMissingHeader, 400, HeaderId::kTo);
    if (request.call_id().empty()) return Reject(Defect::kMissingHeader, 400, HeaderId::kCallId);
    if (!request.has_cseq()) return Reject(Defect::kMissingHeader, 400, HeaderId::kCSeq);
    // An unknown method is answered 501 before its CSeq is judged (RFC 4475 3.1.2.18).
    if (request.method() == Method::kUnknown)
      return Reject(Defect::kMethodNotImplemented, 501);
    if (request.cseq().method_text != request.method_text())
      return Reject(Defect::kCSeqMethodMismatch, 400, HeaderId::kCSeq);
    const SipUri& ruri = request.request_uri();
    if (ruri.text.size() > policy.max_request_uri_bytes)
      return Reject(Defect::kRequestUriTooLong, 414);
    if (!ruri.IsSip() && ruri.scheme != UriScheme::kTel)
      return Reject(Defect::kUnsupportedUriScheme, 416);
    // A branch that is only the RFC 3261 cookie identifies no transaction (RFC 4475 3.2.1).
    if (request.top_via()->branch == kBranchMagicCookie)
      return Reject(Defect::kBadBranch, 400, HeaderId::kVia);
    if (request.max_forwards() == 0) return Reject(Defect::kTooManyHops, 483);
    if (request.method() == Method::kRegister && !request.to().uri.IsSip())
      return Reject(Defect::kBadAddressOfRecord, 400, HeaderId::kTo);
    // RFC 3261 10.2.2: "*" removes every binding, so it means something only in a REGISTER
    // with Expires: 0.
    if (request.contact_star() &&
        (request.method() != Method::kRegister || !ExpiresZero(request)))
      return Reject(Defect::kBadHeaderValue, 400, HeaderId::kContact);
    // RFC 3261 25.1: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
    for (size_t i = 0; i < request.contact_count(); ++i)
      if (request.contacts()[i].defect == ContactDefect::kBadQValue)
        return Reject(Defect::kBadHeaderValue, 400, HeaderId::kContact);
    // RFC 3261 8.2.2.3: Require is not checked on ACK and CANCEL.
    if (request.method() != Method::kAck && request.method() != Method::kCancel) {
      const HeaderField* offending = nullptr;
      for (size_t i = 0; i < request.header_count() && !offending; ++i) {
        const HeaderField& h = request.headers()[i];
        if (h.id != HeaderId::kRequire) continue;
        ForEachListItem(h.value, [&](std::string_view tag) {
          if (!tag.empty() && !TagSupported(policy.supported_option_tags, tag)) offending = &h;
        });
      }
      if (offending) {
        if (unsupported) *unsupported = offending->value;
        return Reject(Defect::kUnsupportedExtension, 420, HeaderId::kRequire);
      }
    }
    return Problem{};
  }();
  // ACK is never answered (RFC 3261 17.2.1): a bad one is dropped.
  if (p && request.method() == Method::kAck) p.response_code = 0;
  return p;
}

Problem ValidateResponse(const SipMessage& response) {
  Problem p;
  if (response.via_count() == 0) p = Reject(Defect::kMissingHeader, 0, HeaderId::kVia);
  else if (!response.has_from()) p = Reject(Defect::kMissingHeader, 0, HeaderId::kFrom);
  else if (!response.has_to()) p = Reject(Defect::kMissingHeader, 0, HeaderId::kTo);
  else if (response.call_id().empty()) p = Reject(Defect::kMissingHeader, 0, HeaderId::kCallId);
  else if (!response.has_cseq()) p = Reject(Defect::kMissingHeader, 0, HeaderId::kCSeq);
  return p;
}

}  // namespace b2bua::proto
