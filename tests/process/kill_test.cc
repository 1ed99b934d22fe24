// The tool killed (SIGKILL: no cleanup of its own) in the middle of an apply. Whatever
// moment it dies at, the target must keep running its code correctly, must not stay
// stopped or traced, and its ledger must tell the truth: the update is either applied
// (and the new code runs), or pending (the apply did not finish; nothing of it runs),
// or absent — and `undo --all` brings the process back to its original code. (A pending
// entry is what an apply killed inside its stop window leaves: its jumps may or may not
// have been written; the process must run one version or the other, not a mixture.)
#include <gtest/gtest.h>

#include <signal.h>

#include <random>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Killed : public PtraceTest {
 protected:
  // Starts `livesplice apply --pid PID UPDATE EXTRA...` without waiting for it.
  std::unique_ptr<Program> start_apply(const Program& target, const std::string& update,
                                       const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv{livesplice(), "apply", "--pid", std::to_string(target.pid()), update};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<Program>(argv);
  }

  // After the tool died: the target runs, untraced; view works; what it shows agrees
  // with what the process does. Returns a description of the state, for messages.
  std::string check_after_kill(Program& prog, const std::string& old_text, const std::string& new_text,
                               const std::string& context) {
    std::string stopped = wait_running_untraced(prog.pid(), 2s);
    if (!stopped.empty()) throw Failure(context + ": the target is left stopped or traced: " + stopped);
    expect_alive_and_running(prog);
    Json updates = view_updates(prog);
    if (updates.size() > 1) throw Failure(context + ": view lists more than the one update: " + updates.dump(2));
    bool pending = updates.size() == 1 && updates[0].value("pending", false);
    bool applied = updates.size() == 1 && !pending;
    // The process does what the ledger says, six lines in a row. A pending entry (the
    // tool died inside its stop window) may have its jumps written or not: either
    // behaviour, but only one.
    size_t from = prog.line_count();
    size_t first = prog.wait_for("sentinel", from);
    bool runs_new = prog.line(first).find(new_text) != std::string::npos;
    if (!pending && runs_new != applied)
      throw Failure(context + ": ledger says " + (applied ? "applied" : "no update") + " but the process printed line " +
                    std::to_string(first) + ":\n" + prog.tail());
    const std::string& now = runs_new ? new_text : old_text;
    size_t last = prog.wait_for_count(now, 6, first);
    if (auto wrong = prog.find(runs_new ? old_text : new_text, first); wrong && *wrong < last)
      throw Failure(context + ": old and new behaviour mixed after the kill (line " + std::to_string(*wrong) + "):\n" +
                    prog.tail());
    expect_alive_and_running(prog);
    if (pending) return runs_new ? "pending, new code live" : "pending, old code";
    return updates.empty() ? "no update" : applied ? "applied" : "pending";
  }

  // undo --all; then the original code runs and nothing of ours is mapped but the ledger.
  void restore(Program& prog, const std::string& old_text, const std::string& context) {
    undo_ok(prog, {"--all"});
    if (!view_updates(prog).empty()) throw Failure(context + ": view not empty after undo --all");
    prog.wait_for_count(old_text, 3, prog.line_count());
    auto left = maps_with(prog.pid(), "livesplice:");
    if (!left.empty()) throw Failure(context + ": update code still mapped after undo --all: " + left.front());
  }

  TempDir tmp;
};

// 15a. Killed while apply loops on retries (a thread is always in the way), at a moment
// the target is traced: while a thread is borrowed to map the new code, or inside a
// stop-check-resume attempt. Five times.
TEST_F(Killed, WhileRetrying) {
  std::string src = build_case("forever", tmp / "src");
  Program prog({src + "/prog"});
  prog.wait_for("sentinel 1001");
  std::string update = create_update(src, case_dir("forever") + "/fix.patch", tmp / "fix.lsu");

  for (int round = 0; round < 5; ++round) {
    std::string context = "round " + std::to_string(round);
    auto tool = start_apply(prog, update, {"--retries", "1000000", "--retry-delay", "1"});
    // Wait until the tool has the target traced (inside an attempt), then kill it.
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (stopped_or_traced(prog.pid()).empty()) {
      if (std::chrono::steady_clock::now() > deadline || !tool->running())
        FAIL() << context << ": apply never attached to the target: " << tool->state() << "\n" << tool->tail();
      std::this_thread::sleep_for(100us);
    }
    tool->kill_now();
    std::string state = check_after_kill(prog, "sentinel 1001", "sentinel 2002", context);
    EXPECT_TRUE(state == "no update" || state == "pending, old code") << context << ": " << state
                                                                      << ": a thread is always in the way";
    restore(prog, "sentinel 1001", context);
  }
  EXPECT_FALSE(prog.find("sentinel 2002")) << prog.tail();
}

// 15b. Killed at random moments of an apply that would succeed: from right after it
// starts to a little after it would have finished (measured first), 20 times.
TEST_F(Killed, AtRandomMoments) {
  std::string src = build_case("single", tmp / "src");
  Program prog({src + "/prog"});
  prog.wait_for("sentinel 1001");
  std::string update = create_update(src, case_dir("single") + "/fix.patch", tmp / "fix.lsu");

  auto t0 = std::chrono::steady_clock::now();
  apply_ok(prog, update);
  auto full = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
  undo_ok(prog);

  std::mt19937 rng(20240601);
  std::uniform_int_distribution<long> when(0, full.count() * 6 / 5);
  std::map<std::string, int> outcomes;
  for (int round = 0; round < 20; ++round) {
    long delay_us = when(rng);
    std::string context = "round " + std::to_string(round) + " (killed " + std::to_string(delay_us) +
                          " us after start; a full apply takes " + std::to_string(full.count()) + " us)";
    auto tool = start_apply(prog, update);
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    tool->kill_now();
    ++outcomes[check_after_kill(prog, "sentinel 1001", "sentinel 2002", context)];
    restore(prog, "sentinel 1001", context);
  }
  std::string summary;
  for (const auto& [k, v] : outcomes) summary += k + ": " + std::to_string(v) + "; ";
  RecordProperty("outcomes", summary);
  std::printf("outcomes over 20 kills: %s\n", summary.c_str());
}

}  // namespace
