// The route-shaped parts of the config: routes, next hops, redirect Contacts, and the
// redirect settings (global and per route) with their allow and deny lists.

#include "b2bua/config_loader.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "proto/sip_parser.h"

namespace b2bua::config_loader {

absl::Status Loader::ReadDomains(const YAML::Node& node, std::string_view path,
                                 std::vector<std::string>* out) const {
  std::vector<std::string> texts;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadStringList(node, path, &texts));
  out->clear();
  for (size_t i = 0; i < texts.size(); ++i) {
    absl::StatusOr<std::string> domain = CheckDomain(texts[i]);
    if (!domain.ok())
      return Error(node[i], ItemPath(path, i), std::string(domain.status().message()));
    out->push_back(*std::move(domain));
  }
  return absl::OkStatus();
}

// Like ReadRedirect(), these overwrite only the keys present.
absl::Status Loader::ReadCache301(const YAML::Node& node, std::string_view path,
                                  RedirectCacheSettings* inout) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(node, path, {"entries", "ttl"}, &f));
  if (auto* n = f.Find("entries"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, KeyPath(path, "entries"), 0, 10000000, &inout->entries));
  if (auto* n = f.Find("ttl"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadDuration(*n, KeyPath(path, "ttl"), 1s, 720h, &inout->ttl));
  return absl::OkStatus();
}

absl::Status Loader::ReadAllow(const YAML::Node& node, std::string_view path,
                               RedirectAllowList* inout) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(node, path, {"domains", "cidrs", "schemes"}, &f));
  if (auto* n = f.Find("domains"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadDomains(*n, KeyPath(path, "domains"), &inout->domains));
  if (auto* n = f.Find("cidrs"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadCidrList(*n, KeyPath(path, "cidrs"), &inout->cidrs));
  if (auto* n = f.Find("schemes")) {
    std::string schemes_path = KeyPath(path, "schemes");
    std::vector<YAML::Node> items;
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadList(*n, schemes_path, &items));
    std::vector<std::string> schemes;
    for (size_t i = 0; i < items.size(); ++i) {
      std::string scheme;
      B2BUA_CONFIG_RETURN_IF_ERROR(
          ReadEnum<std::string>(items[i], ItemPath(schemes_path, i),
                                {{"sip", "sip"}, {"sips", "sips"}, {"tel", "tel"}}, &scheme));
      if (std::find(schemes.begin(), schemes.end(), scheme) == schemes.end())
        schemes.push_back(std::move(scheme));
    }
    // An empty list would refuse every target: that is mode: relay, said obscurely.
    if (schemes.empty())
      return Error(*n, schemes_path, "allows no scheme; use mode: relay to stop following");
    inout->schemes = std::move(schemes);
  }
  return absl::OkStatus();
}

