// A command killed at every phase boundary of apply and undo, deterministically
// (LIVESPLICE_KILL_AT, guardian.h): the tool alone — its guardian child then finishes or
// rolls back what it had begun — and the tool with its guardian ("+guardian"), which
// leaves the state of that very moment. Either way, afterwards: the target runs,
// untraced; view works and says what the process does (the update's jumps all in place
// and its new code running, or none and the old code); the next command repairs any
// leftover and says what it found and did; then apply and undo work as ever.
#include <gtest/gtest.h>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

struct Phase {
  const char* name;       // as LIVESPLICE_KILL_AT names it
  bool guardian;          // the guardian killed too
  const char* state;      // view afterwards: "" (no entry), or entry state + "/" + jumps in place
};

void PrintTo(const Phase& p, std::ostream* os) { *os << p.name << (p.guardian ? "+guardian" : ""); }

std::string label(const ::testing::TestParamInfo<Phase>& p) {
  std::string s = std::string(p.param.name) + (p.param.guardian ? "_with_guardian" : "");
  for (char& c : s)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

// Each phase in the order the command passes it (apply.cc, undo.cc).
const Phase kPhases[] = {
    {"apply:matched", false, ""},              {"apply:matched", true, ""},
    {"apply:recorded", false, ""},             {"apply:recorded", true, "pending/none"},
    {"apply:mapped", false, ""},               {"apply:mapped", true, "pending/none"},
    {"apply:spliced", false, "applied/all"},   {"apply:spliced", true, "pending/all"},
    {"apply:confirmed", false, "applied/all"}, {"apply:confirmed", true, "applied/all"},
    {"undo:checked", false, "applied/all"},    {"undo:checked", true, "applied/all"},
    {"undo:restored", false, ""},              {"undo:restored", true, "applied/none"},
    {"undo:marked", false, ""},                {"undo:marked", true, "removing/none"},
    {"undo:unmapped", false, ""},              {"undo:unmapped", true, "removing/none"},
    {"undo:committed", false, ""},             {"undo:committed", true, ""},
};

class KilledAt : public PtraceTest, public ::testing::WithParamInterface<Phase> {
 protected:
  RunResult killed(Program& prog, const std::vector<std::string>& args, const std::string& phase) {
    std::vector<std::string> argv{livesplice()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--pid", std::to_string(prog.pid()), "--json"});
    lstest::RunOptions o;
    o.env["LIVESPLICE_KILL_AT"] = phase;
    o.timeout = 120s;
    return lstest::run(argv, o);
  }

  TempDir tmp;
};

TEST_P(KilledAt, LeavesAProcessTheNextCommandPutsRight) {
  const Phase& ph = GetParam();
  const bool in_undo = std::string(ph.name).starts_with("undo:");
  const std::string old_text = "sentinel 1001", new_text = "sentinel 2002";
  std::string src = build_case("single", tmp / "src");
  Program prog({src + "/prog"});
  prog.wait_for(old_text);
  std::string update = create_update(src, case_dir("single") + "/fix.patch", tmp / "fix.lsu");
  std::string id;
  if (in_undo) id = apply_ok(prog, update)["id"];

  std::string phase = std::string(ph.name) + (ph.guardian ? "+guardian" : "");
  RunResult r = in_undo ? killed(prog, {"undo"}, phase) : killed(prog, {"apply", update}, phase);
  ASSERT_EQ(r.status, 128 + 9) << "livesplice must have been killed at " << phase << "\n" << r.describe();

  // View waits for a surviving guardian (the lock), then shows the state.
  expect_alive_and_running(prog);
  Json updates = view_updates(prog);
  std::string state;
  if (!updates.empty()) state = updates[0].value("state", "?") + "/" + updates[0].value("jumps_in_place", "?");
  ASSERT_LE(updates.size(), 1u) << updates.dump(2);
  EXPECT_EQ(state, ph.state) << "after a kill at " << phase << ": " << updates.dump(2);
  if (!updates.empty()) id = updates[0]["id"];

  // The process does what view says, six lines in a row.
  const bool live = state.ends_with("/all");
  size_t from = prog.wait_for("sentinel", prog.line_count());
  size_t last = prog.wait_for_count(live ? new_text : old_text, 6, from);
  auto wrong = prog.find(live ? old_text : new_text, from);
  EXPECT_FALSE(wrong && *wrong < last) << phase << ": mixed behaviour\n" << prog.tail();

  // The next command repairs what is left, and says so; apply for apply's leftovers,
  // undo for undo's.
  const bool leftover = !state.empty() && state != "applied/all";
  if (in_undo || state == "applied/all") {
    RunResult u = ls({"undo", "--pid", std::to_string(prog.pid()), "--all", "--json"}, 120s);
    ASSERT_EQ(u.status, 0) << u.describe();
    Json j = u.json();
    EXPECT_EQ(j["repaired"].size(), leftover ? 1u : 0u) << u.describe();
    if (leftover) {
      EXPECT_NE(u.err.find("update " + id.substr(0, 8)), std::string::npos) << u.describe();
    }
  } else {
    RunResult a = apply_expect(prog, update, 0);
    if (leftover) {
      EXPECT_NE(a.err.find("update " + id.substr(0, 8)), std::string::npos)
          << "apply must say what it found and did\n" << a.describe();
    }
    undo_ok(prog, {"--all"});
  }
  EXPECT_TRUE(view_updates(prog).empty()) << view_updates(prog).dump(2);
  EXPECT_TRUE(maps_with(prog.pid(), "livesplice:").empty()) << maps_with(prog.pid(), "livesplice:").front();
  size_t mark = prog.line_count();
  prog.wait_for_count(old_text, 3, prog.wait_for("sentinel", mark));

  // And everything works as ever.
  update_cycle(prog, update, old_text, new_text, "sentinel");
}

INSTANTIATE_TEST_SUITE_P(EveryPhase, KilledAt, ::testing::ValuesIn(kPhases), label);

}  // namespace
