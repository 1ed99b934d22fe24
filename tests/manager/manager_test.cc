// The update manager end to end: `livesplice install | remove | sync | status` on real
// running processes, each test with a store of its own (--root), built cases from
// tests/process/cases (and tests/manager/cases), real ptrace underneath.
//
// Nothing is mocked and nothing is skipped: if ptrace cannot be used here, every test
// fails and says why. Only processes started here are signalled.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "steps.h"
#include "support.h"

namespace fs = std::filesystem;
using namespace lsproc;

namespace {

// Lines of `text` containing `needle`.
std::vector<std::string> lines_with(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l.find(needle) != std::string::npos) out.push_back(l);
  return out;
}

class Manager : public PtraceTest {
 protected:
  std::string root() const { return tmp / "store"; }
  std::string case_src(const std::string& name) const { return tmp / name; }

  // `livesplice CMD --root ROOT ARGS...`
  RunResult manage(const std::string& cmd, std::vector<std::string> args = {}, const std::string& store = {}) {
    std::vector<std::string> argv{cmd, "--root", store.empty() ? root() : store};
    argv.insert(argv.end(), args.begin(), args.end());
    return ls(argv, 180s);
  }
  RunResult manage_ok(const std::string& cmd, std::vector<std::string> args = {}, const std::string& store = {}) {
    RunResult r = manage(cmd, std::move(args), store);
    if (r.status != 0 || r.timed_out) throw Failure("livesplice " + cmd + " must exit 0:\n" + r.describe());
    return r;
  }
  Json status(const std::string& store = {}) { return manage_ok("status", {"--json"}, store).json(); }

  // The shlib case (libgreet.so and prog) with a second program using the library,
  // `other` (cases/other.c), built beside it the way prog is.
  std::string build_two_programs() {
    std::string dest = build_case("shlib", case_src("shlib"));
    fs::copy_file(std::string(MANAGER_CASES_DIR) + "/other.c", dest + "/other.c");
    must({"sh", "-c", "cc -O2 -g -fcf-protection -o other other.c -L. -lgreet -Wl,-rpath,'$ORIGIN'"}, dest, 120s);
    return dest;
  }
  // The single case built and its update made (label `label`): the update's path.
  std::string single_update(const std::string& label = "1.0-2") {
    build_case("single", case_src("single"));
    return create_update(case_src("single"), case_dir("single") + "/fix.patch", tmp / "single.lsu",
                         {"--label", label});
  }

  TempDir tmp;
};

// The first stored update's entry in status --json.
Json first_update(const Json& s) {
  if (!s.contains("updates") || s["updates"].empty()) throw Failure("status lists no update:\n" + s.dump(2));
  return s["updates"][0];
}

// 1. install applies the update to the running process it fits (by build-id), says so in
// one line, and status shows it applied with the label as the effective version.
TEST_F(Manager, InstallPatchesARunningProcess) {
  std::string update = single_update("1.0-2");
  Program prog({case_src("single") + "/prog"});
  prog.wait_for("sentinel 1001");
  RunResult r = manage_ok("install", {update});
  EXPECT_EQ(lines_with(r.out, "applied ").size(), 1u) << r.describe();
  EXPECT_EQ(lines_with(r.out, "process " + std::to_string(prog.pid())).size(), 1u) << r.describe();
  size_t mark = prog.line_count();
  prog.wait_for("sentinel 2002", mark);
  expect_alive_and_running(prog);
  ASSERT_EQ(view_updates(prog).size(), 1u);

  Json s = status();
  Json u = first_update(s);
  EXPECT_EQ(u["label"], "1.0-2");
  ASSERT_EQ(u["applied"].size(), 1u) << s.dump(2);
  EXPECT_EQ(u["applied"][0]["pid"], prog.pid());
  bool found = false;
  for (const auto& b : s["binaries"])
    for (const auto& p : b["processes"])
      if (p["pid"] == prog.pid()) {
        EXPECT_EQ(p["effective_version"], "1.0-2") << s.dump(2);
        found = true;
      }
  EXPECT_TRUE(found) << "status must give the effective version of prog in its process\n" << s.dump(2);
  RunResult info = ls({"info", update});
  EXPECT_NE(info.out.find("label 1.0-2"), std::string::npos) << info.describe();

  // Installing it again changes nothing and says so.
  RunResult again = manage_ok("install", {update});
  EXPECT_TRUE(lines_with(again.out, "applied ").size() == 1 && !lines_with(again.out, "already applied").empty())
      << again.describe();
  ASSERT_EQ(view_updates(prog).size(), 1u);
}

