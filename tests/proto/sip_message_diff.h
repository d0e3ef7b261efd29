// Field-by-field comparison of two parses of the same input, for the differential tests
// that hold SipParser::Parse() to SipParser::ParseExact(). Views are compared by address
// and length: both parses point into the same buffer, so equal text at another place is a
// difference too.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "proto/sip_message.h"
#include "proto/sip_parser.h"

namespace b2bua::proto::testing {

class MessageDiff {
 public:
  /// The first difference as "what: a vs b", or empty when the parses agree.
  static std::string Between(const ParseResult& ra, const SipMessage& a, const ParseResult& rb,
                             const SipMessage& b) {
    MessageDiff d;
    d.Results(ra, rb);
    d.Messages(a, b);
    return d.first_;
  }

 private:
  template <typename T>
  void Same(std::string_view what, const T& a, const T& b) {
    if (first_.empty() && !(a == b))
      first_ = std::string(what) + ": " + std::to_string(static_cast<long long>(a)) + " vs " +
               std::to_string(static_cast<long long>(b));
  }
  void Same(std::string_view what, std::string_view a, std::string_view b) {
    if (first_.empty() && (a.data() != b.data() || a.size() != b.size()) && !(a.empty() && b.empty()))
      first_ = std::string(what) + ": \"" + std::string(a) + "\" vs \"" + std::string(b) + "\"";
  }

  void Results(const ParseResult& a, const ParseResult& b) {
    Same("status", a.status, b.status);
    Same("consumed", a.consumed, b.consumed);
    Same("defect", a.problem.defect, b.problem.defect);
    Same("defect header", a.problem.header, b.problem.header);
    Same("defect header name", a.problem.header_name, b.problem.header_name);
    Same("response code", a.problem.response_code, b.problem.response_code);
  }

  void Uri(std::string_view what, const SipUri& a, const SipUri& b) {
    std::string w(what);
    Same(w + ".text", a.text, b.text);
    Same(w + ".scheme_text", a.scheme_text, b.scheme_text);
    Same(w + ".user", a.user, b.user);
    Same(w + ".password", a.password, b.password);
    Same(w + ".host", a.host, b.host);
    Same(w + ".params", a.params, b.params);
    Same(w + ".headers", a.headers, b.headers);
    Same(w + ".transport", a.transport, b.transport);
    Same(w + ".maddr", a.maddr, b.maddr);
    Same(w + ".port", a.port, b.port);
    Same(w + ".scheme", a.scheme, b.scheme);
    Same(w + ".host_kind", a.host_kind, b.host_kind);
    Same(w + ".has_user", a.has_user, b.has_user);
    Same(w + ".lr", a.lr, b.lr);
  }

  void Address(std::string_view what, const NameAddr& a, const NameAddr& b) {
    std::string w(what);
    Same(w + ".text", a.text, b.text);
    Same(w + ".display_name", a.display_name, b.display_name);
    Same(w + ".params", a.params, b.params);
    Same(w + ".tag", a.tag, b.tag);
    Same(w + ".angle_brackets", a.angle_brackets, b.angle_brackets);
    Same(w + ".quoted_display_name", a.quoted_display_name, b.quoted_display_name);
    Uri(w + ".uri", a.uri, b.uri);
  }

  void OneVia(std::string_view what, const Via& a, const Via& b) {
    std::string w(what);
    Same(w + ".text", a.text, b.text);
    Same(w + ".protocol_name", a.protocol_name, b.protocol_name);
    Same(w + ".protocol_version", a.protocol_version, b.protocol_version);
    Same(w + ".transport", a.transport, b.transport);
    Same(w + ".host", a.host, b.host);
    Same(w + ".params", a.params, b.params);
    Same(w + ".branch", a.branch, b.branch);
    Same(w + ".received", a.received, b.received);
    Same(w + ".maddr", a.maddr, b.maddr);
    Same(w + ".port", a.port, b.port);
    Same(w + ".rport", a.rport, b.rport);
    Same(w + ".ttl", a.ttl, b.ttl);
    Same(w + ".host_kind", a.host_kind, b.host_kind);
    Same(w + ".has_rport", a.has_rport, b.has_rport);
  }

  void Messages(const SipMessage& a, const SipMessage& b) {
    Same("is_request", a.is_request(), b.is_request());
    Same("method", a.method(), b.method());
    Same("method_text", a.method_text(), b.method_text());
    Uri("request_uri", a.request_uri(), b.request_uri());
    Same("status_code", a.status_code(), b.status_code());
    Same("reason_phrase", a.reason_phrase(), b.reason_phrase());
    Same("header_count", a.header_count(), b.header_count());
    for (size_t i = 0; first_.empty() && i < a.header_count(); ++i) {
      std::string w = "header[" + std::to_string(i) + "]";
      Same(w + ".name", a.headers()[i].name, b.headers()[i].name);
      Same(w + ".value", a.headers()[i].value, b.headers()[i].value);
      Same(w + ".id", a.headers()[i].id, b.headers()[i].id);
    }
    Same("via_count", a.via_count(), b.via_count());
    for (size_t i = 0; first_.empty() && i < a.via_count(); ++i)
      OneVia("via[" + std::to_string(i) + "]", a.vias()[i], b.vias()[i]);
    Same("has_from", a.has_from(), b.has_from());
    if (a.has_from() && b.has_from()) Address("from", a.from(), b.from());
    Same("has_to", a.has_to(), b.has_to());
    if (a.has_to() && b.has_to()) Address("to", a.to(), b.to());
    Same("call_id", a.call_id(), b.call_id());
    Same("has_cseq", a.has_cseq(), b.has_cseq());
    Same("cseq.number", a.cseq().number, b.cseq().number);
    Same("cseq.method_text", a.cseq().method_text, b.cseq().method_text);
    Same("cseq.method", a.cseq().method, b.cseq().method);
    Same("max_forwards", a.max_forwards(), b.max_forwards());
    Same("content_length", a.content_length(), b.content_length());
    Same("content_type", a.content_type(), b.content_type());
    Same("expires", a.expires(), b.expires());
    Same("contact_star", a.contact_star(), b.contact_star());
    Same("contact_count", a.contact_count(), b.contact_count());
    for (size_t i = 0; first_.empty() && i < a.contact_count(); ++i) {
      std::string w = "contact[" + std::to_string(i) + "]";
      const Contact& ca = a.contacts()[i];
      const Contact& cb = b.contacts()[i];
      Address(w, ca.address, cb.address);
      Same(w + ".expires", ca.expires, cb.expires);
      Same(w + ".q_millis", ca.q_millis, cb.q_millis);
      Same(w + ".defect", ca.defect, cb.defect);
    }
    Same("route_count", a.route_count(), b.route_count());
    for (size_t i = 0; first_.empty() && i < a.route_count(); ++i)
      Address("route[" + std::to_string(i) + "]", a.routes()[i], b.routes()[i]);
    Same("record_route_count", a.record_route_count(), b.record_route_count());
    for (size_t i = 0; first_.empty() && i < a.record_route_count(); ++i)
      Address("record_route[" + std::to_string(i) + "]", a.record_routes()[i], b.record_routes()[i]);
    Same("body", a.body(), b.body());
    Same("raw", a.raw(), b.raw());
  }

  std::string first_;
};

}  // namespace b2bua::proto::testing
