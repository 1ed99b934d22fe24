// The update file as its readers may trust it: the digest checked, the manifest checked
// against its schema and against the ELF file it sits in.
//
// What is hard is that an update comes from outside (a file copied between machines, a
// fleet's distribution channel) and one flipped bit in new code kills the target. So
// nothing is read before the digest proves the file is the one create wrote: SHA-256
// over the whole file with the digest's own bytes zeroed, which covers the ELF headers,
// the manifest, the new code, and the pre code of every replaced function (the pre
// objects' identity: run-pre matching compares the target with those bytes). Then the
// manifest is read field by field in one place (here): every field known, every
// required one present with its JSON type, every index in range, every enumerated
// value one of its values; anything else is an error naming the file and the JSON path.
// Readers take the Manifest, never the JSON text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "elf/object.h"
#include "update/format.h"

namespace ls::update {

struct ManifestTarget {
  std::string name, path, kind;
  std::string build_id;            // "" for null: the one to match
  std::string original_build_id;   // "" for null: the binary did not exist before create
  std::string pre_build_id;
};

struct ManifestObject {
  std::string path, source, pre;
  std::vector<size_t> targets;     // indices into Manifest::targets
  std::vector<std::string> notes;
};

// What create found for a unit: the differ's Status without "same" (units that did not
// change are not listed). The format's own enum: this layer does not know the differ.
enum class UnitStatus { Changed, New, Removed };
std::string_view to_string(UnitStatus s);   // "changed", "new", "removed": the manifest's words

// What functions and data entries share: a unit of the differ (differ.h).
struct ManifestUnit {
  std::string name, reason;
  UnitStatus status = UnitStatus::Changed;
  size_t object = 0;
  bool local = false;
  uint32_t post_section = 0, post_symbol = 0;   // 0 for null
};

struct ManifestFunction : ManifestUnit {
  std::string parent;              // "" for null
  bool replace = false;
  std::optional<uint64_t> pre_size, post_size;
  uint32_t pre_section = 0, pre_symbol = 0;     // 0 for null
};

struct ManifestDatum : ManifestUnit {
  bool carried = false;
  uint64_t size = 0;
};

// When a hook runs (include/livesplice/patch.h).
enum class HookKind { PreApply, Apply, PostApply, PreUndo, Undo, PostUndo };
std::string_view to_string(HookKind k);   // "pre_apply", ...: the manifest's words

struct ManifestHook {
  HookKind kind = HookKind::Apply;
  std::string name, function;
  size_t object = 0;
  uint32_t post_symbol = 0;
};

struct ManifestSection {
  uint32_t index = 0;
  std::string name, role, original;   // role "pre", "post" or "special"
  size_t object = 0;
  std::optional<uint64_t> entries;    // special sections: how many table entries
};

struct ManifestRunSymbol {
  uint32_t index = 0;
  std::string name;
  bool local = false, section = false, hidden = false;
  std::optional<size_t> object;   // file-local ones
  std::string source;
};

struct Manifest {
  std::string path;                // the update file, for messages
  std::string digest;              // "sha256:…" as verified ("" when read without it)
  std::string livesplice_version, created, arch, build_system;
  std::string label;               // "" when the update has none (create --label)
  bool kernel = false;             // a kernel update: the three below are set
  std::string kernel_release, kernel_version;
  uint32_t kernel_module_section = 0;   // 0: none
  std::vector<ManifestTarget> targets;
  std::string patch_name, patch_text;
  std::vector<std::string> patch_files, sources;
  std::vector<ManifestObject> objects;
  std::vector<ManifestFunction> functions;
  std::vector<ManifestDatum> data;
  std::vector<ManifestSection> sections;
  std::vector<ManifestRunSymbol> run_symbols;
  std::vector<ManifestHook> hooks;
  struct Ignored {
    std::string name, reason;
    size_t object = 0;
  };
  std::vector<Ignored> ignored;    // LIVESPLICE_IGNORE_FUNCTION
  uint64_t functions_changed = 0, functions_new = 0, data_new = 0;
  nlohmann::ordered_json json;     // the document itself, validated (info --json)

  const ManifestRunSymbol* run_symbol(uint32_t index) const;
};

// An update file through the ELF layer's validation; a file it refuses is "not a
// usable livesplice update" (ls::Error, exit 1).
elf::Object load_file(const std::string& path);

// The file's digest, checked: returns "sha256:…". Throws ls::Error (exit 1) when the
// file has no digest section or its contents do not match it (corrupted or modified
// since create wrote it), showing both values.
std::string verify_digest(const elf::Object& file);
// Computes the digest of an update image and writes it into its digest section (the
// writer's last step; tests that forge a manifest re-seal with it). Throws ls::Error if
// the image has no digest section of the right size.
void seal(std::vector<uint8_t>& image, const std::string& name);

// The manifest of `file`, checked against the schema and the file (see the top).
// Does not check the digest. Throws ls::Error (exit 1) naming the file and the field;
// a format version other than this build's is refused saying both versions.
Manifest parse_manifest(const elf::Object& file);
// verify_digest, then parse_manifest: what every reader of an update file calls.
Manifest read_manifest(const elf::Object& file);
// The same for a file on disk, loaded through load_file. Throws ls::Error (exit 1) for
// a file that is not an update, a corrupted or modified one, a format version this
// build does not read, or a manifest that breaks the schema.
Manifest read_manifest(const std::string& path);

}  // namespace ls::update
