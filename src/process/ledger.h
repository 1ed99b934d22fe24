// The ledger: what livesplice has done to a process.
//
// What is hard is that the process may be hostile. A target is often the very program
// an attacker controls (that is why it needs a fix), and livesplice runs as root and
// writes into it. So the authoritative ledger is kept out of its reach: a root-owned
// record per process, keyed by PID and start time (a reused PID has another start time),
// in a directory only root can write (/run/livesplice/processes: per-process state
// lives as long as the machine is up, no longer). The process carries a copy (a memfd
// named "livesplice-ledger", mapped read-only; visible in /proc/PID/maps, readable from
// any shell) which is a claim to verify, never a source: on every read it must be the
// one mapping of that name, at the recorded place, of the recorded inode, holding
// exactly the recorded bytes. Anything else — a copy made writable and changed, a
// lookalike mapping, a copy without a record — is refused as tampering before anything
// is written. Every size read from the target is bounded by the record, never by what
// the target shows; a lookalike is never read at all.
//
// In a target whose seccomp filter refuses memfd_create the copy is of the anonymous
// kind (regions.h): an anonymous read-only private mapping of kLedgerSize bytes, written
// and read through /proc/PID/mem. It has no name, so it is never looked for: the record
// says which kind the copy is and where, and the mapping there must be anonymous,
// private, read-only and exactly the recorded range, its text exactly the recorded
// text. (An anonymous copy mapped by a command killed before its first commit has no
// record and stays unused; the next apply maps another.)
//
// Crash consistency: a record is replaced whole (written aside, then renamed), and each
// entry carries a state, so that a command killed anywhere leaves a state the next one
// recognises and repairs (undo.h): pending (recorded before its jumps are written),
// applied, removing (its jumps are gone; its code is being unmapped).
//
// Record and copy are the same text: a magic line, then JSON, one object per applied
// update with its trampoline sites (address, original bytes, jump), the regions it
// mapped, its functions and its patch text. parse_ledger() accepts only what the tool
// itself writes: every length fixed by the architecture, every jump the one the host's
// arch::Target::jump makes for its site and target, every target inside the update's
// own code.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/addr.h"
#include "base/result.h"
#include "process/maps.h"

