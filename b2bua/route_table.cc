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

void RouteTable::Walk(int32_t root, std::string_view user, size_t begin, int32_t* best,
                      int* best_depth) const {
  int32_t node = root;
  int depth = 0;
  *best = nodes_[node].route;
  *best_depth = 0;
  for (size_t i = begin; i < user.size(); ++i) {
    char c = user[i];
    if (IsVisualSeparator(c)) continue;
    if (!proto::IsDigit(c)) break;
    node = nodes_[node].child[c - '0'];
    if (node < 0) break;
    ++depth;
    if (nodes_[node].route >= 0) {
      *best = nodes_[node].route;
      *best_depth = depth;
    }
  }
}

const Route* RouteTable::Match(std::string_view request_uri_user) const {
  if (routes_.empty()) return nullptr;
  const bool global = !request_uri_user.empty() && request_uri_user[0] == '+';
  const size_t begin = global ? 1 : 0;
  int32_t best = -1;
  int best_depth = -1;
  Walk(plain_root_, request_uri_user, begin, &best, &best_depth);
  if (global) {
    int32_t plus_best;
    int plus_depth;
    Walk(plus_root_, request_uri_user, begin, &plus_best, &plus_depth);
    // ">=": with as many digits matched, "+1555" says more than "1555".
    if (plus_best >= 0 && plus_depth >= best_depth) best = plus_best;
  }
  return best >= 0 ? &routes_[best] : nullptr;
}

}  // namespace b2bua
