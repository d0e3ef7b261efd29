// Runs the RFC 4475 and RFC 5118 torture corpora and the edge cases of tests/data/edge
// through proto/sip_parser and proto/sip_validate, one test per MANIFEST.tsv row, and checks
// key facts of the valid messages.

#include <cstddef>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"
#include "proto/sip_uri.h"
#include "proto/sip_validate.h"

#ifndef B2BUA_TEST_DATA_DIR
#error "B2BUA_TEST_DATA_DIR must name the tests/data folder"
#endif

namespace b2bua::proto {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kDataDir = B2BUA_TEST_DATA_DIR;
constexpr std::string_view kCorpora[] = {"rfc4475", "rfc5118", "edge"};

// The B2BUA's A-leg UAS implements no option tags in these tests, so every Require tag is
// unsupported.
const RequestPolicy kPolicy{.supported_option_tags = ""};

std::string DataPath(std::string_view relative) {
  std::string path(kDataDir);
  path += '/';
  path += relative;
  return path;
}

// Reads a whole file in binary mode: the corpora hold NULs, bare CRs and UTF-8. Returns
// nullopt when the file cannot be opened.
std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::in | std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct TortureCase {
  std::string corpus;    // "rfc4475"
  std::string file;      // "wsinv.sip"
  std::string verdict;   // "valid", "invalid" or "semantic"
  std::string expected;  // "-" or a status code
  std::string note;

  std::string RelativePath() const { return corpus + "/" + file; }
  std::string Stem() const { return file.substr(0, file.rfind('.')); }
  /// The expected status code, or nullopt for "-".
  std::optional<int> ExpectedCode() const {
    if (expected == "-") return std::nullopt;
    return std::stoi(expected);
  }
};

void PrintTo(const TortureCase& c, std::ostream* os) {
  *os << c.RelativePath() << " [" << c.verdict << " " << c.expected << "]";
}

std::vector<std::string> SplitTabs(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    size_t tab = line.find('\t', start);
    fields.push_back(
        line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) break;
    start = tab + 1;
  }
  return fields;
}

