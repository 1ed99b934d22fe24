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
//        .livesplice.post.<section>       post code, new data, literals, jump tables;
//                                         process updates also the carried code's LSDAs
//                                         (.gcc_except_table.f) and DW.ref words, and
//        .livesplice.post.eh_frame        its FDEs with their CIEs (below, kEhFrame)
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
// Manifest (format 3; 2 had no hooks nor ignored, 1 no digest). Indices into the file's sections/symbols are
// plain numbers; "object" and "targets" index the lists of the same name; absent values
// are null. Readers accept exactly these fields (manifest.h): a missing or unknown one
// is an error, never a default.
//   format "livesplice-update", version 2, livesplice_version, created (UTC, ISO 8601;
//     SOURCE_DATE_EPOCH honoured), arch "x86_64", build_system
//   label       only when `create --label` gave one: the version the fix brings, as its
//               users name it (a package version); the manager shows it as the
//               effective version of what it patches
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
//   hooks[]     {kind ("pre_apply" | "apply" | "post_apply" | "pre_undo" | "undo" |
//                "post_undo"), name (the author's function), object, function (the
//                function run: the wrapper livesplice/patch.h makes, listed in
//                functions[] as new), post_symbol (its symbol)}: the patch's hooks, in
//                the order they run within a kind; each returns int (nonzero from a
//                pre_* hook refuses the apply or undo)
//   ignored[]   {name, object, reason}: changed functions the patch left out
//               (LIVESPLICE_IGNORE_FUNCTION): the running program keeps them
//   summary     {functions_changed, functions_new, data_new}
//   kernel      {release, version}: only in kernel updates. Their targets have kind
//               "kernel" (name "vmlinux") or "kernel-module" (name: the module); their
//               sections[] also hold role "special" entries, one per kernel table
//               (`.livesplice.post__ex_table`...: the entries of carried code, compacted,
//               with "entries": how many), and `module_section`: the index of
//               `.livesplice.kernel_module`, the skeleton module (a .ko built against
//               the kernel's headers) whose identity the new code's module takes
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "livesplice_version.h"   // generated from CMake's project version

namespace ls::update {

inline constexpr int kFormatVersion = 3;
inline constexpr std::string_view kFormatName = "livesplice-update";
inline constexpr std::string_view kToolVersion = LIVESPLICE_VERSION;

inline constexpr std::string_view kManifestSection = ".livesplice.manifest";
inline constexpr std::string_view kDigestSection = ".livesplice.digest";
inline constexpr std::string_view kDigestAlgorithm = "sha256";
// The digest section's contents: "sha256:" and 64 hex digits.
inline constexpr size_t kDigestSize = 7 + 64;
inline constexpr std::string_view kKernelModuleSection = ".livesplice.kernel_module";

// A carried section is named by its role's prefix and its name in the object it came
// from: `.livesplice.post` + `.text.f`. Sections of an object start with a dot, the
// kernel's tables do not (`.livesplice.post__ex_table`), so a prefix followed by a dot
// is code, data or a literal pool, and one followed by anything else a kernel table.
inline constexpr std::string_view kPrePrefix = ".livesplice.pre";
inline constexpr std::string_view kPostPrefix = ".livesplice.post";

// The new code's unwind tables (process updates; eh_frame.h): `.livesplice.post.eh_frame`
// holds the FDEs of the carried code of one object (role "post", original ".eh_frame"),
// and the NOBITS `.livesplice.post.eh_frame.object` after it the storage the target's
// unwinder keeps for that table while it is registered (libgcc's `struct object`).
inline constexpr std::string_view kEhFrame = ".eh_frame";
inline constexpr std::string_view kEhFrameObject = ".eh_frame.object";
inline constexpr uint64_t kEhFrameObjectSize = 64;

inline std::string carried_name(std::string_view prefix, std::string_view original) {
  return std::string(prefix) + std::string(original);
}
// Whether `name` is `prefix` + a section of an object (not a kernel table).
inline bool carries_object_section(std::string_view name, std::string_view prefix) {
  return name.size() > prefix.size() && name.starts_with(prefix) && name[prefix.size()] == '.';
}
// The name a carried section had in its object: `name` without `prefix` (unchanged
// when it has none).
inline std::string_view original_name(std::string_view name, std::string_view prefix) {
  return name.starts_with(prefix) ? name.substr(prefix.size()) : name;
}

}  // namespace ls::update
