#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

namespace b2bua {

enum class LogLevel : uint8_t { kError = 0, kWarning = 1, kInfo = 2, kDebug = 3 };

/// Safe from any thread. Lines below `level` are dropped before they are formatted.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
bool ParseLogLevel(std::string_view text, LogLevel* out);
inline bool LogEnabled(LogLevel level) { return level <= GetLogLevel(); }

/// One call site's flood guard: at most `per_second` lines a second; the lines it drops
/// are counted and reported by the next line that passes ("... (41 similar suppressed)").
/// Lock-free; shared by the shards that reach the same site.
class LogRateLimit {
 public:
  explicit constexpr LogRateLimit(uint32_t per_second) : per_second_(per_second) {}
  /// Safe from any thread. True when a line may be written now; `*suppressed` receives the
  /// number of lines dropped since the last one written.
  bool Allow(uint64_t* suppressed);

 private:
  const uint32_t per_second_;
  std::atomic<uint64_t> second_{0};
  std::atomic<uint32_t> written_{0};
  std::atomic<uint64_t> dropped_{0};
};

/// Safe from any thread. Writes "b2bua <level>: <line>\n" to stderr in one write, so lines
/// from different shards never interleave. Never throws.
void WriteLogLine(LogLevel level, std::string_view line, uint64_t suppressed = 0);

}  // namespace b2bua