namespace ls::proc {

inline constexpr const char* kLedgerName = "livesplice-ledger";
inline constexpr uint64_t kLedgerSize = 1 << 20;   // the copy's mapping; bounds the text

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

// A hook of the update (include/livesplice/patch.h) that undo runs: where its function
// was linked. Applying runs its own hooks from the update file; undo has only this.
struct LedgerHook {
  std::string kind;              // "pre_undo", "undo" or "post_undo"
  std::string label;             // "undo hook fix.o:restore_counts"
  TargetAddr at;                 // inside the update's own regions
};

// How the copy in the process is mapped (regions.h): a memfd, or anonymous memory.
enum class CopyKind { Memfd, Anonymous };

enum class EntryState {
  Pending,    // recorded before the stop; its jumps may not be written yet
  Applied,    // its jumps are in place
  Removing,   // its jumps are gone (undone or never written); its regions go next
};
const char* to_string(EntryState s);

// The new code's unwind table registered in the target (frames.h): the table and the
// unwinder's storage for it, both inside the entry's regions.
struct UnwindTable {
  TargetAddr eh_frame;
  TargetAddr object;
};

struct LedgerEntry {
  std::string id;                // content hash of the update file
  std::string update_path;       // as given to apply
  std::string applied_at;        // ISO 8601, UTC
  double pause_us = 0;
  EntryState state = EntryState::Pending;
  std::vector<Trampoline> trampolines;
  std::vector<Region> regions;
  std::vector<std::string> functions;   // replaced, "object.o:name"
  std::vector<std::string> new_functions;
  std::vector<LedgerHook> hooks;        // undo's, in the order they run within a kind
  std::vector<UnwindTable> unwind;      // registered once the code is mapped; absent before
  std::string patch_name;
  std::string patch_text;
};

// The ledger text as written (magic line + JSON), and back. parse_ledger accepts any
// bytes and either returns entries that pass check_entry or says what is wrong; it is
// the part the fuzzer exercises (tests/fuzz/ledger_fuzzer.cc).
std::string serialize_ledger(const std::vector<LedgerEntry>& entries);
Result<std::vector<LedgerEntry>> parse_ledger(std::string_view text);
// What the tool itself would have written: lengths fixed by the architecture, each jump
// the one the host's arch::Target::jump makes from its site to its target, targets
// inside the update's code.
Status check_entry(const LedgerEntry& e);
// Whether region `r` of an entry is mapped as livesplice mapped it: a memfd's mappings
// named `r.name` from its start, or (`anonymous:` names) private anonymous memory.
bool mapped_as_recorded(const std::vector<Mapping>& maps, const Region& r);

// PID plus start time (proc(5) field 22): one process, even after its PID is reused.
struct ProcessKey {
  pid_t pid = 0;
  uint64_t start_time = 0;
};
Result<ProcessKey> process_key(pid_t pid);

// The live processes that have a record (something livesplice applied there, or a
// leftover to repair): what the update manager looks at to undo, without scanning the
// machine. A record of a process that is gone (or whose PID was reused) is not listed.
Result<std::vector<ProcessKey>> recorded_processes();

// Only one livesplice command works on a process at a time. The lock (flock on a file
// beside the record) is inherited by guardian children, so that the next command waits
// until a killed command's guardian has finished; it then finds no command under way,
// and whatever state is left is a leftover to repair. Released on destruction.
class LedgerLock {
 public:
  // Waits up to `wait_s` seconds; an error naming the process when still held.
  static Result<LedgerLock> take(const ProcessKey& key, bool exclusive, int wait_s);
  LedgerLock(LedgerLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  LedgerLock& operator=(LedgerLock&&) = delete;
  ~LedgerLock();

 private:
  explicit LedgerLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

class Ledger {
 public:
  // The record of process `key`, verified against the copy in the process (see the top
  // of this file) as `maps` show it; an empty ledger when neither exists. Refusals of
  // tampering are Exit::Unsafe.
  static Result<Ledger> read(const ProcessKey& key, const std::vector<Mapping>& maps);

  const ProcessKey& key() const { return key_; }
  bool exists() const { return copy_.has_value(); }
  const std::optional<TargetRange>& region() const { return copy_; }
  // The copy's mapping, on first use (apply maps it), and how it was mapped.
  void attach_region(TargetRange r, CopyKind kind) {
    copy_ = r;
    copy_kind_ = kind;
  }
  std::vector<LedgerEntry>& entries() { return entries_; }
  const std::vector<LedgerEntry>& entries() const { return entries_; }
  const LedgerEntry* find(const std::string& id_prefix) const;
  LedgerEntry* entry(const std::string& id);

  // Replaces the record (atomically), then rewrites the copy in the process whose
  // ledger this is (key()). Writes only into the memfd the record names (checked by
  // inode on the open file), or the anonymous mapping the record names (checked in
  // /proc/PID/maps first).
  Status commit();

  // What reading found and put right on the way (a copy one commit behind), for the
  // command to say.
  const std::vector<std::string>& notes() const { return notes_; }

  nlohmann::json to_json(bool with_patch) const;

 private:
  static Status adopt_empty_copy(pid_t pid, const std::vector<Mapping>& maps, Ledger& l);

  ProcessKey key_;
  std::optional<TargetRange> copy_;
  uint64_t copy_inode_ = 0;
  CopyKind copy_kind_ = CopyKind::Memfd;
  std::string text_;               // as last committed
  std::string previous_text_;      // the commit before: what a copy one behind holds
  std::vector<LedgerEntry> entries_;
  std::vector<std::string> notes_;
};

}  // namespace ls::proc
