// Writing an update file (the format: format.h) from create's diffs: which sections and
// symbols it carries, laid out by elf/writer.h, its manifest, sealed with its digest.
// The writer is the only part of src/update that knows the differ; the readers
// (manifest.h, contents.h, reader.h) know only the ELF layer.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/diag.h"
#include "differ/differ.h"
#include "elf/object.h"
#include "update/format.h"

namespace ls::update {

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

// Where a unit's pre object came from: this run's pre build, recompiled from the
// source because the tree was built before create (without function sections), or
// nowhere (the patch adds the source: diffed against an empty object).
enum class PreOrigin { PreBuild, Recompiled, None };
std::string_view to_string(PreOrigin o);   // "pre-build", "recompiled", "none"

// One rebuilt object and its diff. The objects must outlive write_update().
struct Unit {
  const elf::Object* pre = nullptr;
  const elf::Object* post = nullptr;
  const diff::ObjectDiff* diff = nullptr;
  std::string path;                 // the object, relative to the build directory
  std::string source;               // its source file, relative to the source directory
  std::vector<size_t> targets;      // indices into UpdateInput::targets
  PreOrigin pre_origin = PreOrigin::PreBuild;
};

struct UpdateInput {
  std::vector<Target> targets;
  std::vector<Unit> units;
  std::string patch_name;           // file name of the patch
  std::string patch_text;
  std::vector<std::string> patch_files;
  std::string build_system;
  std::string label;                // create --label; "" for none (the field is left out)
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

}  // namespace ls::update
