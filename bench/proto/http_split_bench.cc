// A floor for the parser figures: what mature HTTP/1 parsers take merely to split the same
// header blocks into name/value pairs, with no value parsed. Each sample's SIP start line
// is respelled as HTTP/1.1 ("SIP/2.0" becomes "HTTP/1.1"); every header line and the body
// stay byte for byte. Both parsers must report every header line of the sample.
//
// - Boost.Beast's basic_parser (already a dependency: the metrics endpoint serves with it),
//   with callbacks that only count the fields.
// - picohttpparser, the splitter of the H2O server. Debian ships it only inside the Perl
//   module HTTP::Parser::XS (package libhttp-parser-xs-perl), whose shared object exports
//   phr_parse_request/phr_parse_response; it is loaded at run time, and its benchmark is
//   registered only when the module is installed.

#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <glob.h>

#include <boost/beast/http/basic_parser.hpp>
#include <cstddef>
#include <string>
#include <string_view>

#include "bench/proto/sip_samples.h"

namespace b2bua::proto {
namespace {

using bench::OverSamples;
using bench::Sample;
using bench::SampleFor;
using bench::SetThroughput;

namespace http = boost::beast::http;

struct HttpSample {
  std::string bytes;
  size_t header_lines = 0;
  bool is_request = false;
};

// The sample with its SIP version respelled, and the header lines a splitter must find.
HttpSample ToHttp(const Sample& sample) {
  HttpSample out;
  std::string_view sip = sample.bytes;
  size_t line_end = sip.find("\r\n");
  std::string_view start_line = sip.substr(0, line_end);
  out.is_request = !start_line.starts_with("SIP/2.0 ");
  if (out.is_request) {
    out.bytes = std::string(start_line.substr(0, start_line.rfind(' '))) + " HTTP/1.1";
  } else {
    out.bytes = "HTTP/1.1" + std::string(start_line.substr(7));
  }
  out.bytes += sip.substr(line_end);
  size_t header_end = sip.find("\r\n\r\n");
  for (size_t at = line_end; at < header_end; at = sip.find("\r\n", at + 2)) ++out.header_lines;
  return out;
}

template <bool isRequest>
class CountingParser : public http::basic_parser<isRequest> {
 public:
  size_t fields = 0;