absl::Status Loader::ReadDeny(const YAML::Node& node, std::string_view path,
                              RedirectDenyList* inout) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(node, path, {"domains", "cidrs"}, &f));
  if (auto* n = f.Find("domains"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadDomains(*n, KeyPath(path, "domains"), &inout->domains));
  if (auto* n = f.Find("cidrs"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadCidrList(*n, KeyPath(path, "cidrs"), &inout->cidrs));
  return absl::OkStatus();
}

// Only the keys present overwrite `*inout`, which is how a route's override merges over
// the global settings.
absl::Status Loader::ReadRedirect(const YAML::Node& node, std::string_view path,
                                  RedirectSettings* inout) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(
      ReadMap(node, path,
              {"mode", "send_181", "max_depth", "max_targets", "target_timeout", "to_uri",
               "try_next_on", "history_info", "diversion", "relay_last_3xx", "fork", "max_parallel",
               "early_media", "cache_301", "allow", "deny", "deny_self"},
              &f));
  RedirectSettings& r = *inout;
  for (const Fields::Entry& e : f.entries) {
    std::string key_path = KeyPath(path, e.key);
    const YAML::Node& n = e.value;
    absl::Status s;
    if (e.key == "mode") {
      s = ReadEnum<RedirectMode>(
          n, key_path, {{"follow", RedirectMode::kFollow}, {"relay", RedirectMode::kRelay}},
          &r.mode);
    } else if (e.key == "send_181") {
      s = ReadBool(n, key_path, &r.send_181);
    } else if (e.key == "max_depth") {
      s = ReadInt(n, key_path, 0, 20, &r.max_depth);
    } else if (e.key == "max_targets") {
      s = ReadInt(n, key_path, 1, 64, &r.max_targets);
    } else if (e.key == "target_timeout") {
      s = ReadDuration(n, key_path, 100ms, 1h, &r.target_timeout);
    } else if (e.key == "to_uri") {
      s = ReadEnum<RedirectToUri>(
          n, key_path, {{"keep", RedirectToUri::kKeep}, {"replace", RedirectToUri::kReplace}},
          &r.to_uri);
    } else if (e.key == "try_next_on") {
      s = ReadStatusSet(n, key_path, &r.try_next_on);
    } else if (e.key == "history_info") {
      s = ReadBool(n, key_path, &r.history_info);
    } else if (e.key == "diversion") {
      s = ReadBool(n, key_path, &r.diversion);
    } else if (e.key == "relay_last_3xx") {
      s = ReadBool(n, key_path, &r.relay_last_3xx);
    } else if (e.key == "fork") {
      s = ReadEnum<RedirectFork>(
          n, key_path,
          {{"serial", RedirectFork::kSerial}, {"parallel_equal_q", RedirectFork::kParallelEqualQ}},
          &r.fork);
    } else if (e.key == "max_parallel") {
      s = ReadInt(n, key_path, 1, 64, &r.max_parallel);
    } else if (e.key == "early_media") {
      s = ReadEnum<EarlyMedia>(n, key_path,
                               {{"first", EarlyMedia::kFirst}, {"none", EarlyMedia::kNone}},
                               &r.early_media);
    } else if (e.key == "deny_self") {
      s = ReadBool(n, key_path, &r.deny_self);
    } else if (e.key == "cache_301") {
      s = ReadCache301(n, key_path, &r.cache_301);
    } else if (e.key == "allow") {
      s = ReadAllow(n, key_path, &r.allow);
    } else if (e.key == "deny") {
      s = ReadDeny(n, key_path, &r.deny);
    }
    B2BUA_CONFIG_RETURN_IF_ERROR(s);
  }
  return absl::OkStatus();
}

absl::Status Loader::ReadNextHop(const YAML::Node& node, std::string_view path,
                                 NextHop* out) const {
  std::string text;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(node, path, "a SIP URI", &text));
  proto::SipUri uri;
  proto::UriError error = proto::ParseUri(text, &uri);
  if (error != proto::UriError::kNone) {
    return Error(node, path, StrCat("'", text, "' is not a valid SIP URI (", UriProblem(error), ")"));
  }
  if (uri.scheme != proto::UriScheme::kSip && uri.scheme != proto::UriScheme::kSips) {
    return Error(node, path, StrCat("'", text, "' is not a sip: or sips: URI"));
  }
  if (uri.has_user) {
    return Error(node, path, StrCat("'", text, "': a next hop names a host; remove the user part"));
  }
  if (!uri.headers.empty()) {
    return Error(node, path, StrCat("'", text, "': a next hop cannot carry headers ('?')"));
  }
  if (!uri.maddr.empty()) {
    return Error(node, path, StrCat("'", text, "': maddr is not supported"));
  }
  // sips: demands TLS on every hop (RFC 3261 26.2.2).
  const bool sips = uri.scheme == proto::UriScheme::kSips;
  out->transport = sips ? proto::TransportKind::kTls : proto::TransportKind::kUdp;
  if (!uri.transport.empty()) {
    if (proto::EqualsIgnoreCase(uri.transport, "tls")) {
      out->transport = proto::TransportKind::kTls;
    } else if (sips && !proto::EqualsIgnoreCase(uri.transport, "tcp")) {
      return Error(node, path, StrCat("'", text, "': a sips: next hop goes over TLS"));
    } else if (proto::EqualsIgnoreCase(uri.transport, "udp")) {
      out->transport = proto::TransportKind::kUdp;
    } else if (proto::EqualsIgnoreCase(uri.transport, "tcp")) {
      if (!sips) out->transport = proto::TransportKind::kTcp;
    } else {
      return Error(node, path,
                   StrCat("'", text, "': transport '", uri.transport,
                          "' is not supported (udp, tcp or tls)"));
    }
  }
  out->host = std::string(uri.host);
  const bool tls = out->transport == proto::TransportKind::kTls;
  if (tls && !tls_configured_) {
    return Error(node, path,
                 StrCat("'", text, "' goes over TLS: configure the tls: section (listen, ",
                        "certificate, private_key, ca)"));
  }
  out->port = uri.port != 0 ? uri.port : (tls ? 5061 : 5060);
  out->uri = std::move(text);
  return absl::OkStatus();
}