// 2. A library update fits every program that maps the library: two different programs
// are patched by one install, and remove undoes it in both and empties the store.
TEST_F(Manager, LibraryUpdateUsedByTwoProgramsThenRemoved) {
  std::string src = build_two_programs();
  Program prog({src + "/prog"}), other({src + "/other"});
  prog.wait_for("greeting v1 ");
  other.wait_for("other: greeting v1 ");
  std::string update = create_update(src, case_dir("shlib") + "/fix.patch", tmp / "greet.lsu", {"--label", "greet 2"});
  RunResult r = manage_ok("install", {update});
  EXPECT_EQ(lines_with(r.out, "applied ").size(), 2u) << r.describe();
  size_t pm = prog.line_count(), om = other.line_count();
  prog.wait_for("greeting v2 ", pm);
  other.wait_for("other: greeting v2 ", om);
  std::string id = first_update(status())["id"];

  RunResult removed = manage_ok("remove", {id.substr(0, 6)});
  EXPECT_EQ(lines_with(removed.out, "undone ").size(), 2u) << removed.describe();
  pm = prog.line_count();
  om = other.line_count();
  size_t p_old = prog.wait_for("greeting v1 ", pm), o_old = other.wait_for("other: greeting v1 ", om);
  EXPECT_FALSE(prog.find("greeting v2 ", p_old)) << prog.tail();
  EXPECT_FALSE(other.find("greeting v2 ", o_old)) << other.tail();
  EXPECT_TRUE(view_updates(prog).empty());
  EXPECT_TRUE(view_updates(other).empty());
  EXPECT_TRUE(status()["updates"].empty());
  expect_alive_and_running(prog);
  expect_alive_and_running(other);
}

// 3. sync applies a stored update to a process started after install, and a second sync
// finds everything applied and changes nothing.
TEST_F(Manager, SyncAppliesToLaterProcessesAndIsIdempotent) {
  std::string update = single_update();
  RunResult installed = manage_ok("install", {update});
  EXPECT_FALSE(lines_with(installed.out, "fits no running process").empty()) << installed.describe();
  Program prog({case_src("single") + "/prog"});
  prog.wait_for("sentinel 1001");
  RunResult dry = manage_ok("sync", {"--dry-run"});
  EXPECT_EQ(lines_with(dry.out, "would apply").size(), 1u) << dry.describe();
  EXPECT_TRUE(view_updates(prog).empty()) << "--dry-run must change nothing";

  RunResult first = manage_ok("sync");
  EXPECT_EQ(lines_with(first.out, "applied ").size(), 1u) << first.describe();
  prog.wait_for("sentinel 2002", prog.line_count());
  RunResult second = manage_ok("sync");
  EXPECT_TRUE(lines_with(second.out, "applied ").size() == lines_with(second.out, "already applied").size() &&
              lines_with(second.out, "already applied").size() == 1)
      << second.describe();
  EXPECT_EQ(view_updates(prog).size(), 1u);
  expect_alive_and_running(prog);
}

