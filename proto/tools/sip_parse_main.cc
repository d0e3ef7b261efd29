// sip-parse: checks captured SIP messages the way the B2BUA reads them and prints one JSON
// line per file. Exit status: 0 when every file is valid, 1 when any is not, 2 on usage or
// I/O errors.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>

#include "proto/sip_parser.h"
#include "proto/sip_validate.h"

namespace {

using b2bua::proto::Framing;
using b2bua::proto::ParseStatus;
using b2bua::proto::SipMessage;

// Length of the valid UTF-8 sequence at s[i], or 0.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
  if (c >= 0xf5 || n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  return n;
}

void AppendJsonString(std::string& out, std::string_view s) {
  out += '"';
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (size_t n = Utf8SequenceLength(s, i)) {
      out.append(s.substr(i, n));
      i += n - 1;
    } else {
      out += "\\ufffd";
    }
  }
  out += '"';
}

void AppendKey(std::string& out, std::string_view key) {
  if (out.back() != '{') out += ',';
  AppendJsonString(out, key);
  out += ':';
}

std::string Describe(std::string_view file, std::string_view bytes, Framing framing,
                     SipMessage& message, bool* valid) {
  b2bua::proto::SipParser parser;
  b2bua::proto::ParseResult result = parser.Parse(bytes, framing, &message);
  b2bua::proto::Problem problem = result.problem;
  if (result.ok()) {
    problem = message.is_request()
                  ? b2bua::proto::ValidateRequest(message, b2bua::proto::RequestPolicy{})
                  : b2bua::proto::ValidateResponse(message);
  } else if (result.status == ParseStatus::kIncomplete) {
    problem.defect = b2bua::proto::Defect::kBodyTruncated;
  } else if (result.status == ParseStatus::kKeepAlive) {
    problem.defect = b2bua::proto::Defect::kBadStartLine;
  }
  *valid = result.ok() && !problem;

  std::string out = "{";
  AppendKey(out, "file");
  AppendJsonString(out, file);
  AppendKey(out, "valid");
  out += *valid ? "true" : "false";
  if (!*valid) {
    std::string error(b2bua::proto::DefectText(problem.defect));
    std::string_view header = problem.header_name.empty()
                                  ? b2bua::proto::HeaderName(problem.header)
                                  : problem.header_name;
    if (!header.empty()) error += " (" + std::string(header) + ")";
    if (result.status == ParseStatus::kIncomplete) error = "incomplete message";
    AppendKey(out, "error");
    AppendJsonString(out, error);
    AppendKey(out, "response_code");
    out += problem.response_code ? std::to_string(problem.response_code) : "null";
  }
  if (result.status != ParseStatus::kComplete) return out + "}";

  if (message.is_request()) {
    AppendKey(out, "method");
    AppendJsonString(out, message.method_text());
    AppendKey(out, "request_uri");
    AppendJsonString(out, message.request_uri().text);
  } else {
    AppendKey(out, "status");
    out += std::to_string(message.status_code());
  }
  AppendKey(out, "call_id");
  if (message.call_id().empty()) out += "null";
  else AppendJsonString(out, message.call_id());
  AppendKey(out, "cseq");
  if (message.has_cseq()) {
    out += "{\"number\":" + std::to_string(message.cseq().number) + ",\"method\":";
    AppendJsonString(out, message.cseq().method_text);
    out += '}';
  } else {
    out += "null";
  }
  AppendKey(out, "max_forwards");
  out += message.max_forwards() >= 0 ? std::to_string(message.max_forwards()) : "null";
  AppendKey(out, "via");
  out += '[';
  for (size_t i = 0; i < message.via_count(); ++i) {
    const b2bua::proto::Via& via = message.vias()[i];
    std::string sent_by = via.host_kind == b2bua::proto::HostKind::kIpv6
                              ? "[" + std::string(via.host) + "]"
                              : std::string(via.host);
    if (via.port) sent_by += ":" + std::to_string(via.port);
    out += i ? ",{" : "{";
    AppendKey(out, "sent_by");
    AppendJsonString(out, sent_by);
    AppendKey(out, "branch");
    if (via.branch.empty()) out += "null";
    else AppendJsonString(out, via.branch);
    out += '}';
  }
  out += ']';
  AppendKey(out, "contacts");
  out += '[';
  for (size_t i = 0; i < message.contact_count(); ++i) {
    const b2bua::proto::Contact& contact = message.contacts()[i];
    out += i ? ",{" : "{";
    AppendKey(out, "uri");
    AppendJsonString(out, contact.address.uri.text);
    AppendKey(out, "q");
    if (contact.q_millis < 0) {
      out += "null";
    } else {
      char q[16];
      std::snprintf(q, sizeof(q), "%g", contact.q_millis / 1000.0);
      out += q;
    }
    AppendKey(out, "expires");
    out += contact.expires >= 0 ? std::to_string(contact.expires) : "null";
    if (contact.defect != b2bua::proto::ContactDefect::kNone) {
      AppendKey(out, "defect");
      AppendJsonString(out, contact.defect == b2bua::proto::ContactDefect::kBadQValue
                                ? "bad q-value"
                                : "bad expires");
    }
    out += '}';
  }
  out += ']';
  AppendKey(out, "content_length");
  out += message.content_length() >= 0 ? std::to_string(message.content_length()) : "null";
  AppendKey(out, "body_bytes");
  out += std::to_string(message.body().size());
  return out + "}";
}

}  // namespace

int main(int argc, char** argv) {
  Framing framing = Framing::kDatagram;
  int files = 0;
  bool all_valid = true;
  auto message = std::make_unique<SipMessage>();
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: sip-parse [--stream] FILE...\n"
          "Parses each file as one SIP message (as a UDP datagram, or with --stream as the\n"
          "start of a TCP stream) and prints one JSON line per file: valid, error and\n"
          "response_code (what the B2BUA would answer), method or status, request_uri,\n"
          "call_id, cseq, max_forwards, via, contacts, content_length, body_bytes.\n");
      return 0;
    }
    if (arg == "--stream") {
      framing = Framing::kStream;
      continue;
    }
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "sip-parse: cannot read %s\n", argv[i]);
      return 2;
    }
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    bool valid = false;
    std::string line = Describe(arg, bytes, framing, *message, &valid);
    std::printf("%s\n", line.c_str());
    all_valid = all_valid && valid;
    ++files;
  }
  if (files == 0) {
    std::fprintf(stderr, "usage: sip-parse [--stream] FILE...\n");
    return 2;
  }
  return all_valid ? 0 : 1;
}
