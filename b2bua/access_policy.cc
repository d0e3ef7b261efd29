#include "b2bua/access_policy.h"

#include <iterator>
#include <utility>

#include "proto/sip_chars.h"

namespace b2bua {
namespace {

// The User-Agent strings of sipvicious (svmap, svwar, svcrack), sipcli, sip-scan, SIPVicious
// forks, VaxSIPUserAgent, iWar, sundayddr, smap, SIVuS and the "Test Agent"/pplsip tools.
constexpr std::string_view kDefaultScanners[] = {
    "friendly-scanner", "sipvicious", "sipcli", "sip-scan",   "VaxSIPUserAgent", "iWar",
    "sundayddr",        "smap",       "SIVuS",  "Test Agent", "pplsip"};

std::string Lowered(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = proto::ToLowerAscii(c);
  return out;
}

}  // namespace

const std::vector<std::string>& ScannerList::Defaults() {
  // Never destroyed, so shards may still read it while the process exits.
  static const std::vector<std::string>* const kList =
      new std::vector<std::string>(std::begin(kDefaultScanners), std::end(kDefaultScanners));
  return *kList;
}

ScannerList::ScannerList() : ScannerList(Defaults()) {}

ScannerList::ScannerList(std::vector<std::string> patterns) : patterns_(std::move(patterns)) {
  for (const std::string& p : patterns_)
    if (!p.empty()) lowered_.push_back(Lowered(p));
}

bool ScannerList::Matches(std::string_view user_agent, std::string* scratch) const {
  if (lowered_.empty() || user_agent.empty()) return false;
  scratch->assign(user_agent);
  for (char& c : *scratch) c = proto::ToLowerAscii(c);
  const std::string_view haystack = *scratch;
  for (const std::string& needle : lowered_)
    if (haystack.find(needle) != std::string_view::npos) return true;
  return false;
}

proto::CidrList AccessConfig::LoopbackOnly() {
  proto::Cidr v4, v6;
  proto::Cidr::Parse("127.0.0.0/8", &v4);
  proto::Cidr::Parse("::1/128", &v6);
  return proto::CidrList({v4, v6});
}

}  // namespace b2bua
