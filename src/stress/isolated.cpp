// run_isolated: the engine in a forked child, its report sent back through a pipe.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

#include <vmspace/boot.hpp>
#include <vmspace/stress.hpp>

#if defined(__SANITIZE_THREAD__)
#define VMS_STRESS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VMS_STRESS_TSAN 1
#endif
#endif

namespace vmspace::stress {

// Under ThreadSanitizer run_isolated only reports that it cannot fork, so the helpers below
// would be unused (an error with -Werror).
#ifndef VMS_STRESS_TSAN
namespace {

// Report serialisation: one "key<TAB>value" line per field; values escape \, newline and tab.
std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += c;
    }
  }
  return out;
}

std::string unesc(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      ++i;
      out += s[i] == 'n' ? '\n' : s[i] == 't' ? '\t' : s[i];
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string serialize(const StressReport& r) {
  std::ostringstream os;
  os.precision(17);
  os << "total_ops\t" << r.total_ops << "\nseconds\t" << r.seconds << "\nops_per_second\t"
     << r.ops_per_second << "\ncheckpoints\t" << r.checkpoints << "\ncheck_seconds\t"
     << r.check_seconds << "\nrecords_replayed\t" << r.records_replayed << "\ncopies_checked\t"
     << r.copies_checked << "\ntlb_stale_hits\t" << r.tlb_stale_hits << "\ntlb_dispatches\t"
     << r.tlb_dispatches << "\nfaults_handled\t" << r.faults_handled << "\nfaults_refused\t"
     << r.faults_refused << "\nleaked_bytes\t" << r.leaked_bytes << "\nviolations_total\t"
     << r.violations_total << "\nsetup_error\t" << esc(r.setup_error) << "\n";
  for (std::size_t k = 0; k < kOpKinds; ++k) {
    for (std::size_t o = 0; o < kOutcomes; ++o) {
      if (r.counts[k][o] != 0) os << "count\t" << k << " " << o << " " << r.counts[k][o] << "\n";
    }
  }
  for (const StressViolation& v : r.violations)
    os << "violation\t" << esc(v.kind) << "\t" << esc(v.description) << "\n";
  if (r.history) {
    os << "history\t" << esc(r.history->violation) << "\t" << r.history->candidates << "\t"
       << r.history->minimal << "\n";
    for (const std::string& s : r.history->initial) os << "initial\t" << esc(s) << "\n";
    for (const std::string& s : r.history->records) os << "record\t" << esc(s) << "\n";
  }
  os << "end\t\n";
  return os.str();
}

// Returns true if the serialised report was complete.
bool deserialize(const std::string& text, StressReport& r) {
  std::istringstream is(text);
  std::string line;
  bool complete = false;
  while (std::getline(is, line)) {
    const auto tab = line.find('\t');
    if (tab == std::string::npos) continue;
    const std::string key = line.substr(0, tab);
    const std::string val = line.substr(tab + 1);
    auto u64 = [&] { return std::strtoull(val.c_str(), nullptr, 10); };
    if (key == "total_ops")
      r.total_ops = u64();
    else if (key == "seconds")
      r.seconds = std::strtod(val.c_str(), nullptr);
    else if (key == "ops_per_second")
      r.ops_per_second = std::strtod(val.c_str(), nullptr);
    else if (key == "checkpoints")
      r.checkpoints = u64();
    else if (key == "check_seconds")
      r.check_seconds = std::strtod(val.c_str(), nullptr);
    else if (key == "records_replayed")
      r.records_replayed = u64();
    else if (key == "copies_checked")
      r.copies_checked = u64();
    else if (key == "tlb_stale_hits")
      r.tlb_stale_hits = u64();
    else if (key == "tlb_dispatches")
      r.tlb_dispatches = u64();
    else if (key == "faults_handled")
      r.faults_handled = u64();
    else if (key == "faults_refused")
      r.faults_refused = u64();
    else if (key == "leaked_bytes")
      r.leaked_bytes = std::strtoll(val.c_str(), nullptr, 10);
    else if (key == "violations_total")
      r.violations_total = u64();
    else if (key == "setup_error")
      r.setup_error = unesc(val);
    else if (key == "count") {
      std::size_t k = 0, o = 0;
      unsigned long long v = 0;
      if (std::sscanf(val.c_str(), "%zu %zu %llu", &k, &o, &v) == 3 && k < kOpKinds &&
          o < kOutcomes)
        r.counts[k][o] = v;
    } else if (key == "violation") {
      const auto t2 = val.find('\t');
      r.violations.push_back(StressViolation{
          unesc(val.substr(0, t2)), t2 == std::string::npos ? "" : unesc(val.substr(t2 + 1))});
    } else if (key == "history") {
      FailingHistory h;
      std::istringstream hs(val);
      std::string v, c, m;
      std::getline(hs, v, '\t');
      std::getline(hs, c, '\t');
      std::getline(hs, m, '\t');
      h.violation = unesc(v);
      h.candidates = std::strtoull(c.c_str(), nullptr, 10);
      h.minimal = m == "1";
      r.history = h;
    } else if (key == "initial" && r.history) {
      r.history->initial.push_back(unesc(val));
    } else if (key == "record" && r.history) {
      r.history->records.push_back(unesc(val));
    } else if (key == "end") {
      complete = true;
    }
  }
  return complete;
}

void write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

std::string tail(const std::string& s, std::size_t n) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

}  // namespace
#endif

