// Memory livesplice maps into a target: preferably memfd-backed regions, so that each is
// named in /proc/PID/maps ("/memfd:livesplice:3f2a9c01 (deleted)") and its contents can
// be written from our side through the file; anonymous mappings written through
// /proc/PID/mem where the target's seccomp filter refuses memfd_create.
//
// Mapping needs system calls made by the target, one batch of them — memfd_create, mmap
// at a chosen address (MAP_FIXED_NOREPLACE: never over something that appeared
// meanwhile), mprotect and close; or only mmap — made by a thread livesplice creates
// and parks in the target for the batch (parked.h), one thread of the program lent for
// the clone only; always inside a guardian child (guardian.h), so that our death never
// leaves a thread mid-sequence: unmap_regions makes its own, map() runs in its caller's.
//
// What is hard is that the lent thread is a thread of the program, stopped while it
// makes our calls, and the calls run under its seccomp filters:
//  - The thread is the one that woke least over a short look (not the one serving), and
//    it runs at the stop's real-time priority (scheduling.h), so that it is kept from
//    running no longer than the splice's own stop; the time is reported. Where the
//    target cannot have a parked thread (parked.h) it makes the whole batch.
//  - Every call of a way is evaluated against the thread's filters (seccomp.h) before the
//    first is made; a way with a refused call is not started, and when every way is
//    refused the map fails with Exit::Unsafe naming the call and the verdict. No call
//    asks for a mapping both writable and executable, or adds PROT_EXEC to one.
// RegionSet unmaps everything it mapped unless commit() is called, so a failed apply
// leaves no trace.
#pragma once

#include <sys/types.h>

#include <span>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/result.h"
#include "process/ledger.h"
#include "process/target.h"

namespace ls::proc {

struct RegionRequest {
  std::string name;            // the memfd's name ("livesplice:3f2a9c01")
  TargetAddr at;               // page aligned
  uint64_t size = 0;           // bytes; rounded up to pages
  uint64_t exec_size = 0;      // leading bytes mapped read+exec; the rest read+write
  bool readonly = false;       // all read-only (the ledger)
  std::span<const uint8_t> contents;   // its first bytes, written from our side while mapping
};

// What borrowing a thread cost the target: which thread of the program, for how many
// calls, kept from running for how long (first interrupt to resume); and the calls made
// by the thread livesplice parked in it (parked.h), and how long that one lived, which
// kept no thread of the program from running.
struct Borrow {
  pid_t tid = 0;
  int calls = 0;
  double us = 0;
  int parked_calls = 0;
  double parked_us = 0;
};

class RegionSet {
 public:
  explicit RegionSet(const Target& target) : target_(target) {}
  ~RegionSet();
  RegionSet(const RegionSet&) = delete;
  RegionSet& operator=(const RegionSet&) = delete;

  // Maps every request, with one batch of calls. On failure nothing stays mapped.
  // Call it inside a guardian (guardian.h): our death must not strand a thread mid-batch.
  // `then`: what a later map() of the same command will ask for (apply maps the ledger
  // copy before recording the code it maps next). No way that the target's filters
  // would refuse for them is taken, so that a command refused maps nothing at all.
  Status map(const std::vector<RegionRequest>& requests, const std::vector<RegionRequest>& then = {});
  const std::vector<Region>& regions() const { return regions_; }
  // The thread map() borrowed.
  const Borrow& borrow() const { return borrow_; }
  void commit() { committed_ = true; }

 private:
  const Target& target_;
  std::vector<Region> regions_;
  Borrow borrow_;
  bool committed_ = false;
};

// The thread of `pid` to borrow for calls made in the target: the one whose own call
// would not end early and that wakes least often (regions.cc).
pid_t quietest_thread(pid_t pid);

// Unmaps regions of an earlier apply (undo), with one batch of calls, as map() does.
Result<Borrow> unmap_regions(const Target& target, const std::vector<Region>& regions);

}  // namespace ls::proc
