// The address space of a process as /proc/PID/maps describes it.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/result.h"

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

// The /proc directory to read a process's address space from (maps, mem): /proc/PID,
// or, when its main thread has called pthread_exit while other threads run on (a zombie
// leader, whose own maps are empty and mem unreadable), /proc/PID/task/TID of a live
// thread: every thread shares the address space.
std::string address_space_dir(pid_t pid);

// Whether livesplice can write new code into the process: it does so through
// /proc/PID/map_files (memory mapped shared refuses forced writes through
// /proc/PID/mem), which needs CAP_SYS_ADMIN and which the kernel offers only while the
// main thread lives. Fails with a permission error (exit 1), or for a zombie leader with
// Exit::Unsafe saying so; `maps` as read_maps returned them.
Status check_map_files(pid_t pid, const std::vector<Mapping>& maps);

// Why a file of /proc/PID could not be opened (`err` is the errno), for people: a
// permission problem says what patching needs; a missing process says so.
Status proc_error(pid_t pid, const std::string& file, int err);

// The mapping containing `addr`, if any.
// `maps` in address order, as read_maps returns them.
const Mapping* mapping_at(const std::vector<Mapping>& maps, TargetAddr addr);

// A free, page-aligned range of `size` bytes whose every byte is within ±2 GiB (minus a
// margin) of every address in `near` (rel32 reach), or nullopt.
std::optional<TargetAddr> find_free_near(const std::vector<Mapping>& maps, TargetRange near, uint64_t size);

}  // namespace ls::proc
