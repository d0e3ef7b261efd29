#include "b2bua/leg_headers.h"

#include "proto/sip_chars.h"
#include "proto/str_util.h"

namespace b2bua {

using proto::StrAppend;
using proto::StrCat;

namespace {

bool IsPreferredIdentity(const proto::HeaderField& h) {
  return h.id == proto::HeaderId::kOther &&
         proto::EqualsIgnoreCase(h.name, "P-Preferred-Identity");
}

}  // namespace

bool IsDialogHeader(proto::HeaderId id) {
  switch (id) {
    case proto::HeaderId::kVia:
    case proto::HeaderId::kRoute:
    case proto::HeaderId::kRecordRoute:
    case proto::HeaderId::kContact:
    case proto::HeaderId::kCallId:
    case proto::HeaderId::kCSeq:
    case proto::HeaderId::kFrom:
    case proto::HeaderId::kTo:
    case proto::HeaderId::kMaxForwards:
    case proto::HeaderId::kContentLength:
      return true;
    default:
      return false;
  }
}

bool IsHopByHop(proto::HeaderId id) {
  if (IsDialogHeader(id)) return true;
  switch (id) {
    case proto::HeaderId::kContentType:
    case proto::HeaderId::kHistoryInfo:
    case proto::HeaderId::kDiversion:
    case proto::HeaderId::kProxyAuthorization:
    case proto::HeaderId::kAuthorization:
      return true;
    default:
      return false;
  }
}

void AppendHeader(std::string& out, std::string_view name, std::string_view value) {
  StrAppend(&out, name, ": ", value, "\r\n");
}

std::string PassedHeaders(const proto::SipMessage& message, const HeaderPolicy& policy,
                          IdentityHeaders identity) {
  std::string out;
  for (size_t i = 0; i < message.header_count(); ++i) {
    const proto::HeaderField& h = message.headers()[i];
    if (IsHopByHop(h.id)) continue;
    if (h.id == proto::HeaderId::kPAssertedIdentity && identity != IdentityHeaders::kAsserted)
      continue;
    if (identity == IdentityHeaders::kPerNextHop && IsPreferredIdentity(h)) continue;
    std::string_view name = h.id == proto::HeaderId::kOther ? h.name : proto::HeaderName(h.id);
    if (!policy.IsPassed(name)) continue;
    AppendHeader(out, name, h.value);
  }
  return out;
}

IdentityHeaders IdentityFrom(const AccessConfig& access, const proto::Peer& sender) {
  return access.IsTrusted(sender.address) ? IdentityHeaders::kAsserted
                                          : IdentityHeaders::kUntrusted;
}

CallerIdentity ExtractIdentity(const proto::SipMessage& request, const HeaderPolicy& policy,
                               bool trusted_source) {
  CallerIdentity identity;
  const bool pass_asserted = trusted_source && policy.IsPassed("P-Asserted-Identity");
  const bool pass_preferred = policy.IsPassed("P-Preferred-Identity");
  for (size_t i = 0; i < request.header_count(); ++i) {
    const proto::HeaderField& h = request.headers()[i];
    if (h.id == proto::HeaderId::kPAssertedIdentity) {
      if (pass_asserted) AppendHeader(identity.asserted, "P-Asserted-Identity", h.value);
    } else if (IsPreferredIdentity(h)) {
      if (pass_preferred) AppendHeader(identity.preferred, "P-Preferred-Identity", h.value);
    } else if (h.id == proto::HeaderId::kOther && proto::EqualsIgnoreCase(h.name, "Privacy")) {
      // priv-values are separated by ';' (RFC 3323 4.2); commas are tolerated as well.
      std::string_view rest = h.value;
      while (!rest.empty()) {
        const size_t end = rest.find_first_of(";,");
        const std::string_view value = proto::TrimLws(rest.substr(0, end));
        if (proto::EqualsIgnoreCase(value, "id")) identity.privacy_id = true;
        if (end == std::string_view::npos) break;
        rest.remove_prefix(end + 1);
      }
    }
  }
  return identity;
}

void AppendBody(std::string& out, std::string_view body, std::string_view content_type) {
  if (!body.empty() && !content_type.empty()) AppendHeader(out, "Content-Type", content_type);
  StrAppend(&out, "Content-Length: ", body.size(), "\r\n\r\n", body);
}

std::string WithoutTag(const proto::NameAddr& address) {
  std::string_view text = address.text;
  if (address.tag.empty()) return std::string(text);
  // The tag value is a view into `text`: cut ";tag=value" around it.
  size_t value_at = static_cast<size_t>(address.tag.data() - text.data());
  size_t start = text.rfind(';', value_at);
  if (start == std::string_view::npos) return std::string(text);
  std::string out(text.substr(0, start));
  StrAppend(&out, text.substr(value_at + address.tag.size()));
  return out;
}

std::string TopViaForResponse(const proto::Via& via, const proto::Peer& source) {
  std::string text(via.text);
  if (via.has_rport && via.rport == 0) {
    size_t params_at = static_cast<size_t>(via.params.data() - via.text.data());
    proto::ParamIterator it(via.params);
    std::string_view name, value;
    while (it.Next(&name, &value)) {
      if (!proto::EqualsIgnoreCase(name, "rport")) continue;
      size_t end = static_cast<size_t>(name.data() - via.params.data()) + params_at + name.size();
      text.insert(end, StrCat("=", source.address.port()));
      break;
    }
  }
  if (via.received.empty()) StrAppend(&text, ";received=", source.address.IpString());
  return text;
}

}  // namespace b2bua
