#include "b2bua/route_table.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "proto/sip_chars.h"

namespace b2bua {
namespace {

// RFC 3966 5.1.1: visual separators in a telephone number carry no digits.
bool IsVisualSeparator(char c) { return c == '-' || c == '.' || c == '(' || c == ')'; }

}  // namespace


RouteTable::RouteTable(std::vector<Route> routes) : routes_(std::move(routes)) {
  overflow_.assign(routes_.size(), -1);
  for (size_t i = 0; i < routes_.size(); ++i) {
    if (!routes_[i].overflow_to) continue;
    for (size_t j = 0; j < routes_.size(); ++j)
      if (j != i && routes_[j].prefix == *routes_[i].overflow_to)
        overflow_[i] = static_cast<int32_t>(j);
  }
  plain_root_ = NewNode();
  plus_root_ = NewNode();
  for (size_t i = 0; i < routes_.size(); ++i) {
    std::string_view prefix = routes_[i].prefix;
    int32_t node = plain_root_;
    if (!prefix.empty() && prefix[0] == '+') {
      node = plus_root_;
      prefix.remove_prefix(1);
    }
    for (char c : prefix) {
      if (!proto::IsDigit(c)) break;  // ParseConfig() lets no such prefix through
      int digit = c - '0';
      if (nodes_[node].child[digit] < 0) {
        int32_t child = NewNode();  // may reallocate nodes_: index again below
        nodes_[node].child[digit] = child;
      }
      node = nodes_[node].child[digit];
    }
    if (nodes_[node].route < 0) nodes_[node].route = static_cast<int32_t>(i);
  }
}

const Route* RouteTable::OverflowOf(const Route& route) const {
  const size_t i = static_cast<size_t>(&route - routes_.data());
  if (i >= routes_.size() || overflow_[i] < 0) return nullptr;
  return &routes_[static_cast<size_t>(overflow_[i])];
}

void RouteTable::InheritLoad(const RouteTable& previous) {
  for (Route& route : routes_) {
    for (const Route& old : previous.routes_) {
      if (old.prefix == route.prefix) {
        route.load = old.load;
        break;
      }
    }
  }
}

int32_t RouteTable::NewNode() {
  Node node;
  std::fill(std::begin(node.child), std::end(node.child), -1);
  node.route = -1;
  nodes_.push_back(node);
  return static_cast<int32_t>(nodes_.size() - 1);
}

template <typename OnRoute>
void RouteTable::Walk(int32_t root, std::string_view user, size_t begin, OnRoute on_route) const {
  int32_t node = root;
  int depth = 0;
  if (nodes_[node].route >= 0) on_route(nodes_[node].route, 0);
  for (size_t i = begin; i < user.size(); ++i) {
    char c = user[i];
    if (IsVisualSeparator(c)) continue;
    if (!proto::IsDigit(c)) break;
    node = nodes_[node].child[c - '0'];
    if (node < 0) break;
    ++depth;
    if (nodes_[node].route >= 0) on_route(nodes_[node].route, depth);
  }
}

const Route* RouteTable::Match(std::string_view request_uri_user) const {
  const Route* best = nullptr;
  MatchChain(request_uri_user, &best, 1);
  return best;
}

size_t RouteTable::MatchChain(std::string_view request_uri_user, const Route** out,
                              size_t capacity) const {
  if (routes_.empty() || capacity == 0) return 0;
  const bool global = !request_uri_user.empty() && request_uri_user[0] == '+';
  const size_t begin = global ? 1 : 0;
  // Routes met on the way down, by digits matched; a prefix has at most one per depth in
  // each tree. Sorted best first: deeper wins, and at equal depth "+1555" says more than
  // "1555".
  struct Met {
    int32_t route;
    int depth;
    bool plus;
  };
  Met met[2 * kMaxPrefixDigits + 2];
  size_t count = 0;
  auto collect = [&](bool plus) {
    return [&, plus](int32_t route, int depth) {
      if (count < std::size(met)) met[count++] = Met{route, depth, plus};
    };
  };
  Walk(plain_root_, request_uri_user, begin, collect(false));
  if (global) Walk(plus_root_, request_uri_user, begin, collect(true));
  std::sort(met, met + count, [](const Met& a, const Met& b) {
    return a.depth != b.depth ? a.depth > b.depth : a.plus > b.plus;
  });
  const size_t n = std::min(count, capacity);
  for (size_t i = 0; i < n; ++i) out[i] = &routes_[met[i].route];
  return n;
}

}  // namespace b2bua
