// Helpers for the matcher tests, on tests/support: C projects written from strings and
// built with the real gcc and ld, updates made by the real `livesplice create`, running programs, what
// readelf/objdump say about a linked file, and two CodeSources (a live process's
// /proc/PID/mem, a linked file's bytes at its link addresses). Nothing is mocked.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "matcher/matcher.h"
#include "support/support.h"

namespace mt {

using lstest::read_file;
using lstest::TempDir;
using lstest::write_file;
using Run = lstest::RunResult;
using lstest::sh;
// sh() that fails the test (with the output) unless the command succeeds.
std::string must(const std::string& command, const std::string& cwd = {});

// A C project: files written into a temporary tree, built with `make`.
struct Project {
  TempDir dir;    // the source tree
  TempDir work;   // patches and updates, outside the tree
  mutable int creates = 0;
  explicit Project(const std::map<std::string, std::string>& files);
  std::string operator/(const std::string& rel) const { return dir / rel; }
  void make() const;
  // A unified diff (a/ b/ prefixes) turning `file` into `patched`.
  std::string patch(const std::string& file, const std::string& patched) const;
  // Runs `livesplice create`; returns the update's path (the test fails if create does).
  std::string create(const std::string& file, const std::string& patched) const;
};

// A symbol of a linked file as readelf shows it; locals carry the STT_FILE of their group.
struct Sym {
  std::string name;
  uint64_t value = 0;
  uint64_t size = 0;
  std::string type, bind;
  std::string file;
};
std::vector<Sym> symbols(const std::string& elf);
// Link-time address of the one symbol `name` (from `file` when given); fails the test
// unless there is exactly one.
uint64_t symbol(const std::vector<Sym>& syms, const std::string& name, const std::string& file = {});
std::vector<uint64_t> all_named(const std::vector<Sym>& syms, const std::string& name);
// `puts@plt` and friends, from objdump.
uint64_t plt_entry(const std::string& elf, const std::string& name);
// Offset of the dynamic relocation of `type` (R_X86_64_GLOB_DAT, R_X86_64_TPOFF64,
// R_X86_64_DTPMOD64…) naming `name`: a GOT slot's link address.
uint64_t got_slot(const std::string& elf, const std::string& type, const std::string& name);
// The x86-64 thread-pointer offset of a TLS symbol of an executable (variant II).
int64_t tp_offset(const std::string& elf, const std::vector<Sym>& syms, const std::string& name);
uint64_t first_load_vaddr(const std::string& elf);

// A program started from the test, ready once it printed its first line. Killed (by its
// pid) and reaped on destruction.
class Program {
 public:
  Program(const std::string& binary, const std::map<std::string, std::string>& env = {});
  ~Program();
  pid_t pid() const { return pid_; }
  // Start address of the mapping at file offset 0 of `path` (load base).
  uint64_t base(const std::string& path) const;
  std::vector<ls::TargetRange> exec_ranges(const std::string& path) const;

 private:
  pid_t pid_ = -1;
};

class ProcessMemory : public ls::match::CodeSource {
 public:
  explicit ProcessMemory(pid_t pid);
  ~ProcessMemory() override;
  ls::Status read(ls::TargetAddr at, std::span<uint8_t> out) const override;

 private:
  int fd_ = -1;
};

// A linked (non-PIE) file's bytes at their link addresses, per PT_LOAD.
class FileImage : public ls::match::CodeSource {
 public:
  explicit FileImage(const std::string& path);
  ls::Status read(ls::TargetAddr at, std::span<uint8_t> out) const override;
  std::vector<ls::TargetRange> exec_ranges() const;

 private:
  struct Segment {
    uint64_t vaddr, filesz, offset;
    bool exec;
  };
  std::vector<uint8_t> bytes_;
  std::vector<Segment> segments_;
};

// A file image with some bytes replaced, as the target would have rewritten them
// (alternatives, jump labels).
class Rewritten : public ls::match::CodeSource {
 public:
  explicit Rewritten(const FileImage& file) : file_(file) {}
  void put(uint64_t at, std::vector<uint8_t> b) { over_[at] = std::move(b); }
  ls::Status read(ls::TargetAddr at, std::span<uint8_t> out) const override;

 private:
  const FileImage& file_;
  std::map<uint64_t, std::vector<uint8_t>> over_;
};

// The update's manifest and the requests for every function with pre code, candidates
// from `syms` (every symbol of that name, shifted by `bias`: the matcher must decide).
nlohmann::ordered_json manifest(const std::string& update);
struct Requests {
  std::vector<ls::match::Request> list;
  std::vector<std::string> names;
};
Requests requests(const std::string& update, const std::vector<Sym>& syms, int64_t bias,
                  const std::vector<ls::TargetRange>& search = {}, bool with_candidates = true);
// The update symbol index of run symbol `name` (and source file, for locals).
uint32_t run_symbol(const std::string& update, const std::string& name, const std::string& source = {});

// A context that prints nothing.
ls::Context quiet_context();

// A project (with a work.c defining `work`) built, an update that turns work.c into
// `work_post`, its requests with candidates from the linked `app`, and `work` among them.
struct BuiltWork {
  Project p;
  std::string update, app;
  std::vector<Sym> syms;
  Requests r;
  size_t work = 0;         // index of work's request
  uint64_t work_at = 0;    // its link address
  BuiltWork(const std::map<std::string, std::string>& files, const std::string& work_post);
};
// The index of the request for function `name`; fails the test when there is none.
size_t index_of(const Requests& r, const std::string& name);
// The resolution of (run symbol, view); fails the test when there is none (resolved()
// then gives a null address, resolution() throws).
ls::TargetAddr resolved(const ls::match::Match& m, uint32_t sym, ls::View view);
const ls::match::Resolution& resolution(const ls::match::Match& m, uint32_t sym, ls::View view);

}  // namespace mt
