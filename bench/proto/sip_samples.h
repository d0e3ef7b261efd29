#pragma once

// The SIP messages every parser benchmark runs on, one benchmark argument per message.

#include <benchmark/benchmark.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

// bench/CMakeLists.txt points this at the source tree; the fallback lets a lone
// `g++ -fsyntax-only` of this file work and a binary run from the repository root.
#ifndef B2BUA_SIP_DATA_DIR
#define B2BUA_SIP_DATA_DIR "tests/data/sip"
#endif

namespace b2bua::proto::bench {

struct SampleSpec {
  std::string_view file;
  size_t contact_count;  // what every parser must find; catches a silently skipped list
};

// Index = the benchmark argument.
constexpr std::array<SampleSpec, 3> kSamples = {{
    {"invite_sdp.sip", 1},
    {"ok200.sip", 1},
    {"redirect302.sip", 5},
}};

struct Sample {
  std::string_view name;
  std::string bytes;  // empty when the file could not be read
  size_t contact_count = 0;
};

// Read on first use, before any timed loop starts, so file I/O is never measured.
inline const std::array<Sample, kSamples.size()>& Samples() {
  static const std::array<Sample, kSamples.size()> samples = [] {
    std::array<Sample, kSamples.size()> loaded;
    for (size_t i = 0; i < kSamples.size(); ++i) {
      loaded[i].name = kSamples[i].file;
      loaded[i].contact_count = kSamples[i].contact_count;
      std::ifstream in(std::string(B2BUA_SIP_DATA_DIR "/") + std::string(kSamples[i].file),
                       std::ios::binary);
      loaded[i].bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    return loaded;
  }();
  return samples;
}

// The sample for state.range(0), with the label set; nullptr (and the run skipped) when
// its file is missing.
inline const Sample* SampleFor(benchmark::State& state) {
  const Sample& sample = Samples()[static_cast<size_t>(state.range(0))];
  if (sample.bytes.empty()) {
    state.SkipWithError("cannot read the message file; is B2BUA_SIP_DATA_DIR right?");
    return nullptr;
  }
  state.SetLabel(std::string(sample.name));
  return &sample;
}

inline void SetThroughput(benchmark::State& state, const Sample& sample) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(sample.bytes.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// Registers one run per message.
inline void OverSamples(benchmark::internal::Benchmark* b) {
  b->ArgName("msg");
  for (size_t i = 0; i < kSamples.size(); ++i) b->Arg(static_cast<int64_t>(i));
}

}  // namespace b2bua::proto::bench
