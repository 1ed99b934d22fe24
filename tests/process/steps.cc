#include "steps.h"

#include <sstream>

namespace lsproc {

namespace {

std::string pid_arg(const Program& prog) { return std::to_string(prog.pid()); }

std::vector<std::string> cat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

[[noreturn]] void fail(const std::string& what, const RunResult& r) { throw Failure(what + ":\n" + r.describe()); }

// The memfd region an applied update's code lives in, as /proc/PID/maps names it.
std::string region_name(const std::string& id) { return "livesplice:" + id.substr(0, 8); }

}  // namespace

std::string create_update(const std::string& src, const std::string& patch, const std::string& out,
                          const std::vector<std::string>& extra) {
  RunResult r = ls(cat({"create", "--source", src, "--patch", patch, "-o", out}, extra), 180s);
  if (r.status != 0 || r.timed_out) fail("livesplice create must succeed", r);
  return out;
}

RunResult apply_expect(Program& prog, const std::string& update, int status, const std::vector<std::string>& extra) {
  RunResult r = ls(cat({"apply", "--pid", pid_arg(prog), update, "--json"}, extra), 120s);
  if (r.timed_out || r.status != status)
    fail("livesplice apply must exit " + std::to_string(status) + " on " + prog.name() + " (pid " + pid_arg(prog) +
             ", " + prog.state() + "); its last lines:\n" + prog.tail(),
         r);
  return r;
}

Json apply_ok(Program& prog, const std::string& update, const std::vector<std::string>& extra) {
  RunResult r = apply_expect(prog, update, 0, extra);
  Json j = r.json();
  if (j.value("applied", false) != true || !j.contains("id") || !j["id"].is_string() || j["id"].get<std::string>().empty())
    fail("apply --json must say applied: true and give the id", r);
  if (!j.contains("pause_us") || !j["pause_us"].is_number() || j["pause_us"].get<double>() <= 0)
    fail("apply --json must report the pause in pause_us (> 0)", r);
  if (!j.contains("attempts") || !j["attempts"].is_number_integer() || j["attempts"].get<int>() < 1)
    fail("apply --json must report attempts >= 1", r);
  if (!j.contains("functions") || !j["functions"].is_array() || j["functions"].empty())
    fail("apply --json must list the replaced functions", r);
  return j;
}

Json view_updates(Program& prog) {
  RunResult r = ls({"view", "--pid", pid_arg(prog), "--json"});
  if (r.status != 0 || r.timed_out)
    fail("livesplice view must succeed on " + prog.name() + " (pid " + pid_arg(prog) + ", " + prog.state() +
             "); its last lines:\n" + prog.tail(),
         r);
  Json j = r.json();
  if (j.value("pid", -1) != prog.pid() || !j.contains("updates") || !j["updates"].is_array())
    fail("view --json must give {pid, updates: [...]}", r);
  for (const auto& u : j["updates"])
    if (!u.contains("id") || !u.contains("applied_at") || !u.contains("pause_us") || !u.contains("functions"))
      fail("every update in view --json must have id, applied_at, pause_us and functions", r);
  return j["updates"];
}

std::vector<std::string> view_ids(Program& prog) {
  std::vector<std::string> ids;
  for (const auto& u : view_updates(prog)) ids.push_back(u["id"].get<std::string>());
  return ids;
}

Json undo_ok(Program& prog, const std::vector<std::string>& args) {
  RunResult r = ls(cat(cat({"undo", "--pid", pid_arg(prog)}, args), {"--json"}), 120s);
  if (r.status != 0 || r.timed_out)
    fail("livesplice undo must succeed on " + prog.name() + " (pid " + pid_arg(prog) + ", " + prog.state() +
             "); its last lines:\n" + prog.tail(),
         r);
  Json j = r.json();
  if (!j.contains("undone") || !j["undone"].is_array()) fail("undo --json must list what it undid in 'undone'", r);
  return j["undone"];
}

bool names_function(const Json& functions, const std::string& name) {
  for (const auto& f : functions) {
    std::string s = f.is_string() ? f.get<std::string>() : f.dump();
    if (s == name || (s.size() > name.size() && s.ends_with(":" + name))) return true;
  }
  return false;
}

void expect_alive_and_running(Program& prog) {
  if (!prog.same_process())
    throw Failure(prog.name() + " (pid " + std::to_string(prog.pid()) + ") is not the process started: " + prog.state() +
                  "; last lines:\n" + prog.tail());
  std::string stopped = wait_running_untraced(prog.pid(), 2s);
  if (!stopped.empty())
    throw Failure(prog.name() + " (pid " + std::to_string(prog.pid()) + ") is left stopped or traced: " + stopped);
}

void wait_in_syscall(pid_t pid, const std::vector<long>& nrs, Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  for (;;) {
    // "NR arg1 ... sp pc" while blocked in a system call, "running" otherwise.
    last = read_file("/proc/" + std::to_string(pid) + "/syscall");
    std::istringstream in(last);
    long nr = -1;
    if (in >> nr)
      for (long want : nrs)
        if (nr == want) return;
    if (std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(2ms);
  }
  std::string want;
  for (long n : nrs) want += (want.empty() ? "" : " or ") + std::to_string(n);
  throw Failure("process " + std::to_string(pid) + " is not blocked in system call " + want +
                "; /proc/PID/syscall: " + last);
}

Json update_cycle(Program& prog, const std::string& update, const std::string& old_text, const std::string& new_text,
                  const std::string& function) {
  prog.wait_for(old_text);

  Json applied = apply_ok(prog, update);
  std::string id = applied["id"];
  if (!names_function(applied["functions"], function))
    throw Failure("apply must name " + function + " among the replaced functions: " + applied.dump());
  size_t mark = prog.line_count();
  size_t first_new = prog.wait_for(new_text, mark);
  prog.wait_for_count(new_text, 5, first_new);
  if (auto old = prog.find(old_text, first_new))
    throw Failure("old behaviour after the new one (line " + std::to_string(*old) + "):\n" + prog.tail());
  expect_alive_and_running(prog);

  Json updates = view_updates(prog);
  if (updates.size() != 1 || updates[0]["id"] != id)
    throw Failure("view must list exactly the applied update " + id + ": " + updates.dump(2));
  const Json& u = updates[0];
  if (u.value("pending", false)) throw Failure("view shows the update still pending: " + u.dump(2));
  if (!u["pause_us"].is_number() || u["pause_us"].get<double>() != applied["pause_us"].get<double>())
    throw Failure("view's pause_us differs from apply's " + applied["pause_us"].dump() + ": " + u.dump(2));
  if (u["functions"] != applied["functions"])
    throw Failure("view's functions differ from apply's " + applied["functions"].dump() + ": " + u.dump(2));
  if (maps_with(prog.pid(), region_name(id)).empty())
    throw Failure("the update's code region " + region_name(id) + " is not in /proc/PID/maps");

  Json undone = undo_ok(prog);
  if (undone.size() != 1 || undone[0].value("id", "") != id)
    throw Failure("undo must undo exactly " + id + ": " + undone.dump(2));
  mark = prog.line_count();
  size_t first_old = prog.wait_for(old_text, mark);
  prog.wait_for_count(old_text, 5, first_old);
  if (auto again = prog.find(new_text, first_old))
    throw Failure("new behaviour after undo (line " + std::to_string(*again) + "):\n" + prog.tail());
  expect_alive_and_running(prog);
  if (!view_updates(prog).empty()) throw Failure("view must be empty after undo: " + view_updates(prog).dump(2));
  auto left = maps_with(prog.pid(), region_name(id));
  if (!left.empty()) throw Failure("the update's code is still mapped after undo: " + left.front());
  return applied;
}

}  // namespace lsproc
