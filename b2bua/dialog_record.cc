#include "b2bua/dialog_record.h"

#include <charconv>
#include <utility>

#include "proto/str_util.h"

namespace b2bua {
namespace {

// Bumped when the layout changes: an instance never misreads another version's record.
constexpr std::string_view kVersion = "b2bua-dialog-1";
// Far above any real dialog; a record past it is not one of ours.
constexpr size_t kMaxField = 64 * 1024;
constexpr size_t kMaxRoutes = 64;

// Appends in place: one allocation per record (Reserve), none per field.
class Writer {
 public:
  void Reserve(size_t bytes) { out_.reserve(bytes); }
  void Field(std::string_view value) {
    AppendNumber(value.size());
    out_ += ':';
    out_.append(value);
  }
  void Number(uint64_t value) { Integer(value); }
  void Signed(int64_t value) { Integer(value); }
  std::string Take() { return std::move(out_); }

 private:
  template <typename T>
  void Integer(T value) {
    char digits[24];
    const auto [end, error] = std::to_chars(digits, digits + sizeof(digits), value);
    const size_t length = static_cast<size_t>(end - digits);
    AppendNumber(length);
    out_ += ':';
    out_.append(digits, length);
  }
  void AppendNumber(size_t value) {
    char digits[24];
    const auto [end, error] = std::to_chars(digits, digits + sizeof(digits), value);
    out_.append(digits, static_cast<size_t>(end - digits));
  }
  std::string out_;
};

size_t LegBytes(const Dialog& leg) {
  size_t bytes = leg.call_id.size() + leg.local_party.size() + leg.remote_party.size() +
                 leg.remote_target.size() + 160;
  for (const std::string& route : leg.route_set) bytes += route.size() + 8;
  return bytes;
}

class Reader {
 public:
  explicit Reader(std::string_view bytes) : rest_(bytes) {}

  bool Field(std::string_view* out) {
    size_t colon = rest_.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon > 6) return false;
    size_t length = 0;
    auto [end, error] = std::from_chars(rest_.data(), rest_.data() + colon, length);
    if (error != std::errc() || end != rest_.data() + colon || length > kMaxField ||
        length > rest_.size() - colon - 1)
      return false;
    *out = rest_.substr(colon + 1, length);
    rest_.remove_prefix(colon + 1 + length);
    return true;
  }
  bool String(std::string* out) {
    std::string_view value;
    if (!Field(&value)) return false;
    out->assign(value);
    return true;
  }
  template <typename T>
  bool Number(T* out) {
    std::string_view value;
    if (!Field(&value) || value.empty()) return false;
    auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), *out);
    return error == std::errc() && end == value.data() + value.size();
  }
  bool done() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

void WriteLeg(Writer& w, const Dialog& leg) {
  w.Field(leg.call_id);
  w.Field(leg.local_party);
  w.Field(leg.remote_party);
  w.Field(leg.remote_target);
  w.Number(leg.route_set.size());
  for (const std::string& route : leg.route_set) w.Field(route);
  w.Number(leg.local_cseq);
  w.Number(leg.remote_cseq);
  w.Field(leg.peer.address.IpString());
  w.Number(leg.peer.address.port());
  w.Field(proto::TransportName(leg.peer.transport));
}

bool ReadLeg(Reader& r, Dialog* leg) {
  size_t routes = 0;
  if (!r.String(&leg->call_id) || !r.String(&leg->local_party) ||
      !r.String(&leg->remote_party) || !r.String(&leg->remote_target) || !r.Number(&routes) ||
      routes > kMaxRoutes)
    return false;
  leg->route_set.resize(routes);
  for (std::string& route : leg->route_set)
    if (!r.String(&route)) return false;
  std::string_view ip, transport;
  uint16_t port = 0;
  if (!r.Number(&leg->local_cseq) || !r.Number(&leg->remote_cseq) || !r.Field(&ip) ||
      !r.Number(&port) || !r.Field(&transport))
    return false;
  if (!proto::NetAddress::ParseIp(ip, port, &leg->peer.address)) return false;
  if (transport == "UDP") {
    leg->peer.transport = proto::TransportKind::kUdp;
  } else if (transport == "TCP") {
    leg->peer.transport = proto::TransportKind::kTcp;
  } else if (transport == "TLS") {
    leg->peer.transport = proto::TransportKind::kTls;
  } else {
    return false;
  }
  leg->peer.connection_id = 0;
  return true;
}

bool IsKeyChar(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.'; }

}  // namespace

std::string EncodeDialogRecord(const DialogRecord& record) {
  Writer w;
  w.Reserve(kVersion.size() + record.key.size() + record.owner.size() + LegBytes(record.caller) +
            LegBytes(record.callee) + 96);
  w.Field(kVersion);
  w.Field(record.key);
  w.Field(record.owner);
  WriteLeg(w, record.caller);
  WriteLeg(w, record.callee);
  w.Number(record.caller_invite_cseq);
  w.Number(record.callee_invite_cseq);
  w.Signed(record.ends_at_unix_ms);
  w.Signed(record.started_at_unix_ms);
  return w.Take();
}

std::optional<DialogRecord> DecodeDialogRecord(std::string_view bytes) {
  Reader r(bytes);
  std::string_view version;
  DialogRecord record;
  if (!r.Field(&version) || version != kVersion || !r.String(&record.key) ||
      !r.String(&record.owner) || !ReadLeg(r, &record.caller) || !ReadLeg(r, &record.callee) ||
      !r.Number(&record.caller_invite_cseq) || !r.Number(&record.callee_invite_cseq) ||
      !r.Number(&record.ends_at_unix_ms) || !r.Number(&record.started_at_unix_ms) || !r.done())
    return std::nullopt;
  return record;
}

std::string DialogKey(std::string_view instance_id, uint64_t boot_epoch, uint32_t shard,
                      uint64_t call) {
  return proto::StrCat(instance_id, ".", proto::Hex{boot_epoch}, ".", shard, ".",
                       proto::Hex{call});
}

std::string_view KeyFromRoutingToken(std::string_view user) {
  if (!user.starts_with(kRoutingTokenPrefix)) return {};
  std::string_view key = user.substr(kRoutingTokenPrefix.size());
  if (key.empty() || key.size() > 128) return {};
  for (char c : key)
    if (!IsKeyChar(c)) return {};
  return OwnerOfKey(key).empty() ? std::string_view() : key;
}

std::string_view OwnerOfKey(std::string_view key) {
  const size_t dot = key.find('.');
  if (dot == 0 || dot == std::string_view::npos) return {};
  return key.substr(0, dot);
}

}  // namespace b2bua
