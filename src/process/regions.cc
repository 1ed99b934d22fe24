#include "process/regions.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "process/guardian.h"
#include "process/ptrace.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 1U
#endif

namespace ls::proc {

namespace {

constexpr uint64_t kPage = 4096;
uint64_t page_up(uint64_t n) { return (n + kPage - 1) & ~(kPage - 1); }

// One borrowed thread and a syscall gadget, for a short sequence of calls.
struct Borrowed {
  std::unique_ptr<ThreadGroupStop> stop;
  std::optional<Memory> mem;
  std::unique_ptr<RemoteSyscall> sc;

  static Result<Borrowed> take(pid_t pid) {
    Borrowed b;
    auto mem = Memory::open(pid);
    if (!mem) return mem.status();
    b.mem.emplace(std::move(mem.value()));
    auto gadget = find_syscall_gadget(pid, *b.mem);
    if (!gadget) return gadget.status();
    auto stop = ThreadGroupStop::stop_one(pid);
    if (!stop) return stop.status();
    b.stop = std::move(stop.value());
    b.sc = std::make_unique<RemoteSyscall>(*b.stop, b.stop->threads().front(), *gadget);
    return b;
  }
  Result<int64_t> call(long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0,
                       uint64_t a6 = 0) {
    return sc->call(nr, a1, a2, a3, a4, a5, a6);
  }
  // Registers go back before the thread is resumed.
  ~Borrowed() {
    sc.reset();
    stop.reset();
  }
  Borrowed() = default;
  Borrowed(Borrowed&&) = default;
};

Status unmap_with(Borrowed& b, pid_t pid, const std::vector<Region>& regions) {
  Status first;
  for (const auto& r : regions) {
    auto rc = b.call(SYS_munmap, r.range.start.value(), r.range.size());
    if (!rc) return rc.status();
    if (*rc != 0 && first.ok())
      first = error("process {}: munmap of {} at {} failed: {}", pid, r.name, r.range.start, std::strerror(-*rc));
  }
  return first;
}

}  // namespace

namespace {

// Runs in the guardian child: maps every request with one borrowed thread; on failure
// unmaps what it mapped, so that nothing stays behind either way.
Status map_in_target(pid_t pid, const std::vector<RegionRequest>& requests) {
  auto b = Borrowed::take(pid);
  if (!b) return b.status();
  std::vector<Region> done;
  auto undo = [&](Status s) {
    (void)unmap_with(*b, pid, done);
    return s;
  };
  for (const auto& req : requests) {
    std::vector<uint8_t> bytes(req.name.begin(), req.name.end());
    bytes.push_back(0);
    auto name_at = b->sc->push_bytes(*b->mem, bytes);
    if (!name_at) return undo(name_at.status());
    auto fd = b->call(SYS_memfd_create, name_at->value(), MFD_CLOEXEC);
    if (!fd) return undo(fd.status());
    if (*fd < 0) return undo(error("process {}: memfd_create failed: {}", pid, std::strerror(-*fd)));
    uint64_t size = page_up(req.size);
    Status s;
    auto sized = b->call(SYS_ftruncate, *fd, size);
    if (!sized) s = sized.status();
    else if (*sized != 0) s = error("process {}: cannot size its memfd: {}", pid, std::strerror(-*sized));
    if (s.ok()) {
      uint64_t exec_size = req.readonly ? 0 : page_up(req.exec_size);
      int prot = req.readonly ? PROT_READ : (exec_size ? PROT_READ | PROT_EXEC : PROT_READ | PROT_WRITE);
      auto at = b->call(SYS_mmap, req.at.value(), size, prot, MAP_SHARED | MAP_FIXED_NOREPLACE, *fd, 0);
      if (!at) s = at.status();
      else if (*at < 0 || static_cast<uint64_t>(*at) != req.at.value())
        s = error("process {}: cannot map {} bytes at {}: {}", pid, size, req.at,
                  *at < 0 ? std::strerror(-*at) : "placed elsewhere");
      else {
        done.push_back(Region{{req.at, req.at + static_cast<int64_t>(size)}, "/memfd:" + req.name});
        if (!req.readonly && exec_size && exec_size < size) {
          auto rc = b->call(SYS_mprotect, req.at.value() + exec_size, size - exec_size, PROT_READ | PROT_WRITE);
          if (!rc) s = rc.status();
          else if (*rc != 0) s = error("process {}: mprotect failed: {}", pid, std::strerror(-*rc));
        }
      }
    }
    auto closed = b->call(SYS_close, *fd);
    if (!s.ok()) return undo(s);
    if (!closed) return undo(closed.status());
  }
  return {};
}

}  // namespace

Status RegionSet::map(const std::vector<RegionRequest>& requests) {
  LS_TRY(map_in_target(pid_, requests));
  for (const auto& req : requests)
    regions_.push_back(Region{{req.at, req.at + static_cast<int64_t>(page_up(req.size))}, "/memfd:" + req.name});
  return {};
}

namespace {

// The memfd behind a region, opened through /proc/PID/map_files. A region whose code
// part is executable and whose data part is writable is two mappings of the one file
// (mprotect split it), so the entry is the one that starts where the region starts.
int open_region_file(pid_t pid, TargetRange r) {
  std::string dir = fmt::format("/proc/{}/map_files/", pid);
  int fd = ::open((dir + fmt::format("{:x}-{:x}", r.start.value(), r.end.value())).c_str(), O_RDWR | O_CLOEXEC);
  if (fd >= 0 || errno != ENOENT) return fd;
  std::error_code ec;
  const std::string prefix = fmt::format("{:x}-", r.start.value());
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().filename().string().starts_with(prefix)) return ::open(e.path().c_str(), O_RDWR | O_CLOEXEC);
  errno = ENOENT;
  return -1;
}

}  // namespace

Status RegionSet::write(size_t i, uint64_t offset, std::span<const uint8_t> bytes) const {
  if (i >= regions_.size()) return error("no region {}", i);
  int fd = open_region_file(pid_, regions_[i].range);
  if (fd < 0) return error("process {}: cannot open {}: {}", pid_, regions_[i].name, std::strerror(errno));
  // The process may have put another file at that address meanwhile — any file it can
  // read, which we, as root, would open writable. Only an unlinked file (our memfd) is
  // written.
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 0) {
    ::close(fd);
    return Status::error(fmt::format("process {}: {} at {} is no longer the memfd livesplice mapped there (tampering); "
                                     "not writing", pid_, regions_[i].name, regions_[i].range.start), Exit::Unsafe);
  }
  ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
  ::close(fd);
  if (n != static_cast<ssize_t>(bytes.size()))
    return error("process {}: cannot write {} bytes into {}: {}", pid_, bytes.size(), regions_[i].name,
                 n < 0 ? std::strerror(errno) : "short write");
  return {};
}

RegionSet::~RegionSet() {
  if (!committed_ && !regions_.empty()) (void)unmap_regions(pid_, regions_);
}

Status unmap_regions(pid_t pid, const std::vector<Region>& regions) {
  if (regions.empty()) return {};
  auto done = run_to_completion([&](std::string&) {
    auto b = Borrowed::take(pid);
    if (!b) return b.status();
    return unmap_with(*b, pid, regions);
  });
  return done ? Status() : done.status();
}

}  // namespace ls::proc