 private:
  using string_view = boost::beast::string_view;
  using error_code = boost::beast::error_code;
  void on_request_impl(http::verb, string_view, string_view, int, error_code&) override {}
  void on_response_impl(int, string_view, int, error_code&) override {}
  void on_field_impl(http::field, string_view, string_view, error_code&) override { ++fields; }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(boost::optional<std::uint64_t> const&, error_code&) override {}
  size_t on_body_impl(string_view body, error_code&) override { return body.size(); }
  void on_chunk_header_impl(std::uint64_t, string_view, error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code&) override {
    return body.size();
  }
  void on_finish_impl(error_code&) override {}
};

// One whole message through a fresh parser; the number of fields it reported, or -1.
template <bool isRequest>
long SplitWithBeast(const std::string& bytes) {
  CountingParser<isRequest> parser;
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(bytes), ec);
  if (ec || !parser.is_done()) return -1;
  return static_cast<long>(parser.fields);
}

void BM_SplitBeastHttp(benchmark::State& state) {
  const Sample* sample = SampleFor(state);
  if (sample == nullptr) return;
  const HttpSample http_sample = ToHttp(*sample);
  auto split = http_sample.is_request ? SplitWithBeast<true> : SplitWithBeast<false>;
  if (split(http_sample.bytes) != static_cast<long>(http_sample.header_lines)) {
    state.SkipWithError("Beast rejected the message or missed a header line");
    return;
  }
  for (auto _ : state) {
    long fields = split(http_sample.bytes);
    benchmark::DoNotOptimize(fields);
  }
  SetThroughput(state, *sample);
}
/** Measure Boost.Beast's HTTP/1 parser splitting the same header block (no value parsed). */
BENCHMARK(BM_SplitBeastHttp)->Apply(OverSamples);

// picohttpparser's interface, as its header declares it.
struct PhrHeader {
  const char* name;
  size_t name_len;
  const char* value;
  size_t value_len;
};
using PhrParseRequest = int (*)(const char* buf, size_t len, const char** method,
                                size_t* method_len, const char** path, size_t* path_len,
                                int* minor_version, PhrHeader* headers, size_t* num_headers,
                                size_t last_len);
using PhrParseResponse = int (*)(const char* buf, size_t len, int* minor_version, int* status,
                                 const char** msg, size_t* msg_len, PhrHeader* headers,
                                 size_t* num_headers, size_t last_len);

struct Pico {
  PhrParseRequest parse_request = nullptr;
  PhrParseResponse parse_response = nullptr;
};

// The first file matching `pattern`, or "".
std::string FirstMatch(const char* pattern) {
  glob_t found{};
  std::string path;
  if (glob(pattern, 0, nullptr, &found) == 0 && found.gl_pathc > 0) path = found.gl_pathv[0];
  globfree(&found);
  return path;
}

// The module's object refers to libperl's symbols, which must be loaded first; the parser
// functions use none of them.
Pico LoadPico() {
  Pico pico;
  std::string libperl = FirstMatch("/usr/lib/*-linux-gnu/libperl.so.5.*");
  std::string module = FirstMatch("/usr/lib/*-linux-gnu/perl5/*/auto/HTTP/Parser/XS/XS.so");
  if (libperl.empty() || module.empty()) return pico;
  if (dlopen(libperl.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) return pico;
  void* handle = dlopen(module.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return pico;
  pico.parse_request = reinterpret_cast<PhrParseRequest>(dlsym(handle, "phr_parse_request"));
  pico.parse_response = reinterpret_cast<PhrParseResponse>(dlsym(handle, "phr_parse_response"));
  return pico;
}

// The bytes of the header block it consumed and its header count, or -1.
long SplitWithPico(const Pico& pico, const HttpSample& sample, size_t* header_count) {
  PhrHeader headers[64];
  size_t count = 64;
  int minor_version = 0;
  int consumed;
  if (sample.is_request) {
    const char* method;
    const char* path;
    size_t method_len, path_len;
    consumed = pico.parse_request(sample.bytes.data(), sample.bytes.size(), &method, &method_len,
                                  &path, &path_len, &minor_version, headers, &count, 0);
  } else {
    int status;
    const char* reason;
    size_t reason_len;
    consumed = pico.parse_response(sample.bytes.data(), sample.bytes.size(), &minor_version,
                                   &status, &reason, &reason_len, headers, &count, 0);
  }
  *header_count = count;
  return consumed;
}

void BM_SplitPicoHttp(benchmark::State& state, Pico pico) {
  const Sample* sample = SampleFor(state);
  if (sample == nullptr) return;
  const HttpSample http_sample = ToHttp(*sample);
  size_t header_count = 0;
  if (SplitWithPico(pico, http_sample, &header_count) <= 0 ||
      header_count != http_sample.header_lines) {
    state.SkipWithError("picohttpparser rejected the message or missed a header line");
    return;
  }
  for (auto _ : state) {
    long consumed = SplitWithPico(pico, http_sample, &header_count);
    benchmark::DoNotOptimize(consumed);
    benchmark::DoNotOptimize(header_count);
  }
  SetThroughput(state, *sample);
}

/** Measure picohttpparser splitting the same header block (no value parsed), if installed. */
const bool kPicoRegistered = [] {
  Pico pico = LoadPico();
  if (pico.parse_request == nullptr || pico.parse_response == nullptr) return false;
  benchmark::RegisterBenchmark("BM_SplitPicoHttp", BM_SplitPicoHttp, pico)->Apply(OverSamples);
  return true;
}();

}  // namespace
}  // namespace b2bua::proto
