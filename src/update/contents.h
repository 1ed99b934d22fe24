// An update file as the apply side sees it: the ELF object (pre and post sections with
// their relocations) plus the manifest, digested into the records apply needs. Target
// independent: the process target uses it now, the kernel target later.
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
  std::string status;          // "changed" / "new" / "removed"
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

struct Contents {
  elf::Object file;
  std::string id;              // FNV-1a of the file's bytes, hex
  std::vector<FunctionPatch> functions;
  std::vector<RunSymbol> run_symbols;
  std::vector<uint32_t> post_sections;   // to load, in file order
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
  const RunSymbol* run_symbol(uint32_t index) const;
};

}  // namespace ls::update