// 4. An update taken out of the store behind the manager's back (a remove killed after
// the store changed) is undone by the next sync.
TEST_F(Manager, SyncUndoesAnUpdateNoLongerStored) {
  std::string update = single_update();
  Program prog({case_src("single") + "/prog"});
  prog.wait_for("sentinel 1001");
  manage_ok("install", {update});
  prog.wait_for("sentinel 2002", prog.line_count());
  std::string id = first_update(status())["id"];
  fs::remove(root() + "/updates/" + id + ".lsu");
  Json s = status();
  ASSERT_EQ(s["unstored"].size(), 1u) << s.dump(2);

  RunResult r = manage_ok("sync");
  EXPECT_EQ(lines_with(r.out, "undone ").size(), 1u) << r.describe();
  size_t old = prog.wait_for("sentinel 1001", prog.line_count());
  EXPECT_FALSE(prog.find("sentinel 2002", old)) << prog.tail();
  EXPECT_TRUE(view_updates(prog).empty());
  EXPECT_TRUE(status()["unstored"].empty());
}

// 5. A corrupted update and a foreign file in the store are reported and skipped; the
// good update is still applied, and the exit code says it is.
TEST_F(Manager, CorruptedStoreEntryIsSkipped) {
  std::string update = single_update();
  manage_ok("install", {update});
  std::string id = first_update(status())["id"];
  // A flipped byte in a copy of the good update, under a name of its own.
  std::string bytes = read_file(root() + "/updates/" + id + ".lsu");
  bytes[bytes.size() / 2] ^= 0x5a;
  lstest::write_file(root() + "/updates/00000000deadbeef.lsu", bytes);
  lstest::write_file(root() + "/updates/notes.txt", "someone's notes\n");
  Program prog({case_src("single") + "/prog"});
  prog.wait_for("sentinel 1001");

  RunResult r = manage("sync");
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(lines_with(r.out, "applied ").size(), 1u) << r.describe();
  EXPECT_EQ(lines_with(r.err, "00000000deadbeef.lsu: skipped").size(), 1u) << r.describe();
  EXPECT_EQ(lines_with(r.err, "notes.txt: skipped").size(), 1u) << r.describe();
  prog.wait_for("sentinel 2002", prog.line_count());
  Json s = status();
  EXPECT_EQ(s["updates"].size(), 1u) << s.dump(2);
  EXPECT_EQ(s["problems"].size(), 2u) << s.dump(2);
}

// 6. Two stores are two machines' worth of intent: a sync of an empty store leaves the
// other store's updates applied; LIVESPLICE_ROOT selects a store as --root does.
TEST_F(Manager, RootIsolation) {
  std::string update = single_update();
  Program prog({case_src("single") + "/prog"});
  prog.wait_for("sentinel 1001");
  manage_ok("install", {update});
  prog.wait_for("sentinel 2002", prog.line_count());
  std::string other = tmp / "other-store";
  RunResult r = manage_ok("sync", {}, other);
  EXPECT_TRUE(lines_with(r.out, "undone").empty()) << r.describe();
  EXPECT_EQ(view_updates(prog).size(), 1u);
  EXPECT_TRUE(status(other)["updates"].empty());

  RunResult env = lstest::run({livesplice(), "status", "--json"}, {"", {{"LIVESPLICE_ROOT", root()}}, 60s});
  ASSERT_EQ(env.status, 0) << env.describe();
  EXPECT_EQ(env.json()["updates"].size(), 1u) << env.describe();
  EXPECT_EQ(env.json()["root"], root());
}

// 7. Two syncs at once: the store's lock makes one wait for the other, so the update is
// applied once, and both end well.
TEST_F(Manager, ConcurrentSyncsApplyOnce) {
  std::string update = single_update();
  manage_ok("install", {update});
  Program prog({case_src("single") + "/prog"});
  prog.wait_for("sentinel 1001");
  RunResult a, b;
  std::thread ta([&] { a = manage("sync"); }), tb([&] { b = manage("sync"); });
  ta.join();
  tb.join();
  EXPECT_EQ(a.status, 0) << a.describe();
  EXPECT_EQ(b.status, 0) << b.describe();
  size_t applied = lines_with(a.out, "applied ").size() - lines_with(a.out, "already applied").size() +
                   lines_with(b.out, "applied ").size() - lines_with(b.out, "already applied").size();
  EXPECT_EQ(applied, 1u) << a.describe() << b.describe();
  EXPECT_EQ(view_updates(prog).size(), 1u);
  prog.wait_for("sentinel 2002", prog.line_count());
  expect_alive_and_running(prog);
}

