#include "b2bua/header_policy.h"

#include <iterator>
#include <utility>

#include "absl/hash/hash.h"
#include "proto/sip_chars.h"
#include "proto/sip_message.h"

namespace b2bua {


namespace {
constexpr std::string_view kDefaultPass[] = {
    "P-Asserted-Identity", "P-Preferred-Identity", "Privacy",      "Allow",
    "Supported",           "Require",              "Accept",       "Content-Type",
    "Content-Disposition", "Session-Expires",      "Min-SE",       "User-Agent",
    "Subject",             "Organization",         "Date",         "Reason",
    "Alert-Info",          "Call-Info",            "Priority",     "Identity"};
}  // namespace

const std::vector<std::string>& HeaderPolicy::DefaultPass() {
  // Never destroyed, so shards may still read it while the process exits.
  static const std::vector<std::string>* const kPass =
      new std::vector<std::string>(std::begin(kDefaultPass), std::end(kDefaultPass));
  return *kPass;
}

HeaderPolicy::HeaderPolicy() : HeaderPolicy(DefaultPass(), {}, false) {}

HeaderPolicy::HeaderPolicy(std::vector<std::string> pass, std::vector<std::string> strip,
                           bool pass_unknown)
    : pass_(std::move(pass)), strip_(std::move(strip)), pass_unknown_(pass_unknown) {
  Index();
}

namespace {
// Compact names ("k") stand for their long names ("Supported") in both the lists and the
// lookups, so one entry covers both spellings.
std::string_view LongHeaderName(std::string_view name) {
  if (name.size() != 1) return name;
  std::string_view long_name = proto::HeaderName(proto::LookupHeaderId(name));
  return long_name.empty() ? name : long_name;
}
}  // namespace

void HeaderPolicy::Index() {
  pass_index_.clear();
  strip_index_.clear();
  for (const std::string& name : pass_) pass_index_.emplace(LongHeaderName(name));
  for (const std::string& name : strip_) strip_index_.emplace(LongHeaderName(name));
}

size_t HeaderPolicy::CaseInsensitiveHash::operator()(std::string_view s) const {
  // FNV-1a over the lower-cased bytes; header names are short, so this beats lowering a copy.
  uint64_t h = 14695981039346656037ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(proto::ToLowerAscii(c));
    h *= 1099511628211ull;
  }
  // The table probes with the low bits, which a multiply leaves poorly mixed.
  return static_cast<size_t>(h ^ (h >> 32));
}

bool HeaderPolicy::CaseInsensitiveEq::operator()(std::string_view a, std::string_view b) const {
  return proto::EqualsIgnoreCase(a, b);
}

bool HeaderPolicy::IsPassed(std::string_view name) const {
  std::string_view key = LongHeaderName(name);
  if (strip_index_.contains(key)) return false;
  if (pass_index_.contains(key)) return true;
  return pass_unknown_;
}

}  // namespace b2bua
