#include "death_test.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vmspace::test {

DeathResult run_in_child(const std::function<void()>& fn) {
  DeathResult r;
  int pipefd[2];
  if (pipe(pipefd) != 0) return r;
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) return r;
  if (pid == 0) {
    close(pipefd[0]);
    dup2(pipefd[1], STDERR_FILENO);
    dup2(pipefd[1], STDOUT_FILENO);
    alarm(60);
    fn();
    std::fflush(nullptr);
    _exit(0);
  }
  close(pipefd[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0)
    r.output.append(buf, static_cast<std::size_t>(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) {
    r.died = true;
    r.signal = WTERMSIG(status);
  }
  return r;
}

const std::string& death_tests_unavailable() {
  static const std::string reason = []() -> std::string {
    if (kUnderTsan)
      return "death tests fork, which ThreadSanitizer does not support in a threaded process";
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid < 0)
      return std::string("death tests fork, and fork() fails here: ") + std::strerror(errno);
    if (pid == 0) _exit(0);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return "death tests fork, and a forked child that exits at once was not reaped cleanly";
    }
    return {};
  }();
  return reason;
}

bool dies_with(const std::function<void()>& fn, const std::string& needle) {
  DeathResult r = run_in_child(fn);
  return r.died && r.signal == SIGABRT && r.output.find(needle) != std::string::npos;
}

}  // namespace vmspace::test
