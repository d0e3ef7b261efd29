// Speed of proto/sip_parser against libosip2 and sofia-sip on the messages in tests/data/sip/.
//
// Every benchmark runs once per message (->Arg(i), i indexing kSamples); the message file
// name is printed as the label. The osip2 and sofia-sip benchmarks are only registered when
// bench/CMakeLists.txt found the library and defined B2BUA_HAVE_OSIP2 / B2BUA_HAVE_SOFIA.

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "bench/proto/sip_samples.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"

#ifdef B2BUA_HAVE_OSIP2
#include <osipparser2/osip_parser.h>
#endif
#ifdef B2BUA_HAVE_SOFIA
#include <sofia-sip/msg.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_protos.h>
#endif

namespace b2bua::proto {
namespace {

using bench::OverSamples;
using bench::Sample;
using bench::SampleFor;
using bench::SetThroughput;

// ---------------------------------------------------------------------------------------
// Ours.

// SipMessage holds its fixed-capacity header, Via and Contact arrays inline (tens of KB), so
// it is allocated once per run and reused, as a shard reuses its one instance.
std::unique_ptr<SipMessage> NewMessage() { return std::make_unique<SipMessage>(); }

bool ParsedOk(const SipParser& parser, const Sample& sample, SipMessage* message) {
  ParseResult result = parser.Parse(sample.bytes, Framing::kDatagram, message);
  return result.ok() && result.consumed == sample.bytes.size() &&
         message->contact_count() == sample.contact_count;
}

void BM_ParseOurs(benchmark::State& state) {
  const Sample* sample = SampleFor(state);
  if (sample == nullptr) return;
  SipParser parser;
  std::unique_ptr<SipMessage> message = NewMessage();
  if (!ParsedOk(parser, *sample, message.get())) {
    state.SkipWithError("SipParser rejected the message or missed a Contact");
    return;
  }
  std::string_view input = sample->bytes;
  for (auto _ : state) {
    ParseResult result = parser.Parse(input, Framing::kDatagram, message.get());
    benchmark::DoNotOptimize(result);
    benchmark::ClobberMemory();
  }
  SetThroughput(state, *sample);
}
/** Measure a full SipParser::Parse (datagram framing) into one reused SipMessage. */
BENCHMARK(BM_ParseOurs)->Apply(OverSamples);

void BM_ParseAndReadOurs(benchmark::State& state) {
  const Sample* sample = SampleFor(state);
  if (sample == nullptr) return;
  SipParser parser;
  std::unique_ptr<SipMessage> message = NewMessage();
  if (!ParsedOk(parser, *sample, message.get())) {
    state.SkipWithError("SipParser rejected the message or missed a Contact");
    return;
  }
  std::string_view input = sample->bytes;
  for (auto _ : state) {
    ParseResult result = parser.Parse(input, Framing::kDatagram, message.get());
    benchmark::DoNotOptimize(result);
    const Via* top = message->top_via();
    std::string_view branch = top != nullptr ? top->branch : std::string_view();
    std::string_view call_id = message->call_id();
    int q_sum = 0;
    for (size_t i = 0; i < message->contact_count(); ++i) q_sum += message->contacts()[i].q_millis;
    benchmark::DoNotOptimize(branch);
    benchmark::DoNotOptimize(call_id);
    benchmark::DoNotOptimize(q_sum);
  }
  SetThroughput(state, *sample);
}
/** Measure Parse plus what the B2BUA reads per packet: top Via branch, Call-ID, each Contact q. */
BENCHMARK(BM_ParseAndReadOurs)->Apply(OverSamples);

// ---------------------------------------------------------------------------------------
// The other libraries keep q as text; this turns it into thousandths like Contact::q_millis.
// It assumes the RFC 3261 25.1 qvalue form ("0.7", "1.0", "1"), which the samples use.
[[maybe_unused]] int QToMillis(const char* q) {
  if (q == nullptr || *q < '0' || *q > '9') return -1;
  int millis = (*q - '0') * 1000;
  if (q[1] != '.') return millis;
  int scale = 100;
  for (const char* p = q + 2; scale > 0 && *p >= '0' && *p <= '9'; ++p, scale /= 10)
    millis += (*p - '0') * scale;
  return millis;
}

#ifdef B2BUA_HAVE_OSIP2
// ---------------------------------------------------------------------------------------
// libosip2. osip_message_parse() copies the input, then strdup()s every field into a tree
// of small heap objects; osip_message_free() releases them. Via, From, To, Contact, Call-ID,
// CSeq, Record-Route, Route, Content-Type, Content-Length, Allow and the auth headers are
// parsed into structures; everything else (Max-Forwards, Supported, User-Agent, Server, ...)
// is kept as a name/value osip_header_t, one per comma-separated value. No header is left
// for later: the parse is complete. The body is copied into an osip_body_t, not parsed as
// SDP (ours does not parse SDP either).

void InitOsip2() {
  // parser_init() builds osip's global header-name table; once per process.
  static const int init = parser_init();
  (void)init;
}

// Parses outside the timed loop to check the library accepts the sample.
bool Osip2ParsesOk(const Sample& sample) {
  osip_message_t* sip = nullptr;
  if (osip_message_init(&sip) != 0) return false;
  bool ok = osip_message_parse(sip, sample.bytes.data(), sample.bytes.size()) == 0 &&
            static_cast<size_t>(osip_list_size(&sip->contacts)) == sample.contact_count;
  osip_message_free(sip);
  return ok;
}

void BM_ParseOsip2(benchmark::State& state) {
  const Sample* sample = SampleFor(state);
  if (sample == nullptr) return;
  InitOsip2();
  if (!Osip2ParsesOk(*sample)) {
    state.SkipWithError("osip_message_parse failed or missed a Contact");
    return;
  }
  const char* data = sample->bytes.data();
  size_t size = sample->bytes.size();
  for (auto _ : state) {
    osip_message_t* sip = nullptr;
    osip_message_init(&sip);
    int rc = osip_message_parse(sip, data, size);
    benchmark::DoNotOptimize(rc);
    benchmark::DoNotOptimize(sip);
    osip_message_free(sip);
  }
  SetThroughput(state, *sample);
}
/** Measure libosip2: osip_message_init + osip_message_parse + osip_message_free. */
BENCHMARK(BM_ParseOsip2)->Apply(OverSamples);

void BM_ParseAndReadOsip2(benchmark::State& state) {
  const Sample* sample = SampleFor(state);
  if (sample == nullptr) return;
  InitOsip2();
  if (!Osip2ParsesOk(*sample)) {
    state.SkipWithError("osip_message_parse failed or missed a Contact");
    return;
  }
  // osip_uri_param_get_byname() takes a non-const char*; it does not write through it.
  static char kBranch[] = "branch";
  static char kQ[] = "q";
  const char* data = sample->bytes.data();
  size_t size = sample->bytes.size();
  for (auto _ : state) {
    osip_message_t* sip = nullptr;
    osip_message_init(&sip);
    int rc = osip_message_parse(sip, data, size);
    benchmark::DoNotOptimize(rc);
    const char* branch = nullptr;
    osip_via_t* top = nullptr;
    if (osip_message_get_via(sip, 0, &top) >= 0) {
      osip_generic_param_t* param = nullptr;
      if (osip_via_param_get_byname(top, kBranch, &param) == 0 && param != nullptr)
        branch = param->gvalue;
    }
    // osip splits the Call-ID at '@'; rebuilding the wire text would need
    // osip_call_id_to_str(), which allocates, so the two halves are read as they are.
    const char* call_id_number = sip->call_id != nullptr ? sip->call_id->number : nullptr;
    const char* call_id_host = sip->call_id != nullptr ? sip->call_id->host : nullptr;
    int q_sum = 0;
    osip_list_iterator_t it;
    for (auto* contact = static_cast<osip_contact_t*>(osip_list_get_first(&sip->contacts, &it));
         contact != nullptr; contact = static_cast<osip_contact_t*>(osip_list_get_next(&it))) {
      osip_generic_param_t* q = nullptr;
      osip_contact_param_get_byname(contact, kQ, &q);
      q_sum += QToMillis(q != nullptr ? q->gvalue : nullptr);
    }
    benchmark::DoNotOptimize(branch);
    benchmark::DoNotOptimize(call_id_number);
    benchmark::DoNotOptimize(call_id_host);
    benchmark::DoNotOptimize(q_sum);
    osip_message_free(sip);
  }
  SetThroughput(state, *sample);
}
/** Measure libosip2 parse + free plus reading the top Via branch, Call-ID and each Contact q. */
BENCHMARK(BM_ParseAndReadOsip2)->Apply(OverSamples);
#endif  // B2BUA_HAVE_OSIP2

#ifdef B2BUA_HAVE_SOFIA
// ---------------------------------------------------------------------------------------
// sofia-sip. msg_make() is not lazy: it copies the input into a fresh msg_t (one preloaded
// su_home arena, because sofia parses destructively, writing NULs into its buffer) and runs
// msg_extract(), which calls every known header's parse function at once: Via, From, To,
// Contact (each comma-separated value becomes its own sip_contact_t), Record-Route, CSeq,
// Allow, Supported, Content-Type, ... all get structures. Well-known parameters (v_branch,
// m_q, m_expires, a_tag) are set as pointers into the parameter text, so q stays a string.
// Headers missing from sip_default_mclass() (the sip_extra.h set: P-Asserted-Identity,
// Remote-Party-ID, Alert-Info, Reply-To, ...) would stay unparsed sip_unknown_t name/value
// pairs; the samples contain none of them (checked below via sip_unknown). The body becomes
// an unparsed sip_payload_t.

// Parses outside the timed loop to check the library accepts the sample and parsed every
// header: no error, no header it treated as unknown, every Contact value split out.
bool SofiaParsesOk(msg_mclass_t const* mclass, const Sample& sample) {
  msg_t* msg = msg_make(mclass, 0, sample.bytes.data(), static_cast<ssize_t>(sample.bytes.size()));
  if (msg == nullptr) return false;
  sip_t const* sip = sip_object(msg);
  size_t contacts = 0;
  if (sip != nullptr)
    for (sip_contact_t const* m = sip->sip_contact; m != nullptr; m = m->m_next) ++contacts;
  bool ok = sip != nullptr && (sip->sip_flags & MSG_FLG_ERROR) == 0 && sip->sip_error == nullptr &&
            sip->sip_unknown == nullptr && contacts == sample.contact_count;
  msg_destroy(msg);
  return ok;
}

void BM_ParseSofia(benchmark::State& state) {
  const Sample* sample = SampleFor(state);
  if (sample == nullptr) return;
  msg_mclass_t const* mclass = sip_default_mclass();
  if (!SofiaParsesOk(mclass, *sample)) {
    state.SkipWithError("msg_make failed, left a header unknown or missed a Contact");
    return;
  }
  const char* data = sample->bytes.data();
  auto size = static_cast<ssize_t>(sample->bytes.size());
  for (auto _ : state) {
    msg_t* msg = msg_make(mclass, 0, data, size);
    benchmark::DoNotOptimize(msg);
    msg_destroy(msg);
  }
  SetThroughput(state, *sample);
}
/** Measure sofia-sip: msg_make(sip_default_mclass()) (copy + full header parse) + msg_destroy. */
BENCHMARK(BM_ParseSofia)->Apply(OverSamples);

void BM_ParseAndReadSofia(benchmark::State& state) {
  const Sample* sample = SampleFor(state);
  if (sample == nullptr) return;
  msg_mclass_t const* mclass = sip_default_mclass();
  if (!SofiaParsesOk(mclass, *sample)) {
    state.SkipWithError("msg_make failed, left a header unknown or missed a Contact");
    return;
  }
  const char* data = sample->bytes.data();
  auto size = static_cast<ssize_t>(sample->bytes.size());
  for (auto _ : state) {
    msg_t* msg = msg_make(mclass, 0, data, size);
    sip_t const* sip = sip_object(msg);
    const char* branch = sip->sip_via != nullptr ? sip->sip_via->v_branch : nullptr;
    const char* call_id = sip->sip_call_id != nullptr ? sip->sip_call_id->i_id : nullptr;
    int q_sum = 0;
    for (sip_contact_t const* m = sip->sip_contact; m != nullptr; m = m->m_next)
      q_sum += QToMillis(m->m_q);
    benchmark::DoNotOptimize(branch);
    benchmark::DoNotOptimize(call_id);
    benchmark::DoNotOptimize(q_sum);
    msg_destroy(msg);
  }
  SetThroughput(state, *sample);
}
/** Measure sofia-sip parse + destroy plus reading the top Via branch, Call-ID, each Contact q. */
BENCHMARK(BM_ParseAndReadSofia)->Apply(OverSamples);
#endif  // B2BUA_HAVE_SOFIA

}  // namespace
}  // namespace b2bua::proto