// A Contact value is checked by the same parser that will read it back when the 3xx is
// built, so whatever passes here is what callers will receive.
absl::Status Loader::ReadContact(const YAML::Node& node, std::string_view path,
                                 std::string* out) const {
  std::string text;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(node, path, "a Contact value", &text));
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return Error(node, path, "a Contact value cannot hold control characters or line breaks");
    }
  }
  std::string message = StrCat("SIP/2.0 302 Moved Temporarily\r\nContact: ", text, "\r\n\r\n");
  if (!scratch_message_) scratch_message_ = std::make_unique<proto::SipMessage>();
  proto::SipMessage& m = *scratch_message_;
  proto::ParseResult result = proto::SipParser().Parse(message, proto::Framing::kDatagram, &m);
  if (!result.ok()) {
    return Error(node, path, StrCat("'", text, "' is not a valid Contact value"));
  }
  if (m.contact_star()) return Error(node, path, "'*' is not a redirect target");
  if (m.contact_count() != 1) {
    return Error(node, path,
                 StrCat("'", text, "' holds ", m.contact_count(),
                     " Contact values; give each its own list item"));
  }
  const proto::Contact& contact = m.contacts()[0];
  if (contact.defect == proto::ContactDefect::kBadQValue) {
    return Error(node, path, StrCat("'", text, "' has a bad q-value (0 to 1, 3 decimals)"));
  }
  if (contact.defect == proto::ContactDefect::kBadExpires) {
    return Error(node, path, StrCat("'", text, "' has a bad expires parameter"));
  }
  proto::UriScheme scheme = contact.address.uri.scheme;
  if (scheme != proto::UriScheme::kSip && scheme != proto::UriScheme::kSips &&
      scheme != proto::UriScheme::kTel) {
    return Error(node, path, StrCat("'", text, "' is not a sip:, sips: or tel: URI"));
  }
  *out = std::move(text);
  return absl::OkStatus();
}

absl::Status Loader::ReadRoute(const YAML::Node& node, std::string_view path,
                               const RedirectSettings& global, Route* out) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(
      node, path,
      {"prefix", "next_hops", "action", "redirect_code", "contacts", "redirect", "callers",
       "max_calls", "calls_per_second", "overflow_to"},
      &f));
  if (!node.IsMap()) return Error(node, path, "expected a mapping (prefix:, next_hops:, ...)");
  out->line = Line(node);
  out->redirect = global;
  if (auto* n = f.Find("prefix"); n && !n->IsNull()) {
    std::string prefix_path = KeyPath(path, "prefix");
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(*n, prefix_path, "digits", &out->prefix));
    std::string_view digits = out->prefix;
    if (!digits.empty() && digits[0] == '+') digits.remove_prefix(1);
    bool ok = std::all_of(digits.begin(), digits.end(), proto::IsDigit);
    if (ok && digits.size() > RouteTable::kMaxPrefixDigits) {
      return Error(*n, prefix_path,
                   StrCat("'", out->prefix, "' is longer than ", RouteTable::kMaxPrefixDigits,
                          " digits"));
    }
    if (!ok) {
      return Error(
          *n, prefix_path,
          StrCat("'", out->prefix, "' is not a prefix (digits with an optional leading '+')"));
    }
  }
  if (auto* n = f.Find("action")) {
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadEnum<Route::Action>(
        *n, KeyPath(path, "action"),
        {{"route", Route::Action::kRoute}, {"redirect", Route::Action::kRedirect}}, &out->action));
  }
  const bool redirecting = out->action == Route::Action::kRedirect;
  // Keys that belong to the other action are errors rather than ignored: a route that
  // lists contacts but forgot "action: redirect" would otherwise route silently.
  for (std::string_view key : {"redirect_code", "contacts"}) {
    if (auto* n = f.Find(key); n && !redirecting) {
      return Error(*n, KeyPath(path, key), "only applies to a route with action: redirect");
    }
  }
  for (std::string_view key : {"next_hops", "redirect"}) {
    if (auto* n = f.Find(key); n && redirecting) {
      return Error(*n, KeyPath(path, key), "does not apply to a route with action: redirect");
    }
  }
  if (auto* n = f.Find("redirect_code")) {
    std::string code_path = KeyPath(path, "redirect_code");
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadInt(*n, code_path, 100, 699, &out->redirect_code));
    if (out->redirect_code != 301 && out->redirect_code != 302) {
      return Error(*n, code_path, StrCat(out->redirect_code, " is not 301 or 302"));
    }
  }
  if (auto* n = f.Find("contacts")) {
    std::string contacts_path = KeyPath(path, "contacts");
    std::vector<YAML::Node> items;
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadList(*n, contacts_path, &items));
    if (items.size() > proto::SipMessage::kMaxContacts) {
      return Error(*n, contacts_path,
                   StrCat("at most ", proto::SipMessage::kMaxContacts, " contacts"));
    }
    for (size_t i = 0; i < items.size(); ++i) {
      std::string contact;
      B2BUA_CONFIG_RETURN_IF_ERROR(ReadContact(items[i], ItemPath(contacts_path, i), &contact));
      out->contacts.push_back(std::move(contact));
    }
  }
  if (auto* n = f.Find("next_hops")) {
    std::string hops_path = KeyPath(path, "next_hops");
    std::vector<YAML::Node> items;
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadList(*n, hops_path, &items));
    for (size_t i = 0; i < items.size(); ++i) {
      NextHop hop;
      B2BUA_CONFIG_RETURN_IF_ERROR(ReadNextHop(items[i], ItemPath(hops_path, i), &hop));
      out->next_hops.push_back(std::move(hop));
    }
  }
  if (auto* n = f.Find("redirect")) {
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadRedirect(*n, KeyPath(path, "redirect"), &out->redirect));
  }
  if (auto* n = f.Find("callers"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadCidrList(*n, KeyPath(path, "callers"), &out->callers));
  if (auto* n = f.Find("max_calls"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, KeyPath(path, "max_calls"), 0, 10000000, &out->max_calls));
  if (auto* n = f.Find("calls_per_second"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, KeyPath(path, "calls_per_second"), 0, 1000000, &out->calls_per_second));
  if (auto* n = f.Find("overflow_to")) {
    std::string prefix;
    // "overflow_to:" with nothing after it reads as null: the default route, as ''.
    if (!n->IsNull())
      B2BUA_CONFIG_RETURN_IF_ERROR(
          ReadScalar(*n, KeyPath(path, "overflow_to"), "a route prefix", &prefix));
    out->overflow_to = std::move(prefix);
  }
  if (redirecting && out->contacts.empty()) {
    return Error(f.Find("contacts") ? *f.Find("contacts") : node, path,
                 "action: redirect needs at least one entry in contacts");
  }
  if (!redirecting && out->next_hops.empty()) {
    return Error(f.Find("next_hops") ? *f.Find("next_hops") : node, path,
                 "needs at least one entry in next_hops (or action: redirect)");
  }
  return absl::OkStatus();
}

