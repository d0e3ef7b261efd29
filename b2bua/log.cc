#include "b2bua/log.h"

#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace b2bua {
namespace {

std::atomic<uint8_t> g_level{static_cast<uint8_t>(LogLevel::kInfo)};

constexpr std::string_view kLevelNames[] = {"error", "warning", "info", "debug"};

uint64_t NowSecond() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  return static_cast<uint64_t>(now.tv_sec);
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<uint8_t>(level)); }

LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

bool ParseLogLevel(std::string_view text, LogLevel* out) {
  for (size_t i = 0; i < std::size(kLevelNames); ++i) {
    if (text == kLevelNames[i]) {
      *out = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

bool LogRateLimit::Allow(uint64_t* suppressed) {
  const uint64_t now = NowSecond();
  uint64_t second = second_.load(std::memory_order_relaxed);
  if (second != now && second_.compare_exchange_strong(second, now)) {
    written_.store(0, std::memory_order_relaxed);
  }
  if (written_.fetch_add(1, std::memory_order_relaxed) >= per_second_) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  *suppressed = dropped_.exchange(0, std::memory_order_relaxed);
  return true;
}

void WriteLogLine(LogLevel level, std::string_view line, uint64_t suppressed) {
  std::string out = "b2bua ";
  out.append(kLevelNames[static_cast<size_t>(level)]);
  out += ": ";
  out.append(line);
  if (suppressed > 0) {
    out += " (";
    out += std::to_string(suppressed);
    out += " similar suppressed)";
  }
  out += '\n';
  // One write(2): atomic for lines under PIPE_BUF on pipes, and never mixed by stdio.
  ssize_t ignored = ::write(STDERR_FILENO, out.data(), out.size());
  (void)ignored;
}

}  // namespace b2bua