// 8. Fit is by the build-id of what runs, read from the mapping: a process whose binary
// was replaced on disk since it started still fits, and a program of the same name from
// another build does not (it is not touched at all).
TEST_F(Manager, FitsByMappedBuildIdNotByPath) {
  std::string update = single_update();
  Program prog({case_src("single") + "/prog"});
  prog.wait_for("sentinel 1001");
  // Another build of the program, with another build-id, under the same name.
  build_case("single", tmp / "rebuilt");
  patch_tree(tmp / "rebuilt", case_dir("single") + "/fix.patch");
  must({"make", "-s"}, tmp / "rebuilt");
  Program stranger({tmp / "rebuilt" + "/prog"});
  stranger.wait_for("sentinel 2002");
  // The running program's file replaced on disk, as a package upgrade does.
  fs::copy_file(tmp / "rebuilt" + "/prog", case_src("single") + "/prog.new");
  fs::rename(case_src("single") + "/prog.new", case_src("single") + "/prog");
  ASSERT_FALSE(maps_with(prog.pid(), "(deleted)").empty()) << "the running binary must be replaced on disk";
  // status names it as running code older than what is on disk, not covered.
  auto outdated = [&](const Json& s) {
    Json mine = Json::array();
    for (const auto& o : s["outdated"])
      if (o["pid"] == prog.pid()) mine.push_back(o);
    return mine;
  };
  Json before = outdated(status());
  ASSERT_EQ(before.size(), 1u) << status().dump(2);
  EXPECT_EQ(before[0]["path"], case_src("single") + "/prog");
  EXPECT_EQ(before[0]["covered"], false);
  EXPECT_NE(before[0]["reason"].get<std::string>().find("no stored update fits it"), std::string::npos) << before;
  Json strangers = Json::array();
  for (const auto& o : status()["outdated"])
    if (o["pid"] == stranger.pid()) strangers.push_back(o);
  EXPECT_TRUE(strangers.empty()) << "the other build runs what is on disk\n" << strangers;

  RunResult r = manage_ok("install", {update});
  EXPECT_EQ(lines_with(r.out, "process " + std::to_string(prog.pid())).size(), 1u) << r.describe();
  EXPECT_TRUE(lines_with(r.out, "process " + std::to_string(stranger.pid())).empty()) << r.describe();
  prog.wait_for("sentinel 2002", prog.line_count());
  EXPECT_TRUE(view_updates(stranger).empty());
  EXPECT_TRUE(stopped_or_traced(stranger.pid()).empty());
  // Now a live update with its label runs there; prog is no package, so whether that
  // is what is on disk cannot be told, and status says so.
  Json after = outdated(status());
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0]["effective_version"], "1.0-2") << after;
  EXPECT_NE(after[0]["reason"].get<std::string>().find("not from a package"), std::string::npos) << after;
}

// 9. install and remove killed (SIGKILL, the command's own PID: an apply or undo it runs
// in a child finishes) at moments spread over their run: the next sync leaves the store
// and the process agreeing — the update stored and applied, or neither — and exits 0.
TEST_F(Manager, KilledInstallAndRemoveAreRepairedBySync) {
  std::string update = single_update();
  Program prog({case_src("single") + "/prog"});
  prog.wait_for("sentinel 1001");
  auto consistent = [&](const std::string& after) {
    Json s = status();
    size_t stored = s["updates"].size(), applied = view_updates(prog).size();
    EXPECT_EQ(stored, applied) << "after " << after << ": stored " << stored << ", applied " << applied << "\n"
                               << s.dump(2);
    EXPECT_TRUE(s["unstored"].empty()) << after << "\n" << s.dump(2);
    if (stored == 1) EXPECT_EQ(s["updates"][0]["applied"].size(), 1u) << after << "\n" << s.dump(2);
    expect_alive_and_running(prog);
    return stored == 1;
  };
  for (int ms : {5, 30, 80, 150, 300, 600}) {
    lstest::run({livesplice(), "install", "--root", root(), update}, {"", {}, Millis(ms)});
    manage_ok("sync");
    bool stored = consistent("install killed at " + std::to_string(ms) + " ms, then sync");
    if (!stored) manage_ok("install", {update});
    lstest::run({livesplice(), "remove", "--root", root(), "--all"}, {"", {}, Millis(ms)});
    manage_ok("sync");
    if (consistent("remove killed at " + std::to_string(ms) + " ms, then sync")) manage_ok("remove", {"--all"});
    ASSERT_TRUE(view_updates(prog).empty());
  }
}

