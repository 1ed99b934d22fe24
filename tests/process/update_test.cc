// Live updates of running processes, one kind of process per test: each builds a case
// from cases/ with plain make (Debian's hardening flags), starts it, makes the update
// with `livesplice create` from the same tree while it runs, and takes the update
// through apply → new behaviour → view → undo → old behaviour (steps.h, update_cycle),
// checking that the process is the same one throughout and is never left stopped.
//
// Nothing is mocked and nothing is skipped: if ptrace cannot be used here, every test
// fails and says why.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <regex>

#include "steps.h"
#include "support.h"

namespace fs = std::filesystem;
using namespace lsproc;

namespace {

class Live : public PtraceTest {
 protected:
  std::string src() const { return tmp / "src"; }
  std::string update() const { return tmp / "fix.lsu"; }
  std::string patch(const std::string& name, const std::string& file = "fix.patch") const {
    return case_dir(name) + "/" + file;
  }
  std::string elf_type(const std::string& binary) const {
    RunResult r = must({"readelf", "-hW", binary});
    std::smatch m;
    if (!std::regex_search(r.out, m, std::regex(R"(Type:\s+(\w+))"))) throw Failure("no ELF type in\n" + r.out);
    return m[1];
  }

  TempDir tmp;
};

// The numbers after `key` in each of `lines` containing `text`.
std::vector<long> numbers_after(const std::vector<std::string>& lines, const std::string& text, const std::string& key) {
  std::vector<long> out;
  for (const auto& l : lines) {
    if (l.find(text) == std::string::npos) continue;
    size_t at = l.find(key);
    if (at != std::string::npos) out.push_back(std::stol(l.substr(at + key.size())));
  }
  return out;
}

// 1. One thread, mostly running: it calls the patched function in a tight loop.
TEST_F(Live, SingleThread) {
  build_case("single", src());
  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001");
  create_update(src(), patch("single"), update());
  Json applied = update_cycle(prog, update(), "sentinel 1001", "sentinel 2002", "sentinel");
  RecordProperty("pause_us", std::to_string(applied["pause_us"].get<double>()));
}

// 2. Sixteen threads, all calling the patched function; most are runnable but not
// running when the stop comes (2 CPUs). Every thread must switch to the new code, and a
// thread that has seen the new value never sees the old one again.
TEST_F(Live, SixteenThreads) {
  build_case("threads", src());
  Program prog({src() + "/prog"});
  auto thread_text = [](int t, int v) {
    return "thread " + std::string(t < 10 ? "0" : "") + std::to_string(t) + " sentinel " + std::to_string(v);
  };
  for (int t = 0; t < 16; ++t) prog.wait_for(thread_text(t, 1001));
  ASSERT_EQ(tasks(prog.pid()).size(), 17u) << "main thread + 16 workers";
  create_update(src(), patch("threads"), update());

  Json applied = apply_ok(prog, update());
  EXPECT_TRUE(names_function(applied["functions"], "sentinel")) << applied.dump(2);
  size_t mark = prog.line_count();
  for (int t = 0; t < 16; ++t) {
    size_t first_new = prog.wait_for(thread_text(t, 2002), mark);
    prog.wait_for_count(thread_text(t, 2002), 3, first_new);
    EXPECT_FALSE(prog.find(thread_text(t, 1001), first_new)) << "thread " << t << " went back to the old code\n"
                                                              << prog.tail(40);
  }
  expect_alive_and_running(prog);
  ASSERT_EQ(tasks(prog.pid()).size(), 17u);
  auto ids = view_ids(prog);
  ASSERT_EQ(ids, std::vector<std::string>{applied["id"].get<std::string>()});

  undo_ok(prog);
  mark = prog.line_count();
  for (int t = 0; t < 16; ++t) {
    size_t first_old = prog.wait_for(thread_text(t, 1001), mark);
    EXPECT_FALSE(prog.find(thread_text(t, 2002), first_old)) << "thread " << t << " still runs the new code";
  }
  expect_alive_and_running(prog);
  EXPECT_TRUE(view_updates(prog).empty());
  RecordProperty("pause_us", std::to_string(applied["pause_us"].get<double>()));
  RecordProperty("attempts", std::to_string(applied["attempts"].get<int>()));
}

// The report case shared by PIE and non-PIE: the count kept in a global of the running
// program carries on across the update (the new code uses the program's variable).
void report_cycle(Program& prog, const std::string& update) {
  size_t start = prog.line_count();
  update_cycle(prog, update, "report v1 ", "report v2 ", "report");
  auto lines = prog.lines(start);
  std::vector<long> counts;
  for (const auto& l : lines) {
    size_t at = l.find(" count ");
    if (l.rfind("report v", 0) == 0 && at != std::string::npos) counts.push_back(std::stol(l.substr(at + 7)));
  }
  ASSERT_GT(counts.size(), 10u);
  for (size_t i = 1; i < counts.size(); ++i)
    ASSERT_EQ(counts[i], counts[i - 1] + 1) << "the count must go on by one across apply and undo: line "
                                             << start + i << ": " << lines[i];
}

// 3. PIE (gcc's default): code addresses its data and strings PC-relatively.
TEST_F(Live, Pie) {
  build_case("position", src());
  ASSERT_EQ(elf_type(src() + "/prog"), "DYN") << "the default build must be PIE";
  Program prog({src() + "/prog"});
  prog.wait_for("report v1 ");
  create_update(src(), patch("position"), update());
  report_cycle(prog, update());
}

// 4. Non-PIE (-fno-pie -no-pie): strings are addressed with absolute 32-bit immediates,
// so the new code must be placed where those can reach. create gets the same build
// command as the running build.
TEST_F(Live, NonPie) {
  build_case("position", src(), {"PIE=no"});
  ASSERT_EQ(elf_type(src() + "/prog"), "EXEC") << "PIE=no must build a position-dependent executable";
  Program prog({src() + "/prog"});
  prog.wait_for("report v1 ");
  create_update(src(), patch("position"), update(), {"--build-cmd", "make PIE=no"});
  report_cycle(prog, update());
}

// 5. The patched function is in a shared library the program is linked against; its
// counter is the library's own data (reached through the GOT).
TEST_F(Live, SharedLibrary) {
  build_case("shlib", src());
  Program prog({src() + "/prog"});
  prog.wait_for("greeting v1 ");
  ASSERT_FALSE(maps_with(prog.pid(), "libgreet.so").empty()) << "libgreet.so must be mapped";
  create_update(src(), patch("shlib"), update());
  size_t start = prog.line_count();
  update_cycle(prog, update(), "greeting v1 ", "greeting v2 ", "greet");
  auto counts = numbers_after(prog.lines(start), "greeting v", " count ");
  ASSERT_GT(counts.size(), 10u);
  for (size_t i = 1; i < counts.size(); ++i)
    ASSERT_EQ(counts[i], counts[i - 1] + 1) << "the library's counter must go on by one across the update";
}

// 5b. The fix calls strchr, which the program never imported: glibc's strchr is a GNU
// indirect function, whose symbol is the resolver that picks an implementation for this
// CPU. Bound to the resolver, the new code would get a function pointer back instead of
// the position of ';' (and print neither 2002 nor 3003).
TEST_F(Live, NewCallToAnIndirectFunction) {
  build_case("ifunc", src());
  RunResult dyn = must({"nm", "-D", src() + "/prog"});
  ASSERT_EQ(dyn.out.find("strchr"), std::string::npos) << "the program must not import strchr before the fix";
  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001");
  create_update(src(), patch("ifunc"), update());
  update_cycle(prog, update(), "sentinel 1001", "sentinel 2002", "sentinel");
}

// 5c. The patched function is in a libtool convenience library nested in another, built
// with shared and static both on: libtool compiles it twice, and only the PIC copy is
// in the program (through libcomm, which holds libbase's members re-archived). The
// update must carry that copy alone; the other would fail run-pre matching.
TEST_F(Live, LibtoolConvenienceLibraryCompiledTwice) {
  fs::copy(case_dir("libtool_conv"), src(), fs::copy_options::recursive);
  must({"autoreconf", "-fi"}, src(), 120s);
  must({"./configure"}, src(), 120s);
  must({"make", "-s"}, src(), 120s);
  ASSERT_TRUE(fs::exists(src() + "/base/config.o") && fs::exists(src() + "/base/.libs/config.o"))
      << "libtool must compile config.c twice";
  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001");
  create_update(src(), patch("libtool_conv"), update());
  Json info = must({livesplice(), "info", "--json", update()}).json();
  ASSERT_EQ(info["objects"].size(), 1u) << info.dump(2);
  EXPECT_EQ(info["objects"][0]["path"], "base/.libs/config.o") << info.dump(2);
  ASSERT_EQ(info["targets"].size(), 1u) << info.dump(2);
  EXPECT_EQ(info["targets"][0]["name"], "prog") << info.dump(2);
  update_cycle(prog, update(), "sentinel 1001", "sentinel 2002", "config_sentinel");
}

// 6. Two static functions named value(), with identical code, in a.c and b.c; the
// update replaces a.c's. b.c's must keep its behaviour.
TEST_F(Live, StaticNameInTwoFiles) {
  build_case("static_dup", src());
  RunResult nm = must({"nm", src() + "/prog"});
  size_t values = 0;
  for (size_t at = 0; (at = nm.out.find(" t value\n", at)) != std::string::npos; ++at) ++values;
  ASSERT_EQ(values, 2u) << "the case needs two local functions named value:\n" << nm.out;
  Program prog({src() + "/prog"});
  prog.wait_for("a 2001 b 2001");
  create_update(src(), patch("static_dup"), update());
  update_cycle(prog, update(), "a 2001 b 2001", "a 6001 b 2001", "value");
}

// 6b. The new code calls a global of hidden visibility that no pre code refers to: the
// linker made it a local of prog, so it resolves from prog's own locals.
TEST_F(Live, HiddenGlobalCalledByNewCode) {
  build_case("hidden", src());
  RunResult nm = must({"nm", src() + "/prog"});
  ASSERT_NE(nm.out.find(" t base\n"), std::string::npos) << "base must be a local of prog:\n" << nm.out;
  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001 base 1001");
  create_update(src(), patch("hidden"), update());
  update_cycle(prog, update(), "sentinel 1001 base 1001", "sentinel 2002 base 1001", "sentinel");
}

// 6b'. The same for a global of default visibility that a library's version script does
// not export (`local: *;`): the new code calls a function and a function pointer that
// the linker made locals of the library. A static function of the same name in another
// file of the library must not be taken for the global one.
TEST_F(Live, GlobalLocalizedByVersionScript) {
  build_case("localized", src());
  RunResult nm = must({"nm", src() + "/libgreet.so"});
  ASSERT_NE(nm.out.find(" d scale\n"), std::string::npos) << "scale must be a local of libgreet.so:\n" << nm.out;
  size_t bases = 0;
  for (size_t at = 0; (at = nm.out.find(" t base\n", at)) != std::string::npos; ++at) ++bases;
  ASSERT_EQ(bases, 2u) << "the case needs base() made local and the decoy static base():\n" << nm.out;
  ASSERT_EQ(nm.out.find(" T base\n"), std::string::npos) << "base must not be exported:\n" << nm.out;
  Program prog({src() + "/prog"});
  prog.wait_for("greeting v1 ");
  create_update(src(), patch("localized"), update());
  update_cycle(prog, update(), "greeting v1 ", " base 2002 decoy 8", "greet");
}

// 6c. The fix adds a function-local static after sentinel()'s, so GCC numbers
// sentinel()'s `value` differently in the fixed build (value.1) than in the running one
// (value.0, while value.1 does not exist there): the new code must use the running one.
TEST_F(Live, RenumberedStaticLocalKeepsItsRunningCopy) {
  build_case("renumbered", src());
  RunResult nm = must({"nm", src() + "/prog"});
  ASSERT_NE(nm.out.find(" d value.0\n"), std::string::npos) << "the case needs GCC's numbering:\n" << nm.out;
  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001");
  create_update(src(), patch("renumbered"), update());
  update_cycle(prog, update(), "sentinel 1001", "sentinel 2002", "sentinel");
}

// 7. A stripped executable (no .symtab: static functions have no names left). The
// update is made from the unstripped tree it was built from; matching finds the code.
TEST_F(Live, StrippedExecutable) {
  build_case("position", src());
  fs::create_directories(tmp / "run");
  fs::copy_file(src() + "/prog", tmp / "run/prog");
  must({"strip", tmp / "run/prog"});
  RunResult sections = must({"readelf", "-SW", tmp / "run/prog"});
  ASSERT_EQ(sections.out.find(".symtab"), std::string::npos) << "strip must remove the symbol table";
  Program prog({tmp / "run/prog"});
  prog.wait_for("report v1 ");
  create_update(src(), patch("position"), update());
  report_cycle(prog, update());
}

// 8. Blocked in read(2) on a pipe when the update comes: the read must go on as if
// nothing happened (no EINTR, no lost data), and the next request is answered by the
// new code.
TEST_F(Live, BlockedInPipeRead) {
  build_case("pipe_read", src());
  Program prog({src() + "/prog"}, {.stdin_pipe = true});
  prog.wait_for("ready");
  prog.write_stdin("first\n");
  prog.wait_for("old answer to 'first' (5 bytes)");
  create_update(src(), patch("pipe_read"), update());
  wait_in_syscall(prog.pid(), {0});   // read

  Json applied = apply_ok(prog, update());
  EXPECT_TRUE(names_function(applied["functions"], "answer")) << applied.dump(2);
  expect_alive_and_running(prog);
  wait_in_syscall(prog.pid(), {0});
  size_t mark = prog.line_count();
  prog.write_stdin("second request\nthird\n");
  size_t second = prog.wait_for("new answer to 'second request' (14 bytes)", mark);
  size_t third = prog.wait_for("new answer to 'third' (5 bytes)", mark);
  EXPECT_EQ(second, mark) << prog.tail();
  EXPECT_EQ(third, mark + 1) << prog.tail();
  EXPECT_FALSE(prog.find("read failed")) << prog.tail();

  undo_ok(prog);
  wait_in_syscall(prog.pid(), {0});
  mark = prog.line_count();
  prog.write_stdin("fourth\n");
  prog.wait_for("old answer to 'fourth' (6 bytes)", mark);
  expect_alive_and_running(prog);
  EXPECT_TRUE(view_updates(prog).empty());
}

// 9. A TCP server blocked in accept(2) on 127.0.0.1: after the update, the next
// connection is served by the new code, and accept never failed.
TEST_F(Live, BlockedInAccept) {
  build_case("accept", src());
  Program prog({src() + "/prog"});
  std::string listening = prog.line(prog.wait_for("listening on port "));
  int port = std::stoi(listening.substr(listening.rfind(' ') + 1));
  EXPECT_EQ(tcp_request(port, "ping\n"), "old answer to 'ping' (4 bytes)\n");
  create_update(src(), patch("accept"), update());
  wait_in_syscall(prog.pid(), {43, 288});   // accept, accept4

  Json applied = apply_ok(prog, update());
  EXPECT_TRUE(names_function(applied["functions"], "answer")) << applied.dump(2);
  expect_alive_and_running(prog);
  wait_in_syscall(prog.pid(), {43, 288});
  EXPECT_EQ(tcp_request(port, "after apply\n"), "new answer to 'after apply' (11 bytes)\n");
  EXPECT_EQ(tcp_request(port, "again\n"), "new answer to 'again' (5 bytes)\n");

  undo_ok(prog);
  EXPECT_EQ(tcp_request(port, "after undo\n"), "old answer to 'after undo' (10 bytes)\n");
  prog.wait_for("served 4");
  EXPECT_FALSE(prog.find("accept failed")) << prog.tail();
  expect_alive_and_running(prog);
}

// When one sleep of the sleeper case began and ended, and when one apply or undo ran,
// all on CLOCK_MONOTONIC in microseconds (steady_clock is CLOCK_MONOTONIC on Linux).
struct Span {
  long from = 0, to = 0;
};
long monotonic_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
std::vector<Span> sleeps_of(const std::vector<std::string>& lines) {
  std::vector<Span> out;
  for (const auto& l : lines) {
    Span s;
    long took = 0;
    int sentinel = 0;
    if (std::sscanf(l.c_str(), "sentinel %d slept %ld us from %ld to %ld", &sentinel, &took, &s.from, &s.to) == 4)
      out.push_back(s);
  }
  return out;
}

// 16. Blocked in nanosleep(2): every stop (three applies and three undos, each placed
// 150-350 ms into a 500 ms sleep) interrupts a sleep; each sleep must still last 500 ms:
// not end early, not fail with EINTR, not start again from the beginning.
// A restarted sleep ends 500 ms after the stop (so at least 500 ms after its command
// began), a resumed one at its own deadline or, if the stop outlasted that, as the stop
// ends (so by the time its command returned); either way plus the wake-up latency. That
// latency, on a loaded machine, is measured in the same run: the sleeps no command
// touched. An interrupted sleep may end later than max(deadline, command's end) by at
// most twice the worst of those plus 50 ms; a restart would add at least the 150 ms
// the test waits into the sleep.
TEST_F(Live, BlockedInNanosleep) {
  build_case("sleeper", src());
  Program prog({src() + "/prog"});
  prog.wait_for_count("sentinel 1001", 2);
  create_update(src(), patch("sleeper"), update());
  // Waits for the start of a sleep (a line just printed), then lets `into` of it pass.
  auto into_a_sleep = [&](Millis into) {
    prog.wait_for(" slept ", prog.line_count(), 3s);
    std::this_thread::sleep_for(into);
    wait_in_syscall(prog.pid(), {35, 230});   // nanosleep, clock_nanosleep
  };
  std::vector<Span> commands;
  auto timed = [&](auto&& command) {
    Span c{monotonic_us(), 0};
    command();
    c.to = monotonic_us();
    commands.push_back(c);
  };
  for (int round = 0; round < 3; ++round) {
    into_a_sleep(Millis(150 + 100 * round));
    timed([&] { apply_ok(prog, update()); });
    prog.wait_for("sentinel 2002", prog.line_count(), 3s);
    into_a_sleep(Millis(350 - 100 * round));
    timed([&] { undo_ok(prog); });
    prog.wait_for("sentinel 1001", prog.line_count(), 3s);
  }
  prog.wait_for_count("sentinel 1001", 3, prog.line_count(), 3s);   // untouched sleeps after the last
  expect_alive_and_running(prog);
  EXPECT_FALSE(prog.find("nanosleep failed")) << prog.tail();

  constexpr long kSleep = 500000;
  std::vector<Span> sleeps = sleeps_of(prog.lines());
  ASSERT_GE(sleeps.size(), 12u) << prog.tail();
  auto overlapping = [&](const Span& s) -> const Span* {
    for (const Span& c : commands)
      if (s.from < c.to && s.to > c.from) return &c;
    return nullptr;
  };
  long base_latency = 0;
  size_t untouched = 0;
  for (const Span& s : sleeps) {
    EXPECT_GE(s.to - s.from, kSleep) << "a sleep ended early\n" << prog.tail(30);
    if (overlapping(s)) continue;
    base_latency = std::max(base_latency, s.to - s.from - kSleep);
    ++untouched;
  }
  ASSERT_GE(untouched, 3u) << "no sleep untouched by a command to measure the wake-up latency\n" << prog.tail(30);
  size_t interrupted = 0;
  for (const Span& s : sleeps) {
    const Span* c = overlapping(s);
    if (!c) continue;
    ++interrupted;
    long late = s.to - std::max(s.from + kSleep, c->to);
    EXPECT_LE(late, 2 * base_latency + 50000)
        << "a sleep interrupted by the command at [" << c->from << ", " << c->to << "] us ended " << late
        << " us after its deadline or the command's end (untouched sleeps woke at most " << base_latency
        << " us late): restarted from the beginning?\n" << prog.tail(30);
  }
  // (A command that outlasts a sleep overlaps the next one too, checked the same way.)
  EXPECT_GE(interrupted, commands.size()) << "each command interrupts a sleep\n" << prog.tail(30);
}

}  // namespace
