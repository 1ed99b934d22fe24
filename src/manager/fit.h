// Fit: which running processes an update is for.
//
// An update names the binaries it was made for by build-id (manifest: targets[], the
// binary as it was before create ran). A process fits when it maps one of them. What is
// hard is that the file on disk is not what runs: a package upgrade replaces it (the
// process keeps the old inode, shown "(deleted)" in its maps), and a path may now hold
// another build. So the build-id is read from the mapping itself, through
// /proc/PID/map_files (the mapped inode, whatever the path holds now), never from the
// path. Reading it disturbs nothing: no ptrace, no stop, only /proc. Files shared by many
// processes (libc) are read once per inode.
//
// When the update has no build-id from before create (the binary did not exist then,
// and its own pre build's id is not what a user's build carries) a binary of the same
// name fits, and run-pre matching, as always, decides.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/diag.h"
#include "update/manifest.h"

namespace ls::manager {

struct MappedBinary {
  std::string path;                // as /proc/PID/maps shows it (without " (deleted)")
  std::string name;                // basename
  std::string build_id;            // hex, read from the mapping; "" when it has none
  bool replaced = false;           // deleted or replaced on disk since it was mapped
};

struct RunningProcess {
  pid_t pid = 0;
  uint64_t start_time = 0;         // with the pid: this process (proc(5) field 22)
  std::string command;             // /proc/PID/comm
  std::vector<MappedBinary> binaries;   // executable ELF files it maps

  std::string key() const { return std::to_string(pid) + "-" + std::to_string(start_time); }
};

// Every process of the machine except this one and kernel threads, with the binaries it
// maps executable. A process that ends while it is read is left out; one whose maps
// cannot be read (not root) is a note with -v.
std::vector<RunningProcess> scan_processes(Context& ctx);
// The same for one process (watch: a process just held); nullopt when it is gone.
std::optional<RunningProcess> scan_process(Context& ctx, pid_t pid);

// The GNU build-id of the ELF file at `path` (hex), "" when it has none or is no ELF file.
std::string build_id_of_file(const std::string& path);

// How an update fits a process: the target of the update it maps, and how it was known.
struct Fit {
  std::string target;              // the update's target name
  const MappedBinary* binary = nullptr;
  bool by_name = false;            // no build-id to match: same name, matching decides
};

// The targets (executables, shared libraries) of `m` that `p` maps; empty when the
// update is not for this process. Kernel updates fit no process.
std::vector<Fit> fits(const update::Manifest& m, const RunningProcess& p);

}  // namespace ls::manager