// 10. A thread always busy in the replaced function (spin_forever): install fails with a
// busy thread; a sync before the backoff is over does not try again and says when it
// will; status says "retrying: busy thread, next attempt after ..." with the kind in its
// JSON; once due, sync tries again and the next wait is four times longer.
TEST_F(Manager, FailedApplyIsRetriedAcrossRunsWithBackoff) {
  std::string src = build_case("forever", case_src("forever"));
  Program prog({src + "/prog"});
  prog.wait_for("sentinel 1001");
  std::string update = create_update(src, case_dir("forever") + "/fix.patch", tmp / "forever.lsu");
  const std::vector<std::string> quick{"--retries", "0", "--hot-wait", "0", "--rounds", "0", "--backoff", "2"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), quick.begin(), quick.end());
    return args;
  };
  auto attempt = [&]() {
    Json s = status();
    Json u = first_update(s);
    if (u["not_applied"].size() != 1) throw Failure("the update must be not applied in prog:\n" + s.dump(2));
    return u["not_applied"][0];
  };
  auto count_of = [&]() {
    std::ifstream in(root() + "/attempts.json");
    Json a = Json::parse(in);
    return a.begin()->begin()->at("count").get<int>();
  };

  RunResult first = manage("install", with({update}));
  EXPECT_EQ(first.status, 2) << first.describe();
  EXPECT_EQ(lines_with(first.out, "failed to apply").size(), 1u) << first.describe();
  Json a = attempt();
  EXPECT_EQ(a["kind"], "busy") << a.dump(2);
  ASSERT_TRUE(a["next_attempt"].is_string()) << a.dump(2);
  EXPECT_EQ(a["reason"].get<std::string>().rfind("retrying: busy thread, next attempt after " +
                                                     a["next_attempt"].get<std::string>(), 0), 0u)
      << a.dump(2);
  ASSERT_EQ(count_of(), 1);

  // Not due yet: sync says so, exit 2 (not applied), and does not touch the process.
  RunResult early = manage("sync", with({}));
  EXPECT_EQ(early.status, 2) << early.describe();
  EXPECT_EQ(lines_with(early.out, "retrying ").size(), 1u) << early.describe();
  EXPECT_EQ(lines_with(early.out, "busy thread, next attempt after").size(), 1u) << early.describe();
  EXPECT_TRUE(lines_with(early.out, "failed to apply").empty()) << early.describe();
  EXPECT_EQ(count_of(), 1) << "a sync before the backoff is over must not try again";
  RunResult early_json = manage("sync", with({"--json"}));
  Json doc = early_json.json();
  ASSERT_EQ(doc["targets"].size(), 1u) << doc.dump(2);
  EXPECT_EQ(doc["targets"][0]["outcome"], "retrying") << doc.dump(2);
  EXPECT_EQ(doc["targets"][0]["kind"], "busy") << doc.dump(2);

  // Due: tried again, failed again, and the next wait is 4 times the first (2 s → 8 s).
  std::this_thread::sleep_for(3s);
  RunResult due = manage("sync", with({}));
  EXPECT_EQ(due.status, 2) << due.describe();
  EXPECT_EQ(lines_with(due.out, "failed to apply").size(), 1u) << due.describe();
  EXPECT_EQ(count_of(), 2);
  std::ifstream in(root() + "/attempts.json");
  Json rec = Json::parse(in).begin()->begin().value();
  auto at = [](const std::string& iso) {
    std::tm tm{};
    strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return static_cast<int64_t>(timegm(&tm));
  };
  int64_t wait = rec["next"].get<int64_t>() - at(rec["at"].get<std::string>());
  EXPECT_TRUE(wait >= 7 && wait <= 9) << "the second wait must be 8 s, is " << wait << "\n" << rec.dump(2);
  expect_alive_and_running(prog);
  EXPECT_TRUE(view_updates(prog).empty());
}

