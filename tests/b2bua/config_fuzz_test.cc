// libFuzzer target for the config parser: any text, however broken, gets an absl::Status
// naming its first fault, never a crash, a hang or an escaping yaml-cpp exception. SIGHUP
// feeds whatever an operator saved to this code while calls are up.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "b2bua/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = b2bua::ParseConfig(text, "fuzz.yaml");
  // A refusal must say where and why.
  if (!config.ok() && config.status().message().empty()) __builtin_trap();
  return 0;
}
