// The ledger: what livesplice has done to a process, kept inside the process itself.
//
// Why inside: any later `view` or `undo`, from any shell, must see exactly what is
// applied — even if the update files are gone or another machine applied them. The
// ledger is a memfd named "livesplice-ledger" mapped read-only into the target (visible
// in /proc/PID/maps) — or, in a target whose seccomp filter refuses memfd_create, an
// anonymous read-only mapping of kLedgerSize bytes that begins with the ledger's magic
// line (regions.h) — and the tool reads and writes it from outside (the memfd through
// /proc/PID/map_files, the anonymous one through /proc/PID/mem), so the target never
// writes it and a crashed target takes its ledger with it.
//
// Contents: a magic line, then JSON: one record per applied update with the trampoline
// sites (address, original bytes, new bytes), the regions the update mapped, its
// functions and its patch text.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/addr.h"
#include "core/result.h"
#include "process/maps.h"

namespace ls::proc {

inline constexpr const char* kLedgerName = "livesplice-ledger";
inline constexpr uint64_t kLedgerSize = 1 << 20;

struct Trampoline {
  std::string function;          // "object.o:name"
  TargetAddr function_at;        // entry of the replaced code (original or a previous update's)
  TargetAddr site;               // where the jump is written (after endbr64)
  std::vector<uint8_t> original; // bytes the jump overwrote
  std::vector<uint8_t> jump;     // the jump itself
  TargetAddr new_code;           // its target
  uint64_t size = 0;             // of the replaced code, for the safety check
};

struct Region {
  TargetRange range;
  std::string name;              // "/memfd:NAME" as in /proc/PID/maps, or "anonymous:NAME"
};

struct LedgerEntry {
  std::string id;                // content hash of the update file
  std::string update_path;       // as given to apply
  std::string applied_at;        // ISO 8601, UTC
  double pause_us = 0;
  bool pending = false;          // recorded before the stop; cleared once applied
  std::vector<Trampoline> trampolines;
  std::vector<Region> regions;
  std::vector<std::string> functions;   // replaced, "object.o:name"
  std::vector<std::string> new_functions;
  std::string patch_name;
  std::string patch_text;
};

class Ledger {
 public:
  // Reads the ledger of `pid` if it has one; an empty ledger otherwise.
  static Result<Ledger> read(pid_t pid, const std::vector<Mapping>& maps);

  bool exists() const { return region_.has_value(); }
  const std::optional<TargetRange>& region() const { return region_; }
  void attach_region(TargetRange r) { region_ = r; }
  std::vector<LedgerEntry>& entries() { return entries_; }
  const std::vector<LedgerEntry>& entries() const { return entries_; }
  const LedgerEntry* find(const std::string& id_prefix) const;

  // The innermost trampoline currently installed at a function entry, if any: the one
  // whose function_at equals `entry` or chains from it.
  const Trampoline* active_at(TargetAddr site) const;

  // Serialises into the mapped region (must exist).
  Status write(pid_t pid) const;

  nlohmann::json to_json(bool with_patch) const;

 private:
  std::optional<TargetRange> region_;
  std::vector<LedgerEntry> entries_;
};

}  // namespace ls::proc
