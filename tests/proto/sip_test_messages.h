#pragma once

// The well-formed request and response the proto tests vary one element of (RFC 3261's
// Alice and Bob).

#include <string>
#include <string_view>

namespace b2bua::proto::test {

/// A well-formed request; `headers` are complete "Name: value\r\n" lines inserted before
/// Content-Length.
inline std::string Request(std::string_view method, std::string_view headers = "",
                           std::string_view body = "") {
  std::string m;
  m += method;
  m += " sip:bob@biloxi.example.com SIP/2.0\r\n";
  m += "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n";
  m += "Max-Forwards: 70\r\n";
  m += "To: Bob <sip:bob@biloxi.example.com>\r\n";
  m += "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n";
  m += "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n";
  m += "CSeq: 314159 ";
  m += method;
  m += "\r\n";
  m += headers;
  m += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  m += body;
  return m;
}

/// A response with the headers every response carries; `headers` go before
/// Content-Length.
inline std::string Response(std::string_view status_line, std::string_view headers = "") {
  std::string m(status_line);
  m += "\r\n";
  m += "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n";
  m += "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n";
  m += "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n";
  m += "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n";
  m += "CSeq: 314159 INVITE\r\n";
  m += headers;
  m += "Content-Length: 0\r\n\r\n";
  return m;
}

}  // namespace b2bua::proto::test
