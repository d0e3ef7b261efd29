// libFuzzer target for the SIP parser: every input is parsed as a datagram and as a stream,
// validated, answered and re-serialized, so that any read outside the input, any undefined
// behaviour or any loop shows up under ASan+UBSan; and parsed again by ParseExact(), which
// must agree with Parse() on every field.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "proto/sip_builder.h"
#include "proto/sip_parser.h"
#include "proto/sip_validate.h"
#include "tests/proto/sip_message_diff.h"

namespace {

using namespace b2bua::proto;

void Exercise(std::string_view input, Framing framing, SipMessage& message) {
  SipParser parser(ParserLimits{.max_message_bytes = 16 * 1024});
  ParseResult result = parser.Parse(input, framing, &message);
  if (result.consumed > input.size()) __builtin_trap();
  static char out[96 * 1024];
  MessageWriter writer(out, sizeof(out));
  if (!result.ok()) {
    if (result.status == ParseStatus::kMalformed) WriteProblemResponse(message, result.problem, {}, writer);
    return;
  }
  if (message.body().size() > input.size()) __builtin_trap();
  std::string_view unsupported;
  Problem problem = message.is_request()
                        ? ValidateRequest(message, RequestPolicy{.supported_option_tags = "timer"},
                                          &unsupported)
                        : ValidateResponse(message);
  if (problem) {
    WriteProblemResponse(message, problem, unsupported, writer);
    return;
  }
  WriteMessage(message, message.body(), writer);
  if (writer.overflowed()) return;
  // What we write must parse again.
  static SipMessage again;
  if (!parser.Parse(writer.view(), Framing::kStream, &again).ok()) __builtin_trap();
  if (message.is_request())
    WriteResponse(message, 200, "OK", "fuzz-tag", {}, writer);
}

// The fast paths (the common-shape line loop, the one-pass value readers) must accept only
// what the exact path accepts, and read it the same.
void Differential(std::string_view input, Framing framing) {
  static auto* fast = new SipMessage;
  static auto* exact = new SipMessage;
  SipParser parser(ParserLimits{.max_message_bytes = 16 * 1024});
  ParseResult a = parser.Parse(input, framing, fast);
  ParseResult b = parser.ParseExact(input, framing, exact);
  std::string diff = b2bua::proto::testing::MessageDiff::Between(a, *fast, b, *exact);
  if (!diff.empty()) {
    std::fprintf(stderr, "Parse() and ParseExact() differ: %s\n", diff.c_str());
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto* message = new SipMessage;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  Exercise(input, Framing::kDatagram, *message);
  Exercise(input, Framing::kStream, *message);
  Differential(input, Framing::kDatagram);
  Differential(input, Framing::kStream);
  return 0;
}
