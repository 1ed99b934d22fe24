// The pause a program whose every thread serves feels (issue 11, point 2(c)): mapping
// and unmapping need system calls made by the target, and when every thread serves, any
// thread lent for them is a serving one. It must be lent for one call only (the clone
// of livesplice's parked thread, parked.h), the batch made while it runs.
//
// Asserted: the thread of the program makes one call per mapping, the parked thread
// the rest; and the program's own SIGTRAP handler outlives the parked thread's single
// steps. Measured and printed, from inside the target
// (cases/serving): each thread spins and records every time it was held over a window
// opened just before a command and closed after it, beside the splice's own stop in
// the same window (the last hold of an apply, the first of an undo). Those times are
// not asserted: on a shared virtual machine a hold also counts the wait for a CPU once
// the thread is let go, which under load is milliseconds, much longer than either
// phase (see the report printed).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Serving : public PtraceTest {
 protected:
  void SetUp() override {
    PtraceTest::SetUp();
    src = build_case("serving", tmp / "src");
    update = create_update(src, case_dir("serving") + "/fix.patch", tmp / "fix.lsu");
    std::string path = tmp / "shared";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ::ftruncate(fd, 4096) != 0) throw Failure("cannot make " + path);
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) throw Failure("cannot map " + path);
    shared = static_cast<std::atomic<uint64_t>*>(p);
    shared_path = path;
  }
  void TearDown() override {
    if (shared) ::munmap(shared, 4096);
  }

  struct Hold {
    uint64_t ended_ns = 0;
    double us = 0;
  };
  std::atomic<uint64_t>* block(int thread) { return shared + 64 * (thread + 1); }

  // Every thread spinning, records cleared: a window opens.
  void open_window(int threads) {
    shared[0] = 1;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (int i = 0; i < threads; ++i)   // out of its nap
      while (block(i)[0] == 0)
        if (std::chrono::steady_clock::now() > deadline) throw Failure("thread " + std::to_string(i) + " never spins");
        else std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (int i = 0; i < threads; ++i) block(i)[1] = 0;
  }
  // Each thread's holds since open_window, in time order; the threads nap again.
  std::vector<std::vector<Hold>> close_window(int threads) {
    std::vector<std::vector<Hold>> out(threads);
    for (int i = 0; i < threads; ++i) {
      uint64_t n = std::min<uint64_t>(block(i)[1], 31);
      for (uint64_t k = 0; k < n; ++k) out[i].push_back({block(i)[2 + 2 * k], block(i)[3 + 2 * k] / 1000.0});
    }
    shared[0] = 0;
    return out;
  }

  // For a window around a command whose splice stop is its last (apply) or first
  // (undo) hold of each thread: the longest of the thread's other holds over that one,
  // the largest over the threads (0 when a thread was held by the splice only). Empty
  // when a thread's holds could not be told apart: one that waited for a CPU when it
  // was stopped and through its stop has the whole stop counted as waiting.
  static std::optional<double> worst_over_splice(const std::vector<std::vector<Hold>>& holds, bool splice_last,
                                                 std::string& log) {
    double worst = 0;
    bool told = true;
    for (size_t i = 0; i < holds.size(); ++i) {
      const auto& h = holds[i];
      log += " thread " + std::to_string(i) + ":";
      for (const auto& x : h) log += " " + std::to_string(static_cast<int>(x.us));
      if (h.empty()) {
        told = false;
        continue;
      }
      const Hold& splice = splice_last ? h.back() : h.front();
      double other = 0;
      for (size_t k = 0; k < h.size(); ++k)
        if (&h[k] != &splice) other = std::max(other, h[k].us);
      worst = std::max(worst, other / std::max(splice.us, 1.0));
    }
    if (!told) return std::nullopt;
    return worst;
  }

  static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }

  // Applies and undoes `rounds` times, each in a window: the program's thread is lent
  // for the clone only, and the holds each thread felt are printed.
  void every_thread_serving(int threads, int rounds) {
    Program prog({src + "/prog", std::to_string(threads), shared_path});
    prog.wait_for_count("sentinel 1001", 3);
    std::vector<double> apply_ratio, undo_ratio;
    std::string log;
    for (int round = 0; round < rounds; ++round) {
      open_window(threads);
      Json applied = apply_ok(prog, update);
      auto apply_holds = close_window(threads);
      prog.wait_for("sentinel 2002", prog.line_count());
      open_window(threads);
      undo_ok(prog);
      auto undo_holds = close_window(threads);
      prog.wait_for("sentinel 1001", prog.line_count());

      // The first apply maps the ledger's copy and the code: two mappings, two clones.
      const int mappings = round == 0 ? 2 : 1;
      EXPECT_EQ(applied["borrowed"]["calls"].get<int>(), mappings) << applied.dump(2);
      EXPECT_GE(applied["parked"]["calls"].get<int>(), 3 * mappings) << applied.dump(2);
      log += "round " + std::to_string(round) + ": apply (reported: map " +
             std::to_string(static_cast<int>(applied["pause_phases_us"]["map"].get<double>())) + " us, splice " +
             std::to_string(static_cast<int>(applied["pause_phases_us"]["splice"].get<double>())) +
             " us), holds in us:";
      if (auto r = worst_over_splice(apply_holds, true, log)) apply_ratio.push_back(*r);
      log += "; undo, holds in us:";
      if (auto r = worst_over_splice(undo_holds, false, log)) undo_ratio.push_back(*r);
      log += "\n";
    }
    // The program raises SIGTRAP and handles it: livesplice's single steps in a thread
    // of the process must not have reset its handler (the process would die of it).
    prog.wait_for_count("sentinel 1001", 3, prog.line_count());
    expect_alive_and_running(prog);
    log += "median of the longest other hold over the splice's: apply " + std::to_string(median(apply_ratio)) +
           ", undo " + std::to_string(median(undo_ratio)) + "\n";
    std::cout << log;
  }

  TempDir tmp;
  std::string src, update, shared_path;
  std::atomic<uint64_t>* shared = nullptr;
};

// One thread, always busy: the only thread there is to lend serves.
TEST_F(Serving, SingleThreadLentForTheCloneOnly) { every_thread_serving(1, 3); }

// Two threads, both busy (as many as this machine has CPUs).
TEST_F(Serving, EveryThreadServingLentForTheCloneOnly) { every_thread_serving(2, 3); }

}  // namespace