// Reads one corpus's MANIFEST.tsv (header row, then file/rfc_section/verdict/
// expected_response/note). Rows that do not have five fields are returned with an empty
// verdict so that the test for that row fails visibly instead of vanishing.
std::vector<TortureCase> LoadManifest(std::string_view corpus) {
  std::vector<TortureCase> cases;
  std::optional<std::string> text = ReadFile(DataPath(std::string(corpus) + "/MANIFEST.tsv"));
  if (!text) return cases;
  std::istringstream lines(*text);
  std::string line;
  bool header = true;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (header) {
      header = false;
      continue;
    }
    if (line.empty()) continue;
    std::vector<std::string> f = SplitTabs(line);
    TortureCase c;
    c.corpus = std::string(corpus);
    c.file = f[0];
    if (f.size() == 5) {
      c.verdict = f[2];
      c.expected = f[3];
      c.note = f[4];
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

std::vector<TortureCase> LoadAllManifests() {
  std::vector<TortureCase> all;
  for (std::string_view corpus : kCorpora) {
    std::vector<TortureCase> cases = LoadManifest(corpus);
    all.insert(all.end(), cases.begin(), cases.end());
  }
  return all;
}

// "rfc5118/port-ambiguous.sip" -> "rfc5118_port_ambiguous": test names allow [A-Za-z0-9_].
std::string TestName(const ::testing::TestParamInfo<TortureCase>& info) {
  std::string name = info.param.corpus + "_" + info.param.Stem();
  for (char& c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!ok) c = '_';
  }
  return name;
}

bool IsUasValidatorCode(int code) {
  return code == 400 || code == 414 || code == 416 || code == 420 || code == 483 ||
         code == 501;
}

// Holds a file's bytes and the message parsed from them; the message's views point into
// `bytes`, so both live together.
class ParsedFile {
 public:
  explicit ParsedFile(const std::string& relative_path) : message_(std::make_unique<SipMessage>()) {
    std::optional<std::string> bytes = ReadFile(DataPath(relative_path));
    loaded_ = bytes.has_value();
    if (loaded_) bytes_ = std::move(*bytes);
    result_ = parser_.Parse(bytes_, Framing::kDatagram, message_.get());
  }

  bool loaded() const { return loaded_; }
  const std::string& bytes() const { return bytes_; }
  const ParseResult& result() const { return result_; }
  const SipMessage& message() const { return *message_; }

 private:
  SipParser parser_;
  std::string bytes_;
  bool loaded_ = false;
  std::unique_ptr<SipMessage> message_;
  ParseResult result_;
};

TEST(TortureManifestTest, EveryCorpusIsComplete) {
  // Guards against a missing or truncated data folder, which would otherwise silently
  // instantiate fewer parameterized tests.
  EXPECT_EQ(LoadManifest("rfc4475").size(), 49u) << "data dir: " << kDataDir;
  EXPECT_EQ(LoadManifest("rfc5118").size(), 12u) << "data dir: " << kDataDir;
  EXPECT_EQ(LoadManifest("edge").size(), 8u) << "data dir: " << kDataDir;
}

class TortureTest : public ::testing::TestWithParam<TortureCase> {};

TEST_P(TortureTest, MatchesManifestVerdict) {
  const TortureCase& c = GetParam();
  SCOPED_TRACE(c.note);
  ParsedFile parsed(c.RelativePath());
  ASSERT_TRUE(parsed.loaded()) << "cannot read " << DataPath(c.RelativePath());
  const ParseResult& r = parsed.result();
  const SipMessage& m = parsed.message();
  // A datagram is never incomplete: it is all there is.
  EXPECT_NE(r.status, ParseStatus::kIncomplete);

  if (c.verdict == "valid") {
    ASSERT_EQ(r.status, ParseStatus::kComplete)
        << "defect " << DefectText(r.problem.defect) << " in '" << r.problem.header_name << "'";
    if (m.is_request()) {
      // Valid requests may still get an application-level answer (intmeth and esc02 are
      // unknown methods: 501), but never a 400.
      Problem p = ValidateRequest(m, kPolicy);
      EXPECT_NE(p.response_code, 400) << DefectText(p.defect) << " in '" << p.header_name << "'";
    } else {
      Problem p = ValidateResponse(m);
      EXPECT_FALSE(p) << DefectText(p.defect) << " in '" << p.header_name << "'";
    }
    return;
  }

  if (c.verdict == "invalid") {
    std::optional<int> expected = c.ExpectedCode();
    if (!r.ok()) {
      EXPECT_EQ(r.status, ParseStatus::kMalformed);
      EXPECT_TRUE(r.problem) << "a failed parse names its defect";
      EXPECT_EQ(r.problem.response_code, expected.value_or(0))
          << DefectText(r.problem.defect) << " in '" << r.problem.header_name << "'";
      return;
    }
    if (!expected) {
      // "-": a response that must be dropped silently.
      ASSERT_TRUE(m.is_response());
      Problem p = ValidateResponse(m);
      EXPECT_TRUE(p) << "an invalid response was accepted";
      EXPECT_EQ(p.response_code, 0);
      return;
    }
    ASSERT_TRUE(m.is_request()) << "parsed as a response but the manifest expects " << *expected;
    Problem p = ValidateRequest(m, kPolicy);
    EXPECT_TRUE(p) << "an invalid request was accepted by parser and validator";
    EXPECT_EQ(p.response_code, *expected)
        << DefectText(p.defect) << " in '" << p.header_name << "'";
    return;
  }

  if (c.verdict == "semantic") {
    std::optional<int> expected = c.ExpectedCode();
    std::string stem = c.Stem();
    // mcl01 (two Content-Lengths) and multi01 (repeated single-instance headers) are
    // byte-level well-formed, but a parser may refuse them because framing or identity is
    // undefined; the answer is 400 either way.
    bool parser_may_reject = stem == "mcl01" || stem == "multi01";
    if (parser_may_reject && !r.ok()) {
      EXPECT_EQ(r.status, ParseStatus::kMalformed);
      EXPECT_EQ(r.problem.response_code, 400) << DefectText(r.problem.defect);
      return;
    }
    ASSERT_EQ(r.status, ParseStatus::kComplete)
        << "defect " << DefectText(r.problem.defect) << " in '" << r.problem.header_name << "'";
    if (!expected) {
      // bcast: a response; parsing is all the codec owes it (dropping it is the transaction
      // layer's call, since the top Via is ours and fine).
      EXPECT_TRUE(m.is_response());
      return;
    }
    ASSERT_TRUE(m.is_request());
    std::string_view unsupported;
    Problem p = ValidateRequest(m, kPolicy, &unsupported);
    if (IsUasValidatorCode(*expected)) {
      EXPECT_TRUE(p) << "expected " << *expected;
      EXPECT_EQ(p.response_code, *expected)
          << DefectText(p.defect) << " in '" << p.header_name << "'";
      if (*expected == 420) {
        // bext01: the UAS lists the Require tags (not the Proxy-Require ones).
        EXPECT_THAT(std::string(unsupported), HasSubstr("nothingSupportsThis"));
        EXPECT_THAT(std::string(unsupported), Not(HasSubstr("noProxiesSupportThis")));
      }
    } else {
      // 401/405 (regaut01), 415 (invut), 406 (sdp01) and 200 (cparam01, cparam02,
      // regescrt) are decisions of a registrar or of the UAS application behind the
      // B2BUA, made on content the codec does not judge (authentication schemes, media
      // types, bindings). The validator only guards the protocol, so it lets these
      // requests through and the B2BUA forwards them to whoever makes that decision.
      EXPECT_FALSE(p) << "unexpected " << p.response_code << ": " << DefectText(p.defect) << " in '"
                      << p.header_name << "'";
    }
    return;
  }

  ADD_FAILURE() << "unknown verdict '" << c.verdict << "' for " << c.RelativePath();
}

INSTANTIATE_TEST_SUITE_P(Corpus, TortureTest, ::testing::ValuesIn(LoadAllManifests()), TestName);

// Key facts of individual valid messages.

class TortureFactsTest : public ::testing::Test {
 protected:
  // Parses tests/data/<relative_path> as one datagram and asserts it parsed completely.
  const SipMessage& Parse(const std::string& relative_path) {
    parsed_ = std::make_unique<ParsedFile>(relative_path);
    EXPECT_TRUE(parsed_->loaded()) << "cannot read " << relative_path;
    EXPECT_EQ(parsed_->result().status, ParseStatus::kComplete)
        << relative_path << ": " << DefectText(parsed_->result().problem.defect) << " in '"
        << parsed_->result().problem.header_name << "'";
    return parsed_->message();
  }
  const std::string& bytes() const { return parsed_->bytes(); }

 private:
  std::unique_ptr<ParsedFile> parsed_;
};

TEST_F(TortureFactsTest, Wsinv) {
  const SipMessage& m = Parse("rfc4475/wsinv.sip");
  ASSERT_TRUE(m.is_request());
  EXPECT_EQ(m.method(), Method::kInvite);
  EXPECT_EQ(m.request_uri().host, "chair-dnrc.example.com");
  EXPECT_EQ(m.max_forwards(), 68);
  ASSERT_TRUE(m.has_cseq());
  EXPECT_EQ(m.cseq().number, 9u);
  EXPECT_EQ(m.cseq().method, Method::kInvite);
  EXPECT_EQ(m.call_id(), "wsinv.ndaksdj@192.0.2.1");

  ASSERT_EQ(m.via_count(), 3u);
  EXPECT_EQ(m.vias()[0].protocol_name, "SIP");
  EXPECT_EQ(m.vias()[0].protocol_version, "2.0");
  EXPECT_EQ(m.vias()[0].transport, "UDP");
  EXPECT_EQ(m.vias()[0].host, "192.0.2.2");
  EXPECT_EQ(m.vias()[0].branch, "390skdjuw");
  EXPECT_EQ(m.vias()[1].branch, "z9hG4bK9ikj8");
  EXPECT_EQ(m.vias()[1].transport, "TCP");
  EXPECT_EQ(m.vias()[1].host, "spindle.example.com");
  EXPECT_EQ(m.vias()[2].transport, "UDP");
  EXPECT_EQ(m.vias()[2].host, "192.168.255.111");
  EXPECT_EQ(m.vias()[2].branch, "z9hG4bK30239");
  EXPECT_EQ(m.top_via(), &m.vias()[0]);

  ASSERT_EQ(m.contact_count(), 1u);
  EXPECT_EQ(m.contacts()[0].q_millis, 330);
  EXPECT_EQ(m.contacts()[0].defect, ContactDefect::kNone);
  EXPECT_EQ(m.contacts()[0].address.uri.user, "jdrosen");

  ASSERT_TRUE(m.has_to());
  EXPECT_EQ(m.to().tag, "1918181833n");
  EXPECT_EQ(m.to().uri.user, "vivekg");
  ASSERT_TRUE(m.has_from());
  EXPECT_THAT(std::string(m.from().display_name), HasSubstr("J Rosenberg"));
  EXPECT_TRUE(m.from().quoted_display_name);
  EXPECT_EQ(m.from().tag, "98asjd8");

  ASSERT_EQ(m.route_count(), 1u);
  EXPECT_TRUE(m.routes()[0].uri.lr);
  EXPECT_EQ(m.routes()[0].uri.host, "services.example.com");

  // Unknown headers are kept verbatim; "s :" is an empty Subject.
  const HeaderField* unusual = m.FindHeader("UnknownHeaderWithUnusualValue");
  ASSERT_NE(unusual, nullptr);
  EXPECT_EQ(unusual->id, HeaderId::kOther);
  EXPECT_EQ(unusual->value, ";;,,;;,;");
  const HeaderField* folded = m.FindHeader("NewFangledHeader");
  ASSERT_NE(folded, nullptr);
  EXPECT_EQ(folded->value, "newfangled value\r\n continued newfangled value");
  const HeaderField* subject = m.FindHeader(HeaderId::kSubject);
  ASSERT_NE(subject, nullptr);
  EXPECT_TRUE(subject->value.empty());

  EXPECT_EQ(m.content_type(), "application/sdp");
  EXPECT_EQ(m.content_length(), 150);
  EXPECT_EQ(m.body().size(), 150u);
}

TEST_F(TortureFactsTest, Esc01KeepsEscapes) {
  const SipMessage& m = Parse("rfc4475/esc01.sip");
  EXPECT_EQ(m.method(), Method::kInvite);
  EXPECT_EQ(m.request_uri().user, "sips%3Auser%40example.com");
  EXPECT_EQ(m.request_uri().host, "example.net");
  EXPECT_EQ(m.to().uri.user, "%75se%72");
  EXPECT_EQ(m.from().uri.user, "I%20have%20spaces");
  // esc01 has a single (folded) Contact header.
  ASSERT_EQ(m.contact_count(), 1u);
  EXPECT_EQ(m.contacts()[0].address.uri.user, "cal%6Cer");
  EXPECT_EQ(m.contacts()[0].address.uri.params, ";%6C%72;n%61me=v%61lue%25%34%31");
}

TEST_F(TortureFactsTest, EscnullHasTwoContacts) {
  const SipMessage& m = Parse("rfc4475/escnull.sip");
  EXPECT_EQ(m.method(), Method::kRegister);
  EXPECT_EQ(m.to().uri.user, "null-%00-null");
  ASSERT_EQ(m.contact_count(), 2u);
  EXPECT_EQ(m.contacts()[0].address.uri.user, "%00");
  EXPECT_EQ(m.contacts()[1].address.uri.user, "%00%00");
  EXPECT_EQ(m.content_length(), 0);
}

TEST_F(TortureFactsTest, Esc02IsAnUnknownMethod) {
  const SipMessage& m = Parse("rfc4475/esc02.sip");
  EXPECT_EQ(m.method(), Method::kUnknown);
  EXPECT_EQ(m.method_text(), "RE%47IST%45R");
  EXPECT_EQ(m.cseq().method, Method::kUnknown);
  EXPECT_EQ(m.cseq().method_text, "RE%47IST%45R");
  EXPECT_EQ(m.from().display_name, "%Z%45");
  // "C%6Fntact" is an unknown header, not a third Contact.
  ASSERT_EQ(m.contact_count(), 2u);
  EXPECT_EQ(m.contacts()[0].address.uri.user, "alias1");
  EXPECT_EQ(m.contacts()[1].address.uri.user, "alias3");
  const HeaderField* odd = m.FindHeader("C%6Fntact");
  ASSERT_NE(odd, nullptr);
  EXPECT_EQ(odd->id, HeaderId::kOther);
}

TEST_F(TortureFactsTest, SemiuriUserHoldsSemicolon) {
  const SipMessage& m = Parse("rfc4475/semiuri.sip");
  EXPECT_EQ(m.method(), Method::kOptions);
  EXPECT_EQ(m.request_uri().user, "user;par=u%40example.net");
  EXPECT_EQ(m.request_uri().host, "example.com");
  EXPECT_TRUE(m.request_uri().params.empty());
}

TEST_F(TortureFactsTest, TransportsKeepsExtensionTransport) {
  const SipMessage& m = Parse("rfc4475/transports.sip");
  ASSERT_EQ(m.via_count(), 5u);
  EXPECT_EQ(m.vias()[0].transport, "UDP");
  EXPECT_EQ(m.vias()[1].transport, "SCTP");
  EXPECT_EQ(m.vias()[2].transport, "TLS");
  EXPECT_EQ(m.vias()[3].transport, "UNKNOWN");
  EXPECT_EQ(m.vias()[4].transport, "TCP");
  EXPECT_EQ(m.vias()[3].host, "t4.example.com");
}

TEST_F(TortureFactsTest, Mpart01BodyFollowsContentLength) {
  const SipMessage& m = Parse("rfc4475/mpart01.sip");
  EXPECT_EQ(m.method(), Method::kMessage);
  EXPECT_EQ(m.content_length(), 553);
  EXPECT_EQ(static_cast<int64_t>(m.body().size()), m.content_length());
  EXPECT_EQ(m.body().substr(0, 18), "--7a9cbec02ceef655");
  EXPECT_TRUE(m.vias()[0].has_rport);
  EXPECT_EQ(m.vias()[0].rport, 0);
  EXPECT_EQ(m.vias()[0].port, 5070);
}

TEST_F(TortureFactsTest, DblreqIgnoresTrailingOctets) {
  const SipMessage& m = Parse("rfc4475/dblreq.sip");
  EXPECT_EQ(m.method(), Method::kRegister);
  EXPECT_EQ(m.content_length(), 0);
  EXPECT_TRUE(m.body().empty());
  EXPECT_THAT(std::string(m.raw()), Not(HasSubstr("INVITE")));
  EXPECT_EQ(bytes().size() - m.raw().size(), 450u);
  EXPECT_EQ(m.raw(), std::string_view(bytes()).substr(0, m.raw().size()));
}

TEST_F(TortureFactsTest, Inv2543BodyIsRestOfDatagram) {
  const SipMessage& m = Parse("rfc4475/inv2543.sip");
  EXPECT_EQ(m.method(), Method::kInvite);
  EXPECT_EQ(m.content_length(), -1);
  EXPECT_EQ(m.max_forwards(), -1);
  EXPECT_TRUE(m.from().tag.empty());
  ASSERT_EQ(m.via_count(), 1u);
  EXPECT_TRUE(m.vias()[0].branch.empty());
  size_t blank = bytes().find("\r\n\r\n");
  ASSERT_NE(blank, std::string::npos);
  std::string_view rest = std::string_view(bytes()).substr(blank + 4);
  EXPECT_FALSE(m.body().empty());
  EXPECT_EQ(m.body(), rest);
}

TEST_F(TortureFactsTest, NoreasonHasEmptyReason) {
  const SipMessage& m = Parse("rfc4475/noreason.sip");
  ASSERT_TRUE(m.is_response());
  EXPECT_EQ(m.status_code(), 100);
  EXPECT_TRUE(m.reason_phrase().empty());
}

TEST_F(TortureFactsTest, UnreasonKeepsUtf8Reason) {
  const SipMessage& m = Parse("rfc4475/unreason.sip");
  ASSERT_TRUE(m.is_response());
  EXPECT_EQ(m.status_code(), 200);
  size_t eol = bytes().find("\r\n");
  ASSERT_NE(eol, std::string::npos);
  constexpr std::string_view kPrefix = "SIP/2.0 200 ";
  EXPECT_EQ(m.reason_phrase(),
            std::string_view(bytes()).substr(kPrefix.size(), eol - kPrefix.size()));
  EXPECT_EQ(m.reason_phrase().substr(0, 13), "= 2**3 * 5**2");
  EXPECT_EQ(m.body().size(), 154u);
}

TEST_F(TortureFactsTest, PortAmbiguousHasNoPort) {
  const SipMessage& m = Parse("rfc5118/port-ambiguous.sip");
  EXPECT_EQ(m.request_uri().host, "2001:db8::10:5070");
  EXPECT_EQ(m.request_uri().port, 0);
  EXPECT_EQ(m.request_uri().host_kind, HostKind::kIpv6);
}

TEST_F(TortureFactsTest, PortUnambiguousHasPort) {
  const SipMessage& m = Parse("rfc5118/port-unambiguous.sip");
  EXPECT_EQ(m.request_uri().host, "2001:db8::10");
  EXPECT_EQ(m.request_uri().port, 5070);
  EXPECT_EQ(m.request_uri().host_kind, HostKind::kIpv6);
}

TEST_F(TortureFactsTest, ViaReceivedWithoutBrackets) {
  const SipMessage& m = Parse("rfc5118/via-received-param-no-delim.sip");
  ASSERT_EQ(m.via_count(), 1u);
  EXPECT_EQ(m.vias()[0].host, "2001:db8::9:1");
  EXPECT_EQ(m.vias()[0].host_kind, HostKind::kIpv6);
  EXPECT_EQ(m.vias()[0].received, "2001:db8::9:255");
  EXPECT_EQ(m.vias()[0].branch, "z9hG4bKas3");
}

TEST_F(TortureFactsTest, ViaReceivedWithBrackets) {
  const SipMessage& m = Parse("rfc5118/via-received-param-with-delim.sip");
  ASSERT_EQ(m.via_count(), 1u);
  EXPECT_EQ(m.vias()[0].received, "2001:db8::9:255");
  EXPECT_EQ(m.vias()[0].branch, "z9hG4bKas3-111");
}

TEST_F(TortureFactsTest, LongreqHas34Vias) {
  const SipMessage& m = Parse("rfc4475/longreq.sip");
  EXPECT_EQ(m.method(), Method::kInvite);
  ASSERT_EQ(m.via_count(), 34u);
  EXPECT_EQ(m.vias()[0].host, "sip33.example.com");
  EXPECT_EQ(m.vias()[32].host, "sip1.example.com");
  EXPECT_EQ(m.vias()[33].host, "host.example.com");
  EXPECT_EQ(m.vias()[33].received, "192.0.2.5");
  EXPECT_EQ(m.to().uri.port, 6000);
}

TEST_F(TortureFactsTest, Ipv6ThreeColonsIsTolerated) {
  const SipMessage& m = Parse("rfc5118/ipv6-bug-abnf-3-colons.sip");
  EXPECT_EQ(m.method(), Method::kOptions);
  EXPECT_EQ(m.request_uri().host_kind, HostKind::kIpv6);
}

}  // namespace
}  // namespace b2bua::proto
