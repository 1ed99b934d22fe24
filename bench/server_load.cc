// bench-server-load SECONDS CONNECTIONS PORT...: request latency of servers under load,
// for bench/pause.sh's loaded-server rows. CONNECTIONS client threads each loop for
// SECONDS over the PORTs in turn (127.0.0.1): connect, send one request, read the reply
// until the server closes, and record the time from connect to close. Each port gets the
// same load at the same moments, so a copy of the server left alone is the control for
// one being updated meanwhile. Prints {"PORT": {"requests": N, "failed": N, "p50_us": ..,
// "p99_us": .., "max_us": ..}, ...}.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// One request: connect, send, read to EOF. Its latency in µs, or -1 on failure.
double request(int port) {
  auto t0 = Clock::now();
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  static const char kRequest[] = "get key\n";
  ok = ok && write(s, kRequest, sizeof kRequest - 1) == static_cast<ssize_t>(sizeof kRequest - 1);
  char buf[512];
  ssize_t n = 0;
  while (ok && (n = read(s, buf, sizeof buf)) > 0) {
  }
  close(s);
  if (!ok || n < 0) return -1;
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: bench-server-load SECONDS CONNECTIONS PORT...\n");
    return 1;
  }
  const double seconds = std::atof(argv[1]);
  const int connections = std::atoi(argv[2]);
  std::vector<int> ports;
  for (int i = 3; i < argc; ++i) ports.push_back(std::atoi(argv[i]));
  std::vector<std::vector<double>> samples(ports.size());
  std::vector<long> failed(ports.size());
  std::mutex mu;
  const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::thread> clients;
  for (int c = 0; c < connections; ++c)
    clients.emplace_back([&] {
      std::vector<std::vector<double>> mine(ports.size());
      std::vector<long> lost(ports.size());
      while (Clock::now() < until)
        for (size_t p = 0; p < ports.size(); ++p) {
          double us = request(ports[p]);
          if (us < 0) ++lost[p];
          else mine[p].push_back(us);
        }
      std::lock_guard lock(mu);
      for (size_t p = 0; p < ports.size(); ++p) {
        samples[p].insert(samples[p].end(), mine[p].begin(), mine[p].end());
        failed[p] += lost[p];
      }
    });
  for (auto& t : clients) t.join();
  std::printf("{");
  for (size_t p = 0; p < ports.size(); ++p) {
    auto& v = samples[p];
    double max = v.empty() ? 0 : *std::max_element(v.begin(), v.end());
    std::printf("%s\"%d\": {\"requests\": %zu, \"failed\": %ld, \"p50_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f}",
                p ? ", " : "", ports[p], v.size(), failed[p], percentile(v, 0.5), percentile(v, 0.99), max);
  }
  std::printf("}\n");
  return 0;
}
