// The ELF files a process has mapped (executable, shared libraries), where they are
// loaded, and what their symbol tables say — the candidates run-pre matching starts from.
//
// What is hard: symbol tables are only hints. A static function's name can repeat across
// source files (the STT_FILE symbol before a group of locals tells which file they came
// from, and we keep that), a stripped executable has no .symtab at all (only .dynsym),
// and a file may have been replaced on disk since it was mapped — so files are read
// through /proc/PID/map_files, which names the mapped inode itself.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/result.h"
#include "process/maps.h"
#include "process/ptrace.h"
#include "update/manifest.h"

namespace ls::proc {

struct ModuleSymbol {
  std::string name;
  TargetAddr address;       // load bias applied
  uint64_t size = 0;
  bool func = false;
  bool ifunc = false;       // STT_GNU_IFUNC: `address` is the resolver, not the function
  bool local = false;
  std::string file;         // for locals: the STT_FILE name of their group ("" if none)
};

struct Module {
  std::string path;          // as in /proc/PID/maps
  std::string name;          // basename
  std::string build_id;      // hex, "" if none
  int64_t bias = 0;          // run address - link address
  TargetRange span;          // first to last mapping of the file
  std::vector<TargetRange> exec;   // executable mappings
  bool has_symtab = false;   // false: stripped (only .dynsym, if any)
  std::vector<ModuleSymbol> symbols;
  // Where the dynamic loader stored resolved addresses: IRELATIVE slots (an IFUNC) by the
  // run address of their resolver, and import slots (GLOB_DAT, JUMP_SLOT) by symbol name.
  std::multimap<TargetAddr, TargetAddr> irelative_slots;
  std::multimap<std::string, TargetAddr> import_slots;

  // Addresses of symbols called `name`; for locals, only those from `source_file` when
  // that narrows it down (basename comparison).
  std::vector<TargetAddr> lookup(const std::string& name, bool local, const std::string& source_file) const;
  // Addresses of locals called `name` outside every source file's group: the group of
  // an empty STT_FILE, where GNU ld puts globals it made local (hidden visibility, or
  // not exported by a version script).
  std::vector<TargetAddr> lookup_localized(const std::string& name) const;
};

// A GNU indirect function's symbol gives its resolver, which the dynamic loader called to
// choose the implementation (strchr, memcpy: one per CPU feature set). `resolver` is the
// run address of such a symbol in `owner`; the result is the implementation this process
// was given, read from a slot the loader filled: an IRELATIVE slot of `owner` naming that
// resolver, or another module's import slot of `name` that points into `owner`'s code. An
// error when no slot was filled (then only calling the resolver could tell).
Result<TargetAddr> resolved_ifunc(const Memory& mem, const std::vector<Module>& modules, const Module& owner,
                                  const std::string& name, TargetAddr resolver);

// Every ELF file mapped executable in the process, with symbols loaded.
Result<std::vector<Module>> read_modules(pid_t pid, const std::vector<Mapping>& maps);

// The module a target name (basename of an executable or library) denotes; nullptr if
// none is mapped. The main executable is also found as "exe" via /proc/PID/exe.
const Module* find_module(const std::vector<Module>& modules, const std::string& name);

// The first line of defence before run-pre matching: each target binary of the update
// that the process has mapped must carry the build-id the update was made for. Fails
// with Exit::Unsafe naming the file and both ids when the update knows the binary as it
// was built before create (the one users run). When it knows only its own pre build's id
// (the binary did not exist before create: another build directory gives another id
// for the same code) a difference is a warning, and when the mapped file has no build-id
// a -v note: matching decides, as it always does.
Status check_build_ids(Context& ctx, const std::vector<update::ManifestTarget>& targets,
                       const std::vector<Module>& modules);

}  // namespace ls::proc