StressReport run_isolated(const StressOptions& options) {
  StressReport report = StressReport::configured(options);
#ifdef VMS_STRESS_TSAN
  report.setup_error = "run_isolated cannot fork under ThreadSanitizer";
  return report;
#else
  if (is_booted()) {
    report.setup_error =
        "run_isolated needs a process whose machine is not booted (the child boots its own)";
    return report;
  }
  int data[2];
  int out[2];
  if (pipe(data) != 0) {
    report.setup_error = "pipe failed";
    return report;
  }
  if (pipe(out) != 0) {
    close(data[0]);
    close(data[1]);
    report.setup_error = "pipe failed";
    return report;
  }
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    report.setup_error = "fork failed";
    return report;
  }
  if (pid == 0) {
    // The child's crash is a finding of the parent's run, not a crash of the parent's program:
    // drop crash handlers inherited from it (a test framework's would print its own failure
    // summary into the output we report).
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, SIG_DFL);
    close(data[0]);
    close(out[0]);
    dup2(out[1], STDOUT_FILENO);
    dup2(out[1], STDERR_FILENO);
    close(out[1]);
    const int fd = data[1];
    StressOptions o = options;
    o.on_deadlock = [fd](const StressReport& r) {
      std::fputs(r.to_text().c_str(), stderr);
      write_all(fd, serialize(r));
    };
    StressReport r = run(o);
    write_all(fd, serialize(r));
    std::fflush(nullptr);
    _exit(r.passed() ? 0 : 1);
  }
  close(data[1]);
  close(out[1]);
  std::string data_text;
  std::string output;
  const double budget = (options.ops != 0 ? 600.0 : options.seconds) + options.watchdog_seconds +
                        options.minimize_seconds + 120.0;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<std::int64_t>(budget * 1000));
  bool timed_out = false;
  pollfd fds[2] = {{data[0], POLLIN, 0}, {out[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) {
      timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    const int n = poll(fds, 2, static_cast<int>(std::min<long long>(left, 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char buf[4096];
      const ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        (i == 0 ? data_text : output).append(buf, static_cast<std::size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) close(p.fd);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const bool complete = deserialize(data_text, report);
  if (timed_out) {
    ++report.violations_total;
    report.violations.push_back(
        StressViolation{"crash", "the child did not finish within " +
                                     std::to_string(static_cast<long long>(budget)) +
                                     " s and was killed; last output: " + tail(output, 2000)});
  } else if (WIFSIGNALED(status)) {
    ++report.violations_total;
    report.violations.push_back(StressViolation{
        "crash", std::string("the child died of signal ") + std::to_string(WTERMSIG(status)) +
                     " (" + strsignal(WTERMSIG(status)) + "); last output: " + tail(output, 2000)});
  } else if (!complete) {
    ++report.violations_total;
    report.violations.push_back(StressViolation{
        "crash", "the child exited with status " + std::to_string(WEXITSTATUS(status)) +
                     " without a report; last output: " + tail(output, 2000)});
  } else if (WEXITSTATUS(status) != 0 && report.passed()) {
    ++report.violations_total;
    report.violations.push_back(StressViolation{
        "crash", "the child exited with status " + std::to_string(WEXITSTATUS(status)) +
                     "; last output: " + tail(output, 2000)});
  }
  return report;
#endif
}

}  // namespace vmspace::stress
