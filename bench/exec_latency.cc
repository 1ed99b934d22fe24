// bench/watch.sh's clock: how long from execve to the first instruction of main(), over
// many starts of one program.
//
//   bench-exec-latency RUNS PROGRAM [ARGS...]
//
// Each run forks; the child reads CLOCK_MONOTONIC just before execve and passes it up a
// pipe; PROGRAM's main() starts by reading the same clock and prints "NS VALUE" (the
// clock and what the function a live update replaces returned, called right then). The
// difference is exec to main: the kernel's exec, ld.so, and whatever holds the process
// in between (livesplice watch). Prints one JSON object: the runs' microseconds (median,
// p10, p90, min, max, mean) and how many runs saw each VALUE.
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

long long now_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

std::string read_all(int fd) {
  std::string s;
  char buf[512];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) s.append(buf, static_cast<size_t>(n));
  return s;
}

double at(const std::vector<double>& sorted, double q) {
  return sorted[std::min(sorted.size() - 1, static_cast<size_t>(q * static_cast<double>(sorted.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench-exec-latency RUNS PROGRAM [ARGS...]\n");
    return 1;
  }
  const int runs = std::atoi(argv[1]);
  std::vector<double> us;
  std::map<std::string, int> values;
  for (int i = 0; i < runs; ++i) {
    int clock_pipe[2], out_pipe[2];
    if (pipe(clock_pipe) != 0 || pipe(out_pipe) != 0) return 1;
    pid_t child = fork();
    if (child == 0) {
      dup2(out_pipe[1], STDOUT_FILENO);
      close(out_pipe[0]);
      close(clock_pipe[0]);
      long long t0 = now_ns();
      (void)!write(clock_pipe[1], &t0, sizeof t0);
      close(clock_pipe[1]);
      execv(argv[2], argv + 2);
      _exit(127);
    }
    close(clock_pipe[1]);
    close(out_pipe[1]);
    long long t0 = 0;
    (void)!read(clock_pipe[0], &t0, sizeof t0);
    std::string out = read_all(out_pipe[0]);
    close(clock_pipe[0]);
    close(out_pipe[0]);
    int status = 0;
    waitpid(child, &status, 0);
    long long t_main = 0;
    char value[64] = "";
    if (std::sscanf(out.c_str(), "%lld %63s", &t_main, value) != 2 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "run %d: unexpected output '%s' (status %d)\n", i, out.c_str(), status);
      return 1;
    }
    us.push_back(static_cast<double>(t_main - t0) / 1000.0);
    values[value]++;
  }
  std::vector<double> sorted = us;
  std::sort(sorted.begin(), sorted.end());
  double mean = 0;
  for (double v : us) mean += v / static_cast<double>(us.size());
  nlohmann::json j{{"runs", runs},          {"median_us", at(sorted, 0.5)}, {"p10_us", at(sorted, 0.1)},
                   {"p90_us", at(sorted, 0.9)}, {"min_us", sorted.front()}, {"max_us", sorted.back()},
                   {"mean_us", mean},        {"values", values}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}
