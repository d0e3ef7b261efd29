#include "proto/sip_builder.h"

#include <charconv>
#include <cstring>

namespace b2bua::proto {

void MessageWriter::Append(std::string_view bytes) {
  if (overflowed_ || bytes.empty()) return;
  if (bytes.size() > capacity_ - size_) {
    overflowed_ = true;
    return;
  }
  std::memcpy(begin_ + size_, bytes.data(), bytes.size());
  size_ += bytes.size();
}

void MessageWriter::AppendNumber(uint64_t value) {
  char digits[20];
  const auto end = std::to_chars(digits, digits + sizeof(digits), value).ptr;
  Append({digits, static_cast<size_t>(end - digits)});
}

void MessageWriter::RequestLine(std::string_view method, std::string_view request_uri) {
  Append(method);
  Append(" ");
  Append(request_uri);
  Append(" SIP/2.0\r\n");
}

void MessageWriter::StatusLine(int code, std::string_view reason) {
  Append("SIP/2.0 ");
  AppendNumber(static_cast<uint64_t>(code));
  Append(" ");
  Append(reason);
  Append("\r\n");
}

void MessageWriter::Header(std::string_view name, std::string_view value) {
  Append(name);
  Append(": ");
  Append(value);
  Append("\r\n");
}

void MessageWriter::HeaderParts(std::string_view name,
                                std::initializer_list<std::string_view> parts) {
  Append(name);
  Append(": ");
  for (std::string_view part : parts) Append(part);
  Append("\r\n");
}

void MessageWriter::HeaderNumber(std::string_view name, uint64_t value) {
  Append(name);
  Append(": ");
  AppendNumber(value);
  Append("\r\n");
}

void MessageWriter::Body(std::string_view body) {
  HeaderNumber("Content-Length", body.size());
  Append("\r\n");
  Append(body);
}

void WriteMessage(const SipMessage& message, std::string_view body, MessageWriter& out) {
  if (message.is_request()) {
    out.RequestLine(message.method_text(), message.request_uri().text);
  } else {
    out.StatusLine(message.status_code(), message.reason_phrase());
  }
  for (size_t i = 0; i < message.header_count(); ++i) {
    const HeaderField& h = message.headers()[i];
    if (h.id == HeaderId::kContentLength) continue;
    out.Header(h.name, h.value);
  }
  out.Body(body);
}

namespace {

// A to-tag for answers given without transaction state: derived from the request, so a
// retransmission of the request gets the same tag (RFC 3261 8.2.6.2, 16.11).
std::string_view StatelessToTag(const SipMessage& request, char (&tag)[16]) {
  uint64_t hash = 1469598103934665603ULL;  // FNV-1a
  auto mix = [&](std::string_view s) {
    for (char c : s) hash = (hash ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
  };
  mix(request.call_id());
  if (request.top_via()) mix(request.top_via()->branch);
  mix(request.from().tag);
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 16; ++i) tag[i] = kHex[(hash >> (i * 4)) & 0xf];
  return {tag, sizeof(tag)};
}

}  // namespace

void WriteResponse(const SipMessage& request, int code, std::string_view reason,
                   std::string_view to_tag, std::string_view extra_headers, MessageWriter& out) {
  out.StatusLine(code, reason);
  for (size_t i = 0; i < request.header_count(); ++i) {
    const HeaderField& h = request.headers()[i];
    switch (h.id) {
      case HeaderId::kVia:
      case HeaderId::kFrom:
      case HeaderId::kCallId:
      case HeaderId::kCSeq:
        out.Header(HeaderName(h.id), h.value);
        break;
      case HeaderId::kTo:
        out.Append("To: ");
        out.Append(h.value);
        // 100 Trying carries no tag (RFC 3261 8.2.6.2).
        if (code > 100 && !to_tag.empty() && request.to().tag.empty()) {
          out.Append(";tag=");
          out.Append(to_tag);
        }
        out.Append("\r\n");
        break;
      default:
        break;
    }
  }
  out.Append(extra_headers);
  out.Body({});
}

void WriteStatelessResponse(const SipMessage& request, int code, std::string_view reason,
                            std::string_view extra_headers, MessageWriter& out) {
  char tag_storage[16];
  WriteResponse(request, code, reason, StatelessToTag(request, tag_storage), extra_headers, out);
}

bool WriteProblemResponse(const SipMessage& request, const Problem& problem,
                          std::string_view unsupported, MessageWriter& out) {
  if (problem.response_code == 0 || !request.is_request() || request.method() == Method::kAck)
    return false;
  if (request.FindHeader(HeaderId::kVia) == nullptr) return false;
  char reason[96];
  size_t reason_size = WriteReasonPhrase(problem, reason, sizeof(reason));
  char extra[512];
  MessageWriter extra_writer(extra, sizeof(extra));
  if (problem.response_code == 420 && !unsupported.empty()) {
    extra_writer.Header("Unsupported", unsupported);
    if (extra_writer.overflowed()) return false;
  }
  WriteStatelessResponse(request, problem.response_code, {reason, reason_size},
                         extra_writer.view(), out);
  return !out.overflowed();
}

}  // namespace b2bua::proto
