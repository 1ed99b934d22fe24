// bench-timeit: run a command several times and print its wall-clock and CPU time
// (user + system, children included) as JSON statistics.
//
//   bench-timeit [--runs N] [--warmup N] [--prepare SHELL-CMD] [--ok-exit CODES] -- CMD ARGS...
//
// --prepare runs (untimed, through /bin/sh) before every run, warm-up included, so each
// timed run can start from a fresh copy of its inputs. The command's stdout goes to
// /dev/null; its stderr is kept. The 1-minute load average is recorded too: wall time on
// a busy machine says little. Exit status: 0 when every run exited with one of the
// --ok-exit codes (default 0), 1 otherwise (the JSON says which codes were seen).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <set>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

struct RunResult {
  int exit_code;
  double cpu_s;   // user + system time of the command and its children
};

RunResult run_command(const std::vector<std::string>& argv) {
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    std::exit(1);
  }
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    std::fprintf(stderr, "bench-timeit: cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  struct rusage ru {};
  while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  if (WIFEXITED(status)) return {WEXITSTATUS(status), cpu};
  return {128 + WTERMSIG(status), cpu};
}

struct Stats {
  double median, min, max, mean, stddev;
};

Stats stats(const std::vector<double>& samples) {
  std::vector<double> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  size_t n = sorted.size();
  Stats s{};
  s.median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  s.min = sorted.front();
  s.max = sorted.back();
  for (double x : samples) s.mean += x;
  s.mean /= static_cast<double>(n);
  double var = 0;
  for (double x : samples) var += (x - s.mean) * (x - s.mean);
  s.stddev = n > 1 ? std::sqrt(var / static_cast<double>(n - 1)) : 0.0;
  return s;
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: bench-timeit [--runs N] [--warmup N] [--prepare SHELL-CMD] "
               "[--ok-exit 0,3] -- CMD ARGS...\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 10, warmup = 1;
  std::string prepare;
  std::set<int> ok_exit = {0};
  std::vector<std::string> cmd;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--runs") runs = std::stoi(value());
    else if (a == "--warmup") warmup = std::stoi(value());
    else if (a == "--prepare") prepare = value();
    else if (a == "--ok-exit") {
      ok_exit.clear();
      std::stringstream ss(value());
      for (std::string c; std::getline(ss, c, ',');) ok_exit.insert(std::stoi(c));
    } else if (a == "--") {
      cmd.assign(argv + i + 1, argv + argc);
      break;
    } else usage();
  }
  if (cmd.empty() || runs < 1) usage();

  auto prep = [&] {
    if (!prepare.empty() && std::system(prepare.c_str()) != 0) {
      std::fprintf(stderr, "bench-timeit: --prepare failed: %s\n", prepare.c_str());
      std::exit(1);
    }
  };

  std::set<int> seen_exit;
  for (int i = 0; i < warmup; i++) {
    prep();
    seen_exit.insert(run_command(cmd).exit_code);
  }
  std::vector<double> samples, cpu_samples;
  for (int i = 0; i < runs; i++) {
    prep();
    auto t0 = std::chrono::steady_clock::now();
    RunResult r = run_command(cmd);
    auto t1 = std::chrono::steady_clock::now();
    seen_exit.insert(r.exit_code);
    samples.push_back(std::chrono::duration<double>(t1 - t0).count());
    cpu_samples.push_back(r.cpu_s);
  }
  Stats wall = stats(samples), cpu = stats(cpu_samples);

  double load1 = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load1) != 1) load1 = -1;
    std::fclose(f);
  }
  bool ok = std::all_of(seen_exit.begin(), seen_exit.end(), [&](int c) { return ok_exit.count(c); });
  nlohmann::json j = {
      {"command", cmd},
      {"runs", samples.size()},
      {"warmup_runs", warmup},
      {"median_s", wall.median},
      {"min_s", wall.min},
      {"max_s", wall.max},
      {"mean_s", wall.mean},
      {"stddev_s", wall.stddev},
      {"samples_s", samples},
      // CPU time (user + system, all threads and children): less sensitive than wall
      // time to other load on the machine.
      {"cpu", {{"median_s", cpu.median}, {"min_s", cpu.min}, {"max_s", cpu.max},
               {"stddev_s", cpu.stddev}}},
      {"load_average_1min", load1},
      {"exit_codes", std::vector<int>(seen_exit.begin(), seen_exit.end())},
      {"ok", ok},
  };
  std::printf("%s\n", j.dump(2).c_str());
  return ok ? 0 : 1;
}
