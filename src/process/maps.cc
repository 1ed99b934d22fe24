#include "process/maps.h"

#include <algorithm>

#include <fstream>
#include <sstream>

namespace ls::proc {

Result<std::vector<Mapping>> read_maps(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/maps", pid));
  if (!in) return error("process {}: cannot read /proc/{}/maps (does it exist?)", pid, pid);
  std::vector<Mapping> out;
  std::string line;
  while (std::getline(in, line)) {
    Mapping m;
    unsigned long long start = 0, end = 0, off = 0, inode = 0;
    char perms[5] = {};
    int path_at = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx %4s %llx %*s %llu %n", &start, &end, perms, &off, &inode, &path_at) < 5)
      continue;
    m.range = {TargetAddr(start), TargetAddr(end)};
    m.read = perms[0] == 'r';
    m.write = perms[1] == 'w';
    m.exec = perms[2] == 'x';
    m.shared = perms[3] == 's';
    m.file_offset = off;
    m.inode = inode;
    if (path_at > 0 && static_cast<size_t>(path_at) <= line.size()) m.path = line.substr(path_at);
    // A file replaced on disk since it was mapped (a rebuild) still is the code that runs;
    // its contents stay reachable through /proc/PID/map_files.
    constexpr std::string_view kDeleted = " (deleted)";
    if (m.path.size() > kDeleted.size() && m.path.ends_with(kDeleted)) {
      m.path.resize(m.path.size() - kDeleted.size());
      m.deleted = true;
    }
    out.push_back(std::move(m));
  }
  if (out.empty()) return error("process {}: no mappings (it may have exited)", pid);
  return out;
}

const Mapping* mapping_at(const std::vector<Mapping>& maps, TargetAddr addr) {
  // /proc/PID/maps lists mappings in address order; the stack check asks once per
  // thread, inside the pause, of processes with hundreds of mappings.
  auto after = std::upper_bound(maps.begin(), maps.end(), addr,
                                [](TargetAddr a, const Mapping& m) { return a < m.range.start; });
  if (after == maps.begin()) return nullptr;
  const Mapping& m = *std::prev(after);
  return m.range.contains(addr) ? &m : nullptr;
}

std::optional<TargetAddr> find_free_near(const std::vector<Mapping>& maps, TargetRange near, uint64_t size) {
  constexpr uint64_t page = 4096;
  constexpr uint64_t reach = (uint64_t{1} << 31) - (uint64_t{1} << 24);   // 2 GiB less a 16 MiB margin
  size = (size + page - 1) & ~(page - 1);
  uint64_t lo = near.end.value() > reach ? near.end.value() - reach : page * 16;
  uint64_t hi = near.start.value() + reach;
  // Gaps between mappings, nearest to `near` first: try just above and just below.
  std::vector<std::pair<uint64_t, uint64_t>> gaps;
  uint64_t prev_end = page * 16;   // stay clear of the null page area
  for (const auto& m : maps) {
    if (m.range.start.value() > prev_end) gaps.push_back({prev_end, m.range.start.value()});
    prev_end = std::max(prev_end, m.range.end.value());
  }
  gaps.push_back({prev_end, uint64_t{0x7ffffffff000}});
  std::optional<TargetAddr> best;
  uint64_t best_distance = ~uint64_t{0};
  for (auto [g0, g1] : gaps) {
    // Leave a guard page on both sides so we never abut (and merge with) a mapping.
    uint64_t a0 = std::max(g0 + page, lo), a1 = std::min(g1 - std::min(g1, page), hi);
    if (a1 <= a0 || a1 - a0 < size) continue;
    for (uint64_t cand : {a0, a1 - size}) {
      uint64_t dist = cand >= near.start.value() ? cand - near.start.value() : near.start.value() - cand;
      if (dist < best_distance) {
        best_distance = dist;
        best = TargetAddr(cand);
      }
    }
  }
  return best;
}

}  // namespace ls::proc
