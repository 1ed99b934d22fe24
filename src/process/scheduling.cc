#include "process/scheduling.h"

#include <string>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ls::proc {

namespace {

// Field `field` of the stat file as text, or "" when it cannot be read.
std::string stat_text(pid_t pid, pid_t tid, int field) {
  char path[96], buf[1024];
  if (tid) std::snprintf(path, sizeof path, "/proc/%d/task/%d/stat", static_cast<int>(pid), static_cast<int>(tid));
  else std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  if (!f) return {};
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');   // the end of field 2 (comm), which may hold spaces
  if (!p) return {};
  int at = 2;
  for (++p; *p && at < field; ++p)
    if (*p == ' ') ++at;
  if (at != field) return {};
  const char* end = std::strchr(p, ' ');
  return end ? std::string(p, end) : std::string(p);
}

}  // namespace

int64_t stat_field(pid_t pid, pid_t tid, int field) {
  std::string text = stat_text(pid, tid, field);
  return text.empty() ? -1 : std::strtoll(text.c_str(), nullptr, 10);
}

char stat_state(pid_t pid, pid_t tid) {
  std::string text = stat_text(pid, tid, 3);
  return text.size() == 1 ? text[0] : 0;
}

RealtimeScope::RealtimeScope() {
  policy_ = sched_getscheduler(0);
  if (policy_ < 0 || sched_getparam(0, &saved_) != 0) return;
  sched_param rt{};
  rt.sched_priority = 1;
  raised_ = policy_ == SCHED_OTHER && sched_setscheduler(0, SCHED_FIFO, &rt) == 0;
}

void RealtimeScope::end() {
  if (raised_) (void)sched_setscheduler(0, policy_, &saved_);
  raised_ = false;
}

CpuScope::CpuScope(pid_t pid, pid_t tid) {
  int cpu = static_cast<int>(stat_field(pid, tid, 39));   // processor: the CPU it last ran on
  if (cpu < 0 || sched_getaffinity(0, sizeof saved_, &saved_) != 0 || !CPU_ISSET(cpu, &saved_)) return;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  moved_ = sched_setaffinity(0, sizeof one, &one) == 0;
  cpu_ = cpu;
}

void CpuScope::end() {
  if (moved_) (void)sched_setaffinity(0, sizeof saved_, &saved_);
  moved_ = false;
}

ThreadPriorityScope::ThreadPriorityScope(pid_t tid, int cpu) : tid_(tid) {
  if (sched_getaffinity(tid, sizeof cpus_, &cpus_) != 0) CPU_ZERO(&cpus_);
  policy_ = sched_getscheduler(tid);
  if (policy_ < 0 || sched_getparam(tid, &saved_) != 0) return;
  sched_param rt{};
  rt.sched_priority = 1;
  // Only a thread of a normal policy: a real-time one keeps its own priority (it may be
  // higher), and a SCHED_DEADLINE one could not be given its parameters back this way.
  int base = policy_ & ~SCHED_RESET_ON_FORK;
  bool normal = base == SCHED_OTHER || base == SCHED_BATCH || base == SCHED_IDLE;
  raised_ = normal && sched_setscheduler(tid, SCHED_FIFO | SCHED_RESET_ON_FORK, &rt) == 0;
  if (cpu >= 0 && CPU_ISSET(cpu, &cpus_) && CPU_COUNT(&cpus_) > 1) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    pinned_ = sched_setaffinity(tid, sizeof one, &one) == 0;
  }
}

ThreadPriorityScope::~ThreadPriorityScope() {
  if (raised_) (void)sched_setscheduler(tid_, policy_, &saved_);
  if (pinned_) (void)sched_setaffinity(tid_, sizeof cpus_, &cpus_);
}

void raise_own_thread(pid_t tid, const cpu_set_t& cpus) {
  sched_param rt{};
  rt.sched_priority = 1;
  (void)sched_setscheduler(tid, SCHED_FIFO, &rt);
  if (CPU_COUNT(&cpus) > 0) (void)sched_setaffinity(tid, sizeof cpus, &cpus);
}

}  // namespace ls::proc
