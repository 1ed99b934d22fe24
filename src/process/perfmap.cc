// The perf map appended to, never truncated (perfmap.h).
#include "process/perfmap.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace ls::proc {

namespace {

struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
};

// The process's effective user and group (/proc/PID/status), whose program would have
// created the map.
Result<Owner> process_owner(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  Owner o;
  bool uid = false, gid = false;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string key;
    unsigned real = 0, effective = 0;
    fields >> key >> real >> effective;
    if (key == "Uid:" && fields) o.uid = effective, uid = true;
    if (key == "Gid:" && fields) o.gid = effective, gid = true;
  }
  if (!uid || !gid) return error("/proc/{}/status: no Uid or Gid line", pid);
  return o;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Opened for appending: created for the process's user if absent; an existing one only
// if it is a regular file of root's or the user's (never through a symlink).
Result<int> open_for_append(const std::string& path, const Owner& owner) {
  const int flags = O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC;
  int fd = open(path.c_str(), flags | O_CREAT | O_EXCL, 0644);
  if (fd >= 0) {
    if (fchown(fd, owner.uid, owner.gid) != 0) {
      int e = errno;
      close(fd);
      return error("{}: cannot give it to user {}: {}", path, owner.uid, std::strerror(e));
    }
    return fd;
  }
  if (errno != EEXIST) return error("{}: cannot create: {}", path, std::strerror(errno));
  fd = open(path.c_str(), flags);
  if (fd < 0) return error("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != owner.uid)) {
    close(fd);
    return error("{}: not a regular file of root's or of the process's user {}; left alone", path, owner.uid);
  }
  return fd;
}

}  // namespace

std::string perf_map_path(pid_t pid) { return fmt::format("/tmp/perf-{}.map", pid); }

std::string perf_map_text(const std::vector<PerfMapLine>& lines) {
  std::string text;
  for (const auto& l : lines) text += fmt::format("{:x} {:x} {}\n", l.start.value(), l.size, l.name);
  return text;
}

Status append_perf_map(pid_t pid, const std::vector<PerfMapLine>& lines) {
  if (lines.empty()) return {};
  auto owner = process_owner(pid);
  if (!owner) return owner.status();
  const std::string path = perf_map_path(pid);
  auto fd = open_for_append(path, *owner);
  if (!fd) return fd.status();
  Fd file(*fd);
  // One write: with O_APPEND it lands whole after whatever the program appended.
  const std::string text = perf_map_text(lines);
  ssize_t n = write(file.get(), text.data(), text.size());
  if (n != static_cast<ssize_t>(text.size()))
    return error("{}: {}", path, n < 0 ? std::strerror(errno) : "short write");
  return {};
}

}  // namespace ls::proc