absl::Status Loader::ReadRoutes(const YAML::Node& node, const RedirectSettings& global,
                                std::vector<Route>* out) const {
  std::vector<YAML::Node> items;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadList(node, "routes", &items));
  absl::flat_hash_map<std::string, int> prefix_lines;
  for (size_t i = 0; i < items.size(); ++i) {
    std::string path = ItemPath("routes", i);
    Route route;
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadRoute(items[i], path, global, &route));
    auto [it, inserted] = prefix_lines.emplace(route.prefix, route.line);
    if (!inserted) {
      // Point at the prefix line when there is one; a default route may have none.
      YAML::Node where = items[i];
      std::string where_path = path;
      if (items[i].IsMap()) {
        for (auto kv = items[i].begin(); kv != items[i].end(); ++kv) {
          if (kv->first.Scalar() == "prefix") {
            // reset(), not '=': assigning a yaml-cpp Node overwrites the node it refers to.
            where.reset(kv->second);
            where_path = KeyPath(path, "prefix");
          }
        }
      }
      std::string shown = route.prefix.empty() ? "the default route (empty prefix)"
                                               : StrCat("prefix '", route.prefix, "'");
      return Error(where, where_path,
                   StrCat("duplicate ", shown, ": already used by the route on line ", it->second));
    }
    out->push_back(std::move(route));
  }
  // overflow_to names another route of this file.
  for (size_t i = 0; i < out->size(); ++i) {
    const Route& route = (*out)[i];
    if (!route.overflow_to) continue;
    const std::string path = KeyPath(ItemPath("routes", i), "overflow_to");
    const YAML::Node where = items[i]["overflow_to"];
    if (*route.overflow_to == route.prefix)
      return Error(where, path, "a route cannot overflow to itself");
    if (!prefix_lines.contains(*route.overflow_to))
      return Error(where, path, StrCat("no route has prefix '", *route.overflow_to, "'"));
  }
  return absl::OkStatus();
}

}  // namespace b2bua::config_loader
