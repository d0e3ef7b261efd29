#pragma once

#include <string>
#include <string_view>

#include "proto/sip_uri.h"

namespace b2bua::proto {

/// URI equivalence (RFC 3261 19.1.4) and a canonical key that agrees with it, for the memory of
/// tried redirect targets. Both functions are pure: safe from any thread, never throw.
///
/// Rules applied by SipUriEquivalent, for sip: and sips: URIs:
///  - the schemes are equal: a sip: URI never equals a sips: URI;
///  - userinfo (user and password) is compared case-sensitively, the host case-insensitively;
///    an IP address never equals a host name, and IP literals compare by value, so
///    "[2001:db8::9:1]" equals "[2001:db8::9:01]" (RFC 5118 4.3) and "192.0.2.01" equals
///    "192.0.2.1";
///  - a %HH escape equals the character it encodes, unless that character is reserved
///    (";/?:@&=+$,") or '%', which only equals the same escape (hex digits in any case);
///  - an absent port differs from every explicit port, 5060 included;
///  - the uri-parameters transport, user, ttl, method and maddr must be present in both URIs
///    with equal values (names and values case-insensitive) or absent from both; any other
///    parameter is compared only when both URIs carry it; when a name repeats, its first
///    occurrence counts;
///  - the header components must be equal as multisets, order ignored: names case-insensitive
///    with compact forms resolved ("s" is "Subject"), values case-sensitive after unescaping.
///    That is finer than the per-header rules of RFC 3261 section 20 (which could, e.g., fold
///    the case of a token value): two URIs that a header-aware comparison would call equal may
///    compare unequal here, never the reverse.
/// tel: URIs follow RFC 3966 section 4: visual separators ("-", ".", "(", ")") are ignored,
/// the number and every parameter compare case-insensitively, parameter order is ignored,
/// and a parameter present in only one URI makes them differ.
/// Any other scheme compares its name case-insensitively and the rest byte for byte.
bool SipUriEquivalent(const SipUri& a, const SipUri& b);

/// A canonical string for `uri`, used as a hash key: SipUriEquivalent(a, b) implies
/// NormalizeSipUri(a) == NormalizeSipUri(b). Allocates the returned string.
///
/// The key holds the lower-case scheme, the userinfo with escapes canonicalised, the host in
/// canonical form (lower case, IPv4 in plain dotted decimal, IPv6 in RFC 5952 text within
/// brackets), the port when present, the significant parameters (transport, user, ttl,
/// method, maddr; first occurrence, lower case, sorted by name) and the sorted header
/// components. For tel: URIs every parameter is in the key, for other schemes the whole text.
///
/// Where the key and SipUriEquivalent differ:
///  - The key is never finer: equivalent URIs always produce the same key.
///  - The key is coarser in one way only: parameters outside the significant five are left out,
///    so URIs that carry the same such parameter with different values
///    ("sip:a@x;gr=urn:uuid:1" and "sip:a@x;gr=urn:uuid:2", two GRUUs of one AOR) share a key
///    although they are not equivalent. Key equality is an equivalence relation while
///    SipUriEquivalent is not transitive (";gr=1" ~ no gr ~ ";gr=2"), so no key could be exact.
///    A tried-target memory therefore looks the key up and confirms with SipUriEquivalent.
/// The key is for comparison only; it is not a URI to send (decoded characters such as a space
/// appear raw).
std::string NormalizeSipUri(const SipUri& uri);

/// The canonical form of a host as used in NormalizeSipUri, without brackets: lower case for
/// names, dotted decimal for IPv4, RFC 5952 text for IPv6. Accepts "[::1]" or "::1". A host
/// that ClassifyHost() rejects comes back lower-cased. Safe from any thread.
std::string NormalizeSipHost(std::string_view host);

}  // namespace b2bua::proto
