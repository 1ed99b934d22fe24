// The address space of a process as /proc/PID/maps describes it.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "core/addr.h"
#include "core/result.h"

namespace ls::proc {

struct Mapping {
  TargetRange range;
  bool read = false, write = false, exec = false, shared = false;
  uint64_t file_offset = 0;
  uint64_t inode = 0;
  std::string path;           // "" for anonymous, "[vdso]", "/usr/lib/...", "/memfd:x"
  bool deleted = false;       // the file was removed or replaced since it was mapped

  bool file_backed() const { return inode != 0 && !path.empty() && path[0] == '/'; }
};

Result<std::vector<Mapping>> read_maps(pid_t pid);

// The mapping containing `addr`, if any.
// `maps` in address order, as read_maps returns them.
const Mapping* mapping_at(const std::vector<Mapping>& maps, TargetAddr addr);

// A free, page-aligned range of `size` bytes whose every byte is within ±2 GiB (minus a
// margin) of every address in `near` (rel32 reach), or nullopt.
std::optional<TargetAddr> find_free_near(const std::vector<Mapping>& maps, TargetRange near, uint64_t size);

}  // namespace ls::proc
