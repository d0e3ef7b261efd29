#include "proto/socket_util.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace b2bua::proto {

absl::StatusOr<int> OpenReusePortSocket(int type, const NetAddress& listen, NetAddress* bound) {
  const char* kind = type == SOCK_STREAM ? "tcp" : "udp";
  int fd = ::socket(listen.is_v6() ? AF_INET6 : AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat(kind, " socket: ", std::strerror(errno)));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    int error = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("SO_REUSEPORT: ", std::strerror(error)));
  }
  if (listen.is_v6()) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  sockaddr_storage address;
  socklen_t length = listen.ToSockaddr(&address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) {
    int error = errno;
    ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("bind ", kind, " ", listen.ToString(), ": ", std::strerror(error)));
  }
  length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  *bound = NetAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&address), length);
  return fd;
}

}  // namespace b2bua::proto
