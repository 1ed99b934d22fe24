#include "kernel/kcore.h"

#include <elf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ls::kernel {

Result<Kcore> Kcore::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error("{}: {} (needs root and CONFIG_PROC_KCORE)", path, strerror(errno));
  auto fail_with = [&](Status s) { ::close(fd); return s; };

  Elf64_Ehdr eh;
  if (pread(fd, &eh, sizeof(eh), 0) != sizeof(eh))
    return fail_with(error("{}: cannot read the ELF header", path));
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_type != ET_CORE || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0)
    return fail_with(error("{}: not a 64-bit ELF core file", path));
  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  ssize_t want = static_cast<ssize_t>(ph.size() * sizeof(Elf64_Phdr));
  if (pread(fd, ph.data(), want, static_cast<off_t>(eh.e_phoff)) != want)
    return fail_with(error("{}: cannot read {} program headers", path, ph.size()));
  std::vector<Segment> segs;
  for (const Elf64_Phdr& p : ph) {
    if (p.p_type != PT_LOAD || p.p_memsz == 0) continue;
    segs.push_back({TargetRange{TargetAddr(p.p_vaddr), TargetAddr(p.p_vaddr + p.p_memsz)}, p.p_offset});
  }
  if (segs.empty()) return fail_with(error("{}: no PT_LOAD segments", path));
  return Kcore(fd, path, std::move(segs));
}

Kcore::Kcore(Kcore&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)), segs_(std::move(o.segs_)) {
  o.fd_ = -1;
}

Kcore::~Kcore() {
  if (fd_ >= 0) ::close(fd_);
}

Status Kcore::read(TargetAddr at, std::span<uint8_t> out) const {
  TargetAddr end = at + static_cast<int64_t>(out.size());
  for (const Segment& s : segs_) {
    if (!s.range.contains(at) || end > s.range.end) continue;
    uint64_t off = s.file_offset + static_cast<uint64_t>(at - s.range.start);
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(off + done));
      if (n <= 0)
        return error("{}: reading {} bytes at {}: {}", path_, out.size(), at,
                     n < 0 ? strerror(errno) : "short read (unmapped page?)");
      done += static_cast<size_t>(n);
    }
    return {};
  }
  return error("{}: {}..{} is not inside one segment", path_, at, end);
}

}  // namespace ls::kernel
