// Messages per second through the shards' whole receive path over loopback UDP:
// recvmmsg, parse, validate, Call-ID ownership (and the cross-shard ring when another
// shard owns it), transaction creation, the core's answer, sendmmsg. The request is an
// out-of-dialog OPTIONS, which the B2BUA answers itself, so no peer is needed.
//
// Reported counters: `msgs_per_s` (requests answered per wall second) and
// `server_cpu_ns_per_msg`, the process CPU time minus the client thread's, per request.

#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "b2bua/config.h"
#include "b2bua/shard.h"
#include "benchmark/benchmark.h"

namespace b2bua {
namespace {

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

double ThreadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

/** Measure OPTIONS answered per second by 1 or 2 shards, with the server CPU per message. */
void BM_ShardOptionsRoundTrip(benchmark::State& state) {
  auto config = DefaultConfig();
  ShardGroupOptions options;
  options.shards = static_cast<uint32_t>(state.range(0));
  proto::NetAddress::ParseIpPort("127.0.0.1:0", &options.listen);
  ShardGroup group(options);
  if (!config.ok() || !group.Start(*config).ok()) {
    state.SkipWithError("cannot start the shard group");
    return;
  }
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local));
  int buffer = 8 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof(buffer));
  socklen_t length = sizeof(local);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length);
  const std::string port = std::to_string(ntohs(local.sin_port));
  sockaddr_storage server;
  socklen_t server_length = group.local_address().ToSockaddr(&server);

  // A window of requests in flight keeps both sides busy without overrunning buffers.
  constexpr int kWindow = 64;
  uint64_t sent = 0, answered = 0;
  char reply[65536];
  const double cpu_before = ProcessCpuSeconds();
  const double client_before = ThreadCpuSeconds();
  for (auto _ : state) {
    while (sent - answered < kWindow) {
      std::string request =
          "OPTIONS sip:b2bua@127.0.0.1 SIP/2.0\r\n"
          "Via: SIP/2.0/UDP 127.0.0.1:" + port + ";branch=z9hG4bK-bench-" +
          std::to_string(sent) + ";rport\r\n"
          "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=b" + std::to_string(sent) +
          "\r\nTo: <sip:b2bua@127.0.0.1>\r\nCall-ID: bench-" + std::to_string(sent) +
          "@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
      ::sendto(fd, request.data(), request.size(), 0, reinterpret_cast<sockaddr*>(&server),
               server_length);
      ++sent;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) {
      state.SkipWithError("no answer within 1 s");
      break;
    }
    while (::recv(fd, reply, sizeof(reply), MSG_DONTWAIT) > 0) ++answered;
  }
  const double server_cpu =
      (ProcessCpuSeconds() - cpu_before) - (ThreadCpuSeconds() - client_before);
  state.counters["msgs_per_s"] =
      benchmark::Counter(static_cast<double>(answered), benchmark::Counter::kIsRate);
  state.counters["server_cpu_ns_per_msg"] =
      answered ? server_cpu * 1e9 / static_cast<double>(answered) : 0;
  ::close(fd);
  group.Stop();
}
BENCHMARK(BM_ShardOptionsRoundTrip)->Arg(1)->Arg(2)->UseRealTime()->MinTime(3.0);

}  // namespace
}  // namespace b2bua
