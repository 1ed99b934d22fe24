// The livesplice steps the live-process tests are made of: create, apply, view, undo,
// each run on the real binary, each checked for its exit status and the JSON it must
// print, and the whole life of one update in a running program (update_cycle).
//
// Every step throws lsproc::Failure with the command and its output when livesplice
// does not do what it must; tests add their own EXPECTs on top.
#pragma once

#include <string>
#include <vector>

#include "support.h"

namespace lsproc {

// `livesplice create --source SRC --patch PATCH -o OUT EXTRA...`, which must succeed;
// also checks that it left the running program's tree as it was (same binary bytes).
std::string create_update(const std::string& src, const std::string& patch, const std::string& out,
                          const std::vector<std::string>& extra = {});

// `livesplice apply --pid PID UPDATE --json EXTRA...`, which must exit 0 and report
// applied, id, pause_us > 0, attempts >= 1 and replaced functions. Returns its JSON.
Json apply_ok(Program& prog, const std::string& update, const std::vector<std::string>& extra = {});
// The same, expected to exit with `status`; returns the RunResult.
RunResult apply_expect(Program& prog, const std::string& update, int status, const std::vector<std::string>& extra = {});

// `livesplice view --pid PID --json`, which must exit 0 and name the pid; its updates.
Json view_updates(Program& prog);
// The ids in view's order (oldest first).
std::vector<std::string> view_ids(Program& prog);

// `livesplice undo --pid PID ARGS... --json`, which must exit 0; its "undone" list.
Json undo_ok(Program& prog, const std::vector<std::string>& args = {});

// Every replaced function's label ("object.o:name") ends with ":name" for one of names.
bool names_function(const Json& functions, const std::string& name);

// The life of one update in a single-threaded program printing `old_text` before and
// `new_text` after it:
//   wait for old_text → apply → the same process prints new_text, and never old_text
//   after its first new line → view lists exactly this update (id, pause, functions)
//   and its code is mapped → undo → old_text again, never new_text after it → view is
//   empty and the update's code is unmapped.
// `function` is the name of the function the update replaces. Returns apply's JSON.
Json update_cycle(Program& prog, const std::string& update, const std::string& old_text,
                  const std::string& new_text, const std::string& function);

// Checks the process is the one started (same PID, same start time) and is neither
// stopped nor traced; throws otherwise.
void expect_alive_and_running(Program& prog);

// Waits until the main thread of `pid` sits in one of the system calls `nrs`
// (/proc/PID/syscall); throws after `timeout`.
void wait_in_syscall(pid_t pid, const std::vector<long>& nrs, Millis timeout = 5s);

}  // namespace lsproc
