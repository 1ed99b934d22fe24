// The running kernel's memory, read through /proc/kcore.
//
// /proc/kcore is an ELF core file whose PT_LOAD segments map kernel virtual addresses
// (the kernel image, modules, the direct map, vmalloc) to file offsets. Reading needs
// root (CAP_SYS_RAWIO) and CONFIG_PROC_KCORE. A read must lie within one segment; a
// segment can still have holes (unmapped pages read as an error), so a failed read is
// reported with the address, never turned into zeros.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/result.h"
#include "matcher/matcher.h"

namespace ls::kernel {

class Kcore : public match::CodeSource {
 public:
  static Result<Kcore> open(const std::string& path = "/proc/kcore");
  Kcore(Kcore&& o) noexcept;
  Kcore& operator=(Kcore&&) = delete;
  ~Kcore() override;

  // Fills all of out from [at, at + out.size()), or fails.
  Status read(TargetAddr at, std::span<uint8_t> out) const override;

  struct Segment {
    TargetRange range;
    uint64_t file_offset = 0;
  };
  const std::vector<Segment>& segments() const { return segs_; }

 private:
  Kcore(int fd, std::string path, std::vector<Segment> segs)
      : fd_(fd), path_(std::move(path)), segs_(std::move(segs)) {}
  int fd_ = -1;
  std::string path_;
  std::vector<Segment> segs_;
};

}  // namespace ls::kernel
