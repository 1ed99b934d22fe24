// The differ's driver: correlate, compare, propagate, check safety, decide inclusion.
//
// Propagation is where correctness lives. A unit can be unchanged in itself and still
// need replacing, because something private to it changed:
//  - a jump table or other anonymous data it alone uses (`.rodata.foo`): references to
//    it compare equal by position, so its own change must be pushed to its users;
//  - its `.cold` piece: the piece jumps back into the middle of its parent, so parent
//    and piece are only ever replaced together.
// Inclusion then closes over references: an included function carries every new unit
// and every anonymous unit it refers to (a new function must not use the old jump
// table, which points into the old body). Existing named data is never included: the
// new code must use the running program's instance of it.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <set>

#include "differ/special_sections.h"
#include "differ/units.h"

namespace ls::diff {

std::string_view to_string(Status s) {
  switch (s) {
    case Status::Same: return "same";
    case Status::Changed: return "changed";
    case Status::New: return "new";
    case Status::Removed: return "removed";
  }
  return "?";
}

std::string_view to_string(UnitKind k) { return k == UnitKind::Func ? "func" : "object"; }

bool ObjectDiff::has_changes() const {
  return std::any_of(symbols.begin(), symbols.end(), [](const SymbolDiff& s) {
    return s.kind == UnitKind::Func && (s.status == Status::Changed || (s.status == Status::New && s.included));
  });
}

// Units a unit's relocations point at (post side).
std::vector<int> targets_of(const Units& side, const Unit& u) {
  std::vector<int> out;
  const auto& obj = side.obj();
  const auto& sec = obj.section(u.section);
  for (size_t ri : u.relocs) {
    const auto& r = sec.relocs[ri];
    const auto& sym = obj.symbol(r.symbol);
    int t = side.unit_of_symbol(r.symbol);
    if (t < 0 && sym.in_section()) {
      const auto& ts = obj.section(sym.section);
      if (ts.merge_strings() || ts.merge_constants()) continue;
      int64_t bias = elf::is_pc_relative(r.kind) && sec.exec() ? static_cast<int64_t>(r.width) : 0;
      int64_t eff = static_cast<int64_t>(sym.value) + r.addend + bias;
      t = side.unit_at(sym.section, eff < 0 ? 0 : eff);
    }
    if (t >= 0 && t != u.id) out.push_back(t);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {

std::vector<uint32_t> literal_sections_of(const Units& side, const Unit& u) {
  std::vector<uint32_t> out;
  const auto& obj = side.obj();
  const auto& sec = obj.section(u.section);
  for (size_t ri : u.relocs) {
    const auto& sym = obj.symbol(sec.relocs[ri].symbol);
    if (!sym.in_section()) continue;
    const auto& ts = obj.section(sym.section);
    if (ts.merge_strings() || ts.merge_constants()) out.push_back(ts.index);
  }
  return out;
}

// Read-only data private to this object (jump tables, switch-conversion tables such as
// `CSWTCH.12`, `static const` arrays): nobody can write it, so an update can carry a new
// copy for the new code while the old code keeps the old one. Changes to it make its
// users changed instead of making the patch unsafe.
bool travels_with_users(const Unit& u) {
  return u.kind != Kind::Func && u.local && !u.writable;
}

void mark_changed(Unit& u, std::string reason) {
  if (u.status != Status::Same) return;
  u.status = Status::Changed;
  u.reason = std::move(reason);
}

// Pushes changes of private pieces (anonymous data, .cold parts) to the functions that
// own them, until nothing moves.
void propagate(Units& post) {
  std::map<std::string, int> func_by_norm;
  for (const auto& u : post.all())
    if (u.kind == Kind::Func) func_by_norm.emplace(u.norm, u.id);
  for (bool moved = true; moved;) {
    moved = false;
    for (auto& f : post.all()) {
      if (f.kind != Kind::Func) continue;
      if (f.status == Status::Same) {
        for (int t : targets_of(post, f)) {
          const Unit& d = post[t];
          if (travels_with_users(d) && d.status != Status::Same && d.status != Status::New) {
            mark_changed(f, fmt::format("its constant data {} changed: {}", d.name, d.reason));
            moved = true;
            break;
          }
        }
      }
      std::string parent = cold_parent(f.name);
      if (parent.empty()) continue;
      auto it = func_by_norm.find(parent);
      if (it == func_by_norm.end()) continue;
      Unit& p = post[it->second];
      if (f.status != Status::Same && p.status == Status::Same) {
        mark_changed(p, fmt::format("its cold part {} changed", f.name));
        moved = true;
      } else if (p.status != Status::Same && f.status == Status::Same) {
        mark_changed(f, fmt::format("part of changed {} (cold code jumps back into its parent)", p.name));
        moved = true;
      }
    }
  }
}

void check_data_safety(const Units& pre, const Units& post, ObjectDiff& out) {
  for (const auto& d : post.all()) {
    if (d.status == Status::New && post.obj().section(d.section).tls())
      out.unsafe.push_back({d.name, post.obj().path(),
                            "new thread-local variable: a running program's threads cannot be given "
                            "new thread-local storage"});
    if (d.kind == Kind::Func || d.status != Status::Changed) continue;
    if (travels_with_users(d)) continue;
    const Unit& old = pre[d.twin];
    std::string what = d.kind == Kind::Anon ? "anonymous data " + d.name : d.name;
    std::string reason;
    if (old.size != d.size)
      reason = fmt::format("size of existing data changed from {} to {} bytes; the running program's "
                           "instance cannot be resized", old.size, d.size);
    else
      reason = fmt::format("initial value of existing data changed ({}); the running program keeps "
                           "its current value, so the new initialiser would never take effect",
                           d.reason);
    out.unsafe.push_back({what, post.obj().path(), reason, true});
  }
}

// `roots`: the hooks' functions (hooks.cc), carried as changed functions are.
void decide_inclusion(Units& post, ObjectDiff& out, const std::vector<int>& roots) {
  std::deque<int> work;
  auto include = [&](Unit& u) {
    if (u.included) return;
    u.included = true;
    work.push_back(u.id);
  };
  for (auto& u : post.all()) {
    if (u.kind == Kind::Func && u.status == Status::Changed) include(u);
    // New globals may be used from other objects' changed code: always carried.
    if (u.kind != Kind::Anon && u.status == Status::New && !u.local) include(u);
  }
  for (int r : roots) include(post[r]);
  std::set<uint32_t> anon_sections;
  while (!work.empty()) {
    Unit& u = post[work.front()];
    work.pop_front();
    for (int t : targets_of(post, u)) {
      Unit& d = post[t];
      // Jump tables point into the body they belong to: the new body needs its own.
      bool private_table = d.kind == Kind::Anon && !d.writable;
      if (private_table || d.status == Status::New || (travels_with_users(d) && d.status == Status::Changed))
        include(d);
    }
    for (uint32_t s : literal_sections_of(post, u)) anon_sections.insert(s);
    if (u.kind == Kind::Anon) anon_sections.insert(u.section);
  }
  out.included_anonymous_sections.assign(anon_sections.begin(), anon_sections.end());
}

SymbolDiff describe(const Units& pre, const Units& post, const Unit& u, bool pre_side) {
  SymbolDiff s;
  const Unit* a = pre_side ? &u : (u.twin >= 0 ? &pre[u.twin] : nullptr);
  const Unit* b = pre_side ? nullptr : &u;
  s.name = u.name;
  s.kind = u.kind == Kind::Func ? UnitKind::Func : UnitKind::Object;
  s.status = pre_side ? Status::Removed : u.status;
  s.reason = pre_side ? "no longer in the object" : u.reason;
  s.local = u.local;
  s.included = !pre_side && u.included;
  if (a) {
    s.pre_symbol = static_cast<int>(a->symbols.front());
    s.pre_size = a->size;
    s.pre_section = pre.obj().section(a->section).name;
  }
  if (b) {
    s.post_symbol = static_cast<int>(b->symbols.front());
    s.post_size = b->size;
    s.post_section = post.obj().section(b->section).name;
  }
  s.parent = cold_parent(u.name);
  return s;
}

}  // namespace

ObjectDiff diff_objects(Context& ctx, const elf::Object& pre, const elf::Object& post, const DiffOptions& options) {
  if (pre.machine() != post.machine()) fail("{} and {}: different architectures", pre.path(), post.path());
  if (!pre.source_file().empty() && !post.source_file().empty() && pre.source_file() != post.source_file())
    ctx.warn(fmt::format("{} was compiled from {}, {} from {}", pre.path(), pre.source_file(), post.path(),
                         post.source_file()));

  ObjectDiff out;
  out.pre_path = pre.path();
  out.post_path = post.path();
  out.source_file = post.source_file();

  auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  Units P(pre), Q(post);
  correlate(P, Q);

  for (auto& u : Q.all()) {
    if (u.twin < 0) {
      u.status = Status::New;
      u.reason = u.kind == Kind::Func ? "new function" : "new data";
      continue;
    }
    if (auto why = compare_units(P, P[u.twin], Q, u)) {
      u.status = Status::Changed;
      u.reason = *why;
    }
  }
  compare_special(P, Q, out);   // kernel tables: entry changes make their owners changed
  propagate(Q);
  ignore_functions(Q, out);   // after propagation: what the patch says need not be live
  check_data_safety(P, Q, out);
  std::vector<int> hooks = find_hooks(Q, out);
  decide_inclusion(Q, out, hooks);
  check_hooks(Q, hooks, out);
  carry_special(Q, out);

  for (const auto& u : Q.all())
    if (u.kind != Kind::Anon && !is_patch_section(post.section(u.section).name))
      out.symbols.push_back(describe(P, Q, u, false));
  for (const auto& u : P.all())
    if (u.kind != Kind::Anon && u.twin < 0) out.symbols.push_back(describe(P, Q, u, true));

  ctx.note(fmt::format("{}: {} + {} units compared in {:.3f} s", post.path(), P.all().size(), Q.all().size(), elapsed()));
  if (options.check_layouts && out.has_changes()) {
    for (auto& c : changed_types(ctx, pre, post)) out.unsafe.push_back({c.type, post.path(), c.reason, true});
  }
  handle_converted_data(Q, out);
  ctx.note(fmt::format("{}: struct layouts and enums checked, {:.3f} s in all", post.path(), elapsed()));
  return out;
}

}  // namespace ls::diff
