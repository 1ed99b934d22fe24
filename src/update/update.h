// The update file: one ELF relocatable object holding the post code of changed and new
// functions, the pre code of every replaced function (for run-pre matching), their
// relocations, and a JSON manifest in section `.livesplice.manifest`.
//
// Layout (section names say what each is, so `readelf -S` reads as a table of contents):
//   [1]  .livesplice.manifest             JSON, schema below
//   per rebuilt object, in manifest order:
//        .livesplice.pre.<section>        pre code of a replaced function (not SHF_ALLOC:
//                                         read by the matcher, never loaded)
//        .rela.livesplice.pre.<section>   its relocations: against run symbols, or against
//                                         a carried pre literal pool (below)
//        .livesplice.pre.<pool>           a literal pool pre code refers to
//                                         (.rodata.f.str1.1, .rodata.cst8; SHF_MERGE kept,
//                                         not SHF_ALLOC): the matcher compares the running
//                                         program's literal at each site with it
//        .livesplice.pre<table>           kernel updates: the entries of .altinstructions
//                                         (+ .altinstr_replacement pieces) and __jump_table
//                                         owned by that pre code, with their relocations
//                                         (role "pre"): where the kernel rewrites the code
//                                         matching compares (Target::kernel_table_sites)
//        .livesplice.post.<section>       post code, new data, literals, jump tables
//        .rela.livesplice.post.<section>  against post sections when the target travels
//                                         in the update, run symbols otherwise
//   .livesplice.kernel_module             kernel updates: the skeleton module (below)
//   .livesplice.digest                    "sha256:" + 64 hex digits: SHA-256 of the whole
//                                         file with these 71 bytes read as zeros. Every
//                                         reader checks it first (manifest.h)
//   .symtab .strtab .shstrtab
// A run symbol is an undefined symbol naming something the running program already
// has. ELF has no undefined local symbols, so every run symbol is global in the symbol
// table; the manifest's "run_symbols" says which are really file-local and in which
// object, since static names repeat across files.
//
// Manifest (format 2; 1 had no digest). Indices into the file's sections/symbols are
// plain numbers; "object" and "targets" index the lists of the same name; absent values
// are null. Readers accept exactly these fields (manifest.h): a missing or unknown one
// is an error, never a default.
//   format "livesplice-update", version 2, livesplice_version, created (UTC, ISO 8601;
//     SOURCE_DATE_EPOCH honoured), arch "x86_64", build_system
//   targets[]   {name, path (relative to the build directory), kind ("executable",
//                "shared-library", "relocatable"), build_id (match this one),
//                original_build_id (before create; null if it did not exist),
//                pre_build_id}
//   patch       {name, files[] (relative to the source directory), text}
//   sources[]   source files of the rebuilt objects
//   objects[]   {path, source, targets[], pre ("pre-build" | "recompiled" | "none"),
//                notes[]}
//   functions[] {name, object, status ("changed" | "new" | "removed"), reason, local,
//                parent (the function a .cold/.part piece belongs to), replace (gets a
//                trampoline), pre_size, post_size, pre_section, post_section,
//                pre_symbol, post_symbol}
//   data[]      {name, object, status, reason, local, size, carried, post_section,
//                post_symbol}
//   sections[]  {index, name, role ("pre" | "post"; carried pre literal pools are
//                "pre"), object, original (its name in the object)}
//   run_symbols[] {index, name, local, kind ("symbol" | "section"), object, source
//                (object and source only for local ones), hidden (true only for a
//                global of hidden visibility, which its binary holds as a local)}
//   summary     {functions_changed, functions_new, data_new}
//   kernel      {release, version}: only in kernel updates. Their targets have kind
//               "kernel" (name "vmlinux") or "kernel-module" (name: the module); their
//               sections[] also hold role "special" entries, one per kernel table
//               (`.livesplice.post__ex_table`...: the entries of carried code, compacted,
//               with "entries": how many), and `module_section`: the index of
//               `.livesplice.kernel_module`, the skeleton module (a .ko built against
//               the kernel's headers) whose identity the new code's module takes
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/diag.h"
#include "differ/differ.h"
#include "elf/object.h"
#include "livesplice_version.h"   // generated from CMake's project version
#include "update/manifest.h"

namespace ls::update {

inline constexpr int kFormatVersion = 2;
inline constexpr std::string_view kFormatName = "livesplice-update";
inline constexpr std::string_view kManifestSection = ".livesplice.manifest";
inline constexpr std::string_view kToolVersion = LIVESPLICE_VERSION;

// An executable or shared library that rebuilt objects are linked into.
struct Target {
  std::string name;                 // basename
  std::string path;                 // relative to the build directory
  std::string kind;                 // "executable", "shared-library", "relocatable"
  std::string build_id;             // the one to match: the binary before create ran when
                                    // there was one (what users run), else the pre build's
  std::string original_build_id;    // "" when the binary did not exist before create
  std::string pre_build_id;         // as the pre build produced it
};

// One rebuilt object and its diff. The objects must outlive write_update().
struct Unit {
  const elf::Object* pre = nullptr;
  const elf::Object* post = nullptr;
  const diff::ObjectDiff* diff = nullptr;
  std::string path;                 // the object, relative to the build directory
  std::string source;               // its source file, relative to the source directory
  std::vector<size_t> targets;      // indices into UpdateInput::targets
  std::string pre_origin;           // "pre-build", "recompiled" or "none" (object is new)
};

struct UpdateInput {
  std::vector<Target> targets;
  std::vector<Unit> units;
  std::string patch_name;           // file name of the patch
  std::string patch_text;
  std::vector<std::string> patch_files;
  std::string build_system;
  // Kernel updates only ("" otherwise): the release (uname -r) and source version the
  // update is for; each target is then "kernel" (vmlinux) or "kernel-module" (name =
  // the module), and kernel tables travel as role "special" sections.
  std::string kernel_release;
  std::string kernel_version;
  // Kernel updates: the skeleton module built against the kernel's headers (a .ko),
  // carried whole in `.livesplice.kernel_module`; apply --kernel takes the new code's
  // module identity from it (src/kernel/module.h).
  std::vector<uint8_t> kernel_module;
};

struct WriteSummary {
  size_t bytes = 0;
  size_t functions_changed = 0;     // replaced functions (not counting .cold pieces)
  size_t functions_new = 0;
  size_t data_new = 0;
  size_t pre_sections = 0;
  size_t post_sections = 0;
  size_t run_symbols = 0;
  size_t relocations = 0;
};

// Builds the update and writes it to `path` (through a temporary file renamed into
// place, so a failure leaves no half-written update). Throws ls::Error.
WriteSummary write_update(Context& ctx, const UpdateInput& input, const std::string& path);

// Loads an update through the ELF layer, checks its digest and returns its validated
// manifest (manifest.h). Throws ls::Error (exit 1) for a file that is not an update, a
// corrupted or modified one, a format version this build does not read, or a manifest
// that breaks the schema.
Manifest read_manifest(const std::string& path);

// `livesplice info UPDATE [--json]`; returns the exit code.
Exit run_info(Context& ctx, const std::string& path);

}  // namespace ls::update