// 11. --json: install, sync and remove each print one JSON document: per update and
// target the outcome and why.
TEST_F(Manager, InstallSyncRemoveSpeakJson) {
  std::string update = single_update("1.0-3");
  Program prog({case_src("single") + "/prog"});
  prog.wait_for("sentinel 1001");
  Json in = manage_ok("install", {"--json", update}).json();
  EXPECT_EQ(in["command"], "install");
  EXPECT_EQ(in["exit"], 0);
  ASSERT_EQ(in["store"].size(), 1u) << in.dump(2);
  EXPECT_EQ(in["store"][0]["outcome"], "installed") << in.dump(2);
  std::string id = in["store"][0]["id"];
  ASSERT_EQ(in["targets"].size(), 1u) << in.dump(2);
  EXPECT_EQ(in["targets"][0]["outcome"], "applied") << in.dump(2);
  EXPECT_EQ(in["targets"][0]["update"], id) << in.dump(2);
  EXPECT_EQ(in["targets"][0]["label"], "1.0-3") << in.dump(2);
  EXPECT_EQ(in["targets"][0]["target"]["pid"], prog.pid()) << in.dump(2);

  Json sy = manage_ok("sync", {"--json"}).json();
  ASSERT_EQ(sy["targets"].size(), 1u) << sy.dump(2);
  EXPECT_EQ(sy["targets"][0]["outcome"], "already-applied") << sy.dump(2);

  RunResult bad = manage("install", {"--json", "/proc/self/status"});
  EXPECT_EQ(bad.status, 1) << bad.describe();
  Json b = bad.json();
  ASSERT_EQ(b["store"].size(), 1u) << b.dump(2);
  EXPECT_EQ(b["store"][0]["outcome"], "not-installed") << b.dump(2);
  EXPECT_TRUE(b["store"][0]["error"].is_string()) << b.dump(2);

  Json rm = manage_ok("remove", {"--json", "--all"}).json();
  EXPECT_EQ(rm["command"], "remove");
  ASSERT_EQ(rm["store"].size(), 1u) << rm.dump(2);
  EXPECT_EQ(rm["store"][0]["outcome"], "removed") << rm.dump(2);
  ASSERT_EQ(rm["targets"].size(), 1u) << rm.dump(2);
  EXPECT_EQ(rm["targets"][0]["outcome"], "undone") << rm.dump(2);
  EXPECT_EQ(rm["targets"][0]["target"]["pid"], prog.pid()) << rm.dump(2);
  EXPECT_TRUE(view_updates(prog).empty());
}

