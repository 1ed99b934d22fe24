// An update file as everything after create sees it: the ELF object (pre and post
// sections with their relocations) plus the manifest, digested into records. The one
// reader of the format: apply (both targets), the matcher, the loader, the kernel
// module writer and the tools take a Contents, never the manifest's JSON or section
// names. Target independent.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "elf/object.h"
#include "update/manifest.h"

namespace ls::update {

struct FunctionPatch {
  std::string name;
  std::string object;          // the object it was compiled into, relative to the build
  std::string source;
  // Basenames of every executable / library its object was linked into, in manifest
  // order: the same object may sit in several binaries (a program and its library).
  std::vector<std::string> targets;
  UnitStatus status = UnitStatus::Changed;
  bool local = false;
  bool replace = false;        // gets a trampoline
  uint32_t pre_section = 0;    // section index in the update file (0: none)
  uint32_t post_section = 0;
  uint32_t post_symbol = 0;    // symbol index of the new code in the update file
  uint64_t pre_size = 0;
  uint64_t post_size = 0;
  std::string label() const;   // "server.o:handle_get"
};

struct RunSymbol {
  uint32_t index = 0;
  std::string name;
  bool local = false;
  bool section = false;        // an anonymous section left behind, not a named symbol
  bool hidden = false;         // a global of hidden visibility: a local of its own binary
  std::string object;          // file-local ones: the object it is local to ("" for globals)
  std::string source;          //   and its source file
  std::vector<std::string> targets;   // file-local ones: the binaries that object is in
};

// A hook of the patch (include/livesplice/patch.h): new code run in the target at one
// point of apply or undo, in manifest order within its kind.
struct HookPatch {
  HookKind kind = HookKind::Apply;
  std::string name;            // the author's function
  std::string object;
  uint32_t post_symbol = 0;    // the function run, in the update file
  std::string label() const;   // "apply hook fix.o:fix_counts"
};

struct Contents {
  elf::Object file;
  std::string id;              // FNV-1a of the file's bytes, hex
  std::vector<FunctionPatch> functions;
  std::vector<RunSymbol> run_symbols;    // by index
  std::vector<uint32_t> post_sections;   // to load, in file order
  std::vector<HookPatch> hooks;
  std::string patch_name;
  std::string patch_text;
  std::vector<std::string> targets;      // basenames
  // Kernel updates only: the release (uname -r) they are for, and the kernel tables
  // they carry (role "special": section index, the table's own name such as
  // "__bug_table").
  std::string kernel_release;
  std::vector<std::pair<uint32_t, std::string>> special_sections;
  Manifest manifest;           // validated; its digest verified (manifest.h)

  // Throws ls::Error for anything that is not a readable update: a file whose digest
  // does not match, a manifest that breaks the schema.
  static Contents load(const std::string& path);
  // The same for a file already read through the ELF layer.
  static Contents from(elf::Object file);
  // An object laid out as an update but not sealed by the writer: the hand-made objects
  // of tests and tools. A manifest, when it has one, is read through the same schema
  // (an error is ls::Error) but its digest is not checked; without one there are no
  // functions and no run symbols. Its post sections are those named so
  // (`.livesplice.post.*`, allocated), since a hand-written manifest need not list them.
  static Contents unsealed(elf::Object file);
  // The manifest's entry for update symbol `index`, or nullptr (not a run symbol).
  const RunSymbol* run_symbol(uint32_t index) const;

 private:
  static Contents described(elf::Object file, Manifest manifest);
};

}  // namespace ls::update
