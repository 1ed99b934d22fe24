// bench-timeit: run a command several times and print wall-clock statistics as JSON.
//
//   bench-timeit [--runs N] [--warmup N] [--prepare SHELL-CMD] [--ok-exit CODES] -- CMD ARGS...
//
// --prepare runs (untimed, through /bin/sh) before every run, warm-up included, so each
// timed run can start from a fresh copy of its inputs. The command's stdout goes to
// /dev/null; its stderr is kept. Exit status: 0 when every run exited with one of the
// --ok-exit codes (default 0), 1 otherwise (the JSON says which code was seen).
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
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

int run_command(const std::vector<std::string>& argv) {
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
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
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
    seen_exit.insert(run_command(cmd));
  }
  std::vector<double> samples;
  for (int i = 0; i < runs; i++) {
    prep();
    auto t0 = std::chrono::steady_clock::now();
    int rc = run_command(cmd);
    auto t1 = std::chrono::steady_clock::now();
    seen_exit.insert(rc);
    samples.push_back(std::chrono::duration<double>(t1 - t0).count());
  }

  std::vector<double> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  size_t n = sorted.size();
  double median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  double mean = 0;
  for (double s : samples) mean += s;
  mean /= static_cast<double>(n);
  double var = 0;
  for (double s : samples) var += (s - mean) * (s - mean);
  double stddev = n > 1 ? std::sqrt(var / static_cast<double>(n - 1)) : 0.0;

  bool ok = std::all_of(seen_exit.begin(), seen_exit.end(), [&](int c) { return ok_exit.count(c); });
  nlohmann::json j = {
      {"command", cmd},
      {"runs", n},
      {"warmup_runs", warmup},
      {"median_s", median},
      {"min_s", sorted.front()},
      {"max_s", sorted.back()},
      {"mean_s", mean},
      {"stddev_s", stddev},
      {"samples_s", samples},
      {"exit_codes", std::vector<int>(seen_exit.begin(), seen_exit.end())},
      {"ok", ok},
  };
  std::printf("%s\n", j.dump(2).c_str());
  return ok ? 0 : 1;
}
