// bench-stop-floor PID ROUNDS: the least any ptrace-based tool pays to stop every thread
// of a running process and resume it, on this machine, for this process: per round,
// seize every thread (before the clock starts), then PTRACE_INTERRUPT all, wait for
// each and read its registers, PTRACE_DETACH all — no check, no write, no bookkeeping.
// The same CPU placement and priority as livesplice's own stop (on the CPU the main
// thread last ran on, SCHED_FIFO 1), and one untimed round first, so that the ratio
// "livesplice pause / this floor" (bench/pause.sh) says what livesplice adds to the
// cost of a stop itself. Prints {"threads": N, "median_us": .., "min_us": .., "max_us": ..}.
//
// bench-stop-floor --group-stop ROUNDS -- PROGRAM ARGS...: the kernel's own stop of every
// thread, with no tracer at all, as a second yardstick: PROGRAM is started as a child
// (it prints "ready" when its threads run, and nothing after), then per round SIGSTOP,
// wait for the group stop to complete (the last thread stopped), SIGCONT (which wakes
// every thread inside the one kill). No tool that must stop all threads can beat this on the same machine;
// when it alone exceeds a pause target, the target is out of reach there. Same output.
//
// Deliberately independent of livesplice's code: it is the yardstick, not a copy.
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

std::vector<pid_t> threads_of(pid_t pid) {
  std::vector<pid_t> tids;
  std::string path = "/proc/" + std::to_string(pid) + "/task";
  if (DIR* d = opendir(path.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') tids.push_back(std::atoi(e->d_name));
    closedir(d);
  }
  return tids;
}

int last_cpu(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t at = s.rfind(')');
  if (at == std::string::npos) return -1;
  int field = 2;
  for (++at; at < s.size() && field < 39; ++at)
    if (s[at] == ' ') ++field;
  return field == 39 ? std::atoi(s.c_str() + at) : -1;
}

// One stop and resume of every thread; the microseconds from the first interrupt to the
// last detach, or a negative value when a thread could not be held.
double one_round(pid_t pid) {
  std::vector<pid_t> tids = threads_of(pid);
  for (pid_t t : tids)
    if (ptrace(PTRACE_SEIZE, t, nullptr, nullptr) != 0) return -1;
  cpu_set_t saved, one;
  sched_getaffinity(0, sizeof saved, &saved);
  int cpu = last_cpu(pid);
  if (cpu >= 0) {
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    sched_setaffinity(0, sizeof one, &one);
  }
  sched_param rt{};
  rt.sched_priority = 1;
  bool fifo = sched_setscheduler(0, SCHED_FIFO, &rt) == 0;

  auto t0 = std::chrono::steady_clock::now();
  for (pid_t t : tids) ptrace(PTRACE_INTERRUPT, t, nullptr, nullptr);
  user_regs_struct regs;
  bool ok = true;
  for (pid_t t : tids) {
    int status = 0;
    ok &= waitpid(t, &status, __WALL) == t && WIFSTOPPED(status);
    ok &= ptrace(PTRACE_GETREGS, t, nullptr, &regs) == 0;
  }
  for (pid_t t : tids) ptrace(PTRACE_DETACH, t, nullptr, nullptr);
  auto t1 = std::chrono::steady_clock::now();

  if (fifo) {
    sched_param normal{};
    sched_setscheduler(0, SCHED_OTHER, &normal);
  }
  sched_setaffinity(0, sizeof saved, &saved);
  return ok ? std::chrono::duration<double, std::micro>(t1 - t0).count() : -1;
}

// One group stop and continue of a child: SIGSTOP until the kernel reports the whole
// group stopped, then SIGCONT; microseconds, or negative when the child did not stop.
double one_group_round(pid_t child) {
  siginfo_t info{};
  auto t0 = std::chrono::steady_clock::now();
  kill(child, SIGSTOP);
  if (waitid(P_PID, child, &info, WSTOPPED) != 0 || info.si_code != CLD_STOPPED) return -1;
  kill(child, SIGCONT);
  auto t1 = std::chrono::steady_clock::now();
  waitid(P_PID, child, &info, WCONTINUED);
  return std::chrono::duration<double, std::micro>(t1 - t0).count();
}

// Starts PROGRAM ARGS... with its stdout on a pipe and returns once it printed "ready".
pid_t start_ready(char** argv) {
  int out[2];
  if (pipe(out) != 0) return -1;
  pid_t child = fork();
  if (child == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    execvp(argv[0], argv);
    _exit(127);
  }
  close(out[1]);
  std::string seen;
  char buf[256];
  ssize_t n;
  while (seen.find("ready") == std::string::npos && (n = read(out[0], buf, sizeof buf)) > 0) seen.append(buf, n);
  close(out[0]);   // PROGRAM must print nothing after "ready": a later write would get SIGPIPE
  if (seen.find("ready") == std::string::npos) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    return -1;
  }
  return child;
}

}  // namespace

int main(int argc, char** argv) {
  bool group = argc >= 5 && std::strcmp(argv[1], "--group-stop") == 0 && std::strcmp(argv[3], "--") == 0;
  if (argc != 3 && !group) {
    std::fprintf(stderr, "usage: bench-stop-floor PID ROUNDS\n"
                         "       bench-stop-floor --group-stop ROUNDS -- PROGRAM ARGS...\n");
    return 1;
  }
  pid_t pid = group ? start_ready(argv + 4) : std::atoi(argv[1]);
  int rounds = std::atoi(argv[2]);
  if (pid <= 0) {
    std::fprintf(stderr, "bench-stop-floor: %s did not start or never printed \"ready\"\n", argv[4]);
    return 1;
  }
  std::vector<double> us;
  for (int r = 0; r <= rounds; ++r) {
    double d = group ? one_group_round(pid) : one_round(pid);
    if (d < 0) {
      std::fprintf(stderr, "bench-stop-floor: could not stop process %d: %s\n", pid, std::strerror(errno));
      if (group) kill(pid, SIGKILL);
      return 1;
    }
    if (r > 0) us.push_back(d);   // round 0 warms up
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  size_t threads = threads_of(pid).size();
  if (group) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  std::sort(us.begin(), us.end());
  std::printf("{\"threads\": %zu, \"rounds\": %zu, \"median_us\": %.1f, \"min_us\": %.1f, \"max_us\": %.1f}\n",
              threads, us.size(), us[us.size() / 2], us.front(), us.back());
  return 0;
}
