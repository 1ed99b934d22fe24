#include "process/maps.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ls::proc {

namespace {

// The state letter of /proc/DIR/stat (R, S, Z...), or 0 when it cannot be read.
char task_state(const std::string& dir) {
  // getline, not istreambuf_iterator: a thread that exits while we read makes the
  // read fail with ESRCH, which libstdc++'s filebuf throws through a raw iterator.
  std::ifstream in(dir + "/stat");
  std::string stat;
  std::getline(in, stat);
  auto paren = stat.rfind(')');   // the command name may hold spaces and parentheses
  return paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : 0;
}

}  // namespace

std::string address_space_dir(pid_t pid) {
  std::string dir = fmt::format("/proc/{}", pid);
  if (task_state(dir) != 'Z') return dir;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/task", ec)) {
    char state = task_state(e.path().string());
    if (state != 0 && state != 'Z' && state != 'X') return e.path().string();
  }
  return dir;   // every thread has exited: the process is really gone
}

Status proc_error(pid_t pid, const std::string& file, int err) {
  if (err == EACCES || err == EPERM)
    return Status::error(fmt::format(
        "process {}: permission denied reading {}: patching a process needs root (CAP_SYS_PTRACE to trace it and "
        "read its memory, and CAP_SYS_ADMIN to write new code through /proc/PID/map_files), even for a process "
        "of the same user",
        pid, file));
  if (err == ENOENT || err == ESRCH) return Status::error(fmt::format("process {} does not exist", pid));
  return Status::error(fmt::format("process {}: cannot read {}: {}", pid, file, std::strerror(err)));
}

Status check_map_files(pid_t pid, const std::vector<Mapping>& maps) {
  for (const auto& m : maps) {
    if (!m.file_backed()) continue;
    std::string path = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.range.start.value(), m.range.end.value());
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ::close(fd);
      return {};
    }
    int err = errno;
    if (err == EACCES || err == EPERM) return proc_error(pid, path, err);
    if (address_space_dir(pid) != fmt::format("/proc/{}", pid))
      return Status::error(fmt::format("process {}: its main thread has exited (pthread_exit) while other threads "
                                       "run on; livesplice writes new code through /proc/{}/map_files, which the "
                                       "kernel offers only while the main thread lives: this process cannot be "
                                       "patched; nothing changed",
                                       pid, pid),
                           Exit::Unsafe);
    return proc_error(pid, path, err);
  }
  return {};
}

Result<std::vector<Mapping>> read_maps(pid_t pid) {
  std::string path = address_space_dir(pid) + "/maps";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);   // open(2) itself: its errno says why
  if (fd < 0) return proc_error(pid, path, errno);
  std::string text;
  char buf[1 << 16];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  ::close(fd);
  std::istringstream in(text);
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
