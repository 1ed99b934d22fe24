// The steps both create pipelines share: create.cc (a program's tree) and
// kernel_create.cc (a kernel's) differ in how they build the pre and post objects and
// in what an update names as its targets; from the built pairs on they run the same
// tail — diff every pair, refuse an unsafe change, say that nothing changed, write the
// update — and both keep their work in one private directory and die of Ctrl-C only
// after their guards have put the tree back.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/diag.h"
#include "base/subprocess.h"
#include "differ/differ.h"
#include "elf/object.h"
#include "update/writer.h"

namespace ls::create {

// A private directory under $TMPDIR, `PREFIX.XXXXXX` (its path canonical), removed with
// everything in it by the destructor, unless kept: then its path is told instead.
class WorkDir {
 public:
  WorkDir(Context& ctx, std::string_view prefix, bool keep);
  ~WorkDir();
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  const std::string& dir() const { return dir_; }

 private:
  Context& ctx_;
  bool keep_;
  std::string dir_;
};

// Runs `pipeline` with SIGINT, SIGTERM and SIGHUP turned into an Interrupted exception
// (SignalGuard, base/subprocess.h). When one comes, unwinding has run the pipeline's
// guards, so the tree is back (anything that could not be restored was named): this
// says so ("livesplice: interrupted; the TREE was restored") and dies of the signal,
// as a shell expects.
Exit run_interruptible(Context& ctx, std::string_view tree, const std::function<Exit(const SignalGuard&)>& pipeline);

// One object built before and after the patch.
struct BuiltPair {
  std::string pre_path;
  std::string post_path;
};

// The pairs loaded and diffed, in order. Holds the objects an update's units point into.
struct DiffedPairs {
  std::deque<elf::Object> objects;   // stable addresses
  std::vector<const elf::Object*> pre, post;
  std::vector<diff::ObjectDiff> diffs;

  size_t size() const { return diffs.size(); }
  bool changed() const;   // some function changed or is new, in some pair
};

// Loads and diffs every pair; stops between pairs if a signal is pending.
DiffedPairs diff_pairs(Context& ctx, const std::vector<BuiltPair>& pairs, const SignalGuard& signals);

// Throws Error(Exit::Unsafe), "PATCH cannot be applied to a running RUNNER safely:" and
// one line `  LABEL: symbol: reason` per unsafe change of each pair `counts` admits
// (`labels` names the pairs). Returns when there is none.
void refuse_unsafe(const DiffedPairs& diffed, const std::vector<std::string>& labels,
                   const std::function<bool(size_t)>& counts, std::string_view patch, std::string_view runner);

// Tells that the patch changes nothing: "livesplice: no change: WHY" and `notes` under it
// (`  note: ...`) on stderr; with --json, {"result": "no-change", "objects_rebuilt": N}
// and the fields of `extra` on stdout. The caller restores the tree and exits with
// Exit::NoChange.
void report_no_change(Context& ctx, std::string_view why, size_t rebuilt, const std::vector<std::string>& notes,
                      const nlohmann::json& extra = nlohmann::json::object());
// The WHY of a no-change with objects rebuilt: "N object(s) rebuilt, no function changed".
std::string nothing_changed(size_t rebuilt);

// "writing OUTPUT", then the update. A signal that came while it was written removes it
// (the user asked to stop) and throws Interrupted.
update::WriteSummary write_update_file(Context& ctx, const update::UpdateInput& in, const std::string& output,
                                       const SignalGuard& signals);

// The summary's opening fields, in the order both pipelines print them:
// result, update, update_bytes.
nlohmann::ordered_json summary_json(const std::string& output, const update::WriteSummary& sum);
// Then its counts: objects_rebuilt, functions_changed, functions_new, data_new.
void add_summary_counts(nlohmann::ordered_json& j, size_t rebuilt, const update::WriteSummary& sum);

// "s" when `n` is not 1: "1 object", "2 objects".
inline const char* plural(size_t n) { return n == 1 ? "" : "s"; }

}  // namespace ls::create
