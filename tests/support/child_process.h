#pragma once

// Starting a real server (dnsmasq, redis-server) beside a test: a child that dies with the
// test process, its output in a log file.

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

#include <csignal>
#include <string>
#include <vector>

namespace b2bua::test {

/// Starts `path` with `args` (args[0] included) as a child that is killed when the test
/// process dies (PR_SET_PDEATHSIG), stdout and stderr to `log_path` (/dev/null when empty).
/// Returns its pid, or -1 when fork failed.
inline pid_t SpawnChild(const char* path, std::vector<std::string> args,
                        const std::string& log_path = {}) {
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);  // the test died before the prctl
  const int out = log_path.empty() ? ::open("/dev/null", O_WRONLY)
                                   : ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (out >= 0) {
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    ::close(out);
  }
  ::execv(path, argv.data());
  ::_exit(127);
}

}  // namespace b2bua::test