// 11. sync killed (SIGKILL, its own PID) at moments spread over its run, ten times, each
// with an apply to do (the update undone behind the store's back): a plain sync
// afterwards exits 0 and leaves status and the process agreeing (applied in status
// exactly when the process's ledger says so, and the process runs the fixed code).
TEST_F(Manager, KilledSyncIsRepairedBySync) {
  std::string update = single_update();
  Program prog({case_src("single") + "/prog"});
  prog.wait_for("sentinel 1001");
  manage_ok("install", {update});
  auto agree = [&](const std::string& after) {
    Json s = status();
    const bool in_status = first_update(s)["applied"].size() == 1, in_ledger = view_updates(prog).size() == 1;
    EXPECT_EQ(in_status, in_ledger) << after << "\n" << s.dump(2);
    size_t mark = prog.line_count();
    prog.wait_for(in_ledger ? "sentinel 2002" : "sentinel 1001", mark);
    expect_alive_and_running(prog);
  };
  for (int ms : {5, 15, 30, 50, 80, 120, 170, 250, 400, 700}) {
    // Undone behind the store's back, so that the killed sync has an apply to do.
    must({livesplice(), "undo", "--pid", std::to_string(prog.pid()), "--all"});
    ASSERT_TRUE(view_updates(prog).empty());
    lstest::run({livesplice(), "sync", "--root", root()}, {"", {}, Millis(ms)});
    // An apply the killed sync started goes on in its child: the plain sync may find it
    // done only once it has the process's lock (and must not call that a failure).
    manage_ok("sync");
    agree("sync killed at " + std::to_string(ms) + " ms, then a plain sync");
    ASSERT_EQ(view_updates(prog).size(), 1u) << "the plain sync must apply it";
  }
}

// The until case (tests/manager/cases/until) built in `dest`: its program's path.
std::string build_until(const std::string& dest) {
  fs::copy(std::string(MANAGER_CASES_DIR) + "/until", dest, fs::copy_options::recursive);
  must({"make", "-s"}, dest, 120s);
  return dest + "/prog";
}

// 12. An apply refused at first (a thread inside busy_until) that another command makes
// while sync waits to try again: sync's next round finds it applied and says "already
// applied", not a failure, and exits 0.
TEST_F(Manager, SyncRetryFindsItAppliedMeanwhile) {
  std::string dir = case_src("until");
  Program prog({build_until(dir), tmp / "flag"});
  prog.wait_for("waiting for");
  std::string update = create_update(dir, std::string(MANAGER_CASES_DIR) + "/until/fix.patch", tmp / "until.lsu");
  const std::vector<std::string> quick{"--retries", "0", "--hot-wait", "0", "--backoff", "0"};
  std::vector<std::string> install{"install", "--root", root(), update, "--rounds", "0"};
  install.insert(install.end(), quick.begin(), quick.end());
  EXPECT_EQ(ls(install, 180s).status, 2) << "busy at first";

  std::vector<std::string> sync{livesplice(), "sync", "--root", root(), "--rounds", "3"};
  sync.insert(sync.end(), quick.begin(), quick.end());
  Program syncing(sync);
  syncing.wait_for("trying again in 3200 ms", 0, 60s);   // its rounds 0 to 2 refused
  std::ofstream(tmp / "flag").put('\n');
  apply_ok(prog, update);
  EXPECT_EQ(syncing.wait_exit(60s), "exited with status 0") << syncing.tail();
  syncing.wait_for("applied meanwhile", 0, 10s);   // its output may be read after its exit
  EXPECT_TRUE(syncing.find("already applied ")) << syncing.tail();
  EXPECT_FALSE(syncing.find("failed to apply")) << syncing.tail();
  EXPECT_EQ(first_update(status())["applied"].size(), 1u);
  prog.wait_for("sentinel 2002");
}

// The manager's commands teach: each --help says what it does, names the store option
// and gives examples.
TEST(ManagerCli, HelpTeaches) {
  for (const std::string sub : {"install", "remove", "sync", "status"}) {
    RunResult r = lstest::run({lstest::livesplice(), sub, "--help"});
    EXPECT_EQ(r.status, 0) << r.describe();
    for (const std::string& text : {std::string("--root"), std::string("Examples:"), "livesplice " + sub})
      EXPECT_NE(r.out.find(text), std::string::npos) << sub << ": '" << text << "' missing from\n" << r.out;
    for (const std::string& text : {"--json"})
      EXPECT_NE(r.out.find(text), std::string::npos) << sub << ": '" << text << "' missing from\n" << r.out;
    if (sub == "status") continue;
    for (const std::string& text : {"--backoff", "--core", "kernel", "\"targets\"", "retrying"})
      EXPECT_NE(r.out.find(text), std::string::npos) << sub << ": '" << text << "' missing from\n" << r.out;
  }
}

}  // namespace
