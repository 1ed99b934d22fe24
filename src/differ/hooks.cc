// Hooks a patch declares (include/livesplice/patch.h): functions recorded, one 8-byte
// pointer each, in section `.livesplice.hooks.<kind>` of the post object.
//
// What is hard is that nothing calls a hook in the program: the differ would see a new
// static function referred to by new static data and carry neither. So each hook
// section's relocations name the hook functions, which become roots of inclusion like
// the changed functions (everything new they call travels with them), while the
// sections themselves are neither data of the program nor carried: the manifest lists
// the hooks instead (format.h). A hook must be new code: one the running program
// already has is an earlier patch's, never this update's. And a hook must not reach a
// function this update replaces: while hooks run, that function's entry holds the int3
// that keeps threads out of it (safety.h), so the call would trap and fail the apply.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <deque>
#include <set>

#include "differ/units.h"

namespace ls::diff {

namespace {

constexpr std::string_view kPatchPrefix = ".livesplice.";
constexpr std::string_view kHookPrefix = ".livesplice.hooks.";
constexpr std::string_view kIgnoreSection = ".livesplice.ignore";
constexpr std::string_view kConvertedSection = ".livesplice.converted";
constexpr std::array<std::string_view, 6> kHookKinds = {"pre_apply", "apply", "post_apply",
                                                        "pre_undo",  "undo",  "post_undo"};

// The unit relocation `r` points at, or -1.
int unit_named(const Units& side, const elf::Reloc& r) {
  const auto& obj = side.obj();
  int t = side.unit_of_symbol(r.symbol);
  const auto& sym = obj.symbol(r.symbol);
  if (t < 0 && sym.in_section()) {
    int64_t at = static_cast<int64_t>(sym.value) + r.addend;
    t = side.unit_at(sym.section, at < 0 ? 0 : static_cast<uint64_t>(at));
  }
  return t;
}

// The author's function, from the header's wrapper name `livesplice_hook_<kind>__<fn>`.
std::string author_name(std::string_view wrapper, std::string_view kind) {
  std::string prefix = fmt::format("livesplice_hook_{}__", kind);
  return wrapper.starts_with(prefix) ? std::string(wrapper.substr(prefix.size())) : std::string(wrapper);
}

bool is_hook_section(std::string_view name) { return name.starts_with(kHookPrefix); }

// Whether entry `offset` of patch section `sec` is this patch's: one the pre object has
// too belongs to an earlier patch.
bool added_here(const Units& post, const elf::Section& sec, uint64_t offset) {
  int entry = post.unit_at(sec.index, offset);
  return entry < 0 || post[entry].status == Status::New;
}

}  // namespace

bool is_patch_section(std::string_view name) { return name.starts_with(kPatchPrefix); }

std::vector<int> find_hooks(const Units& post, ObjectDiff& out) {
  std::vector<int> roots;
  const auto& obj = post.obj();
  for (const auto& sec : obj.sections()) {
    if (!is_hook_section(sec.name)) continue;
    std::string kind(sec.name.substr(kHookPrefix.size()));
    if (std::find(kHookKinds.begin(), kHookKinds.end(), kind) == kHookKinds.end()) {
      out.unsafe.push_back({sec.name, obj.path(), "unknown kind of hook (livesplice/patch.h defines pre_apply, "
                                                  "apply, post_apply, pre_undo, undo and post_undo)"});
      continue;
    }
    for (const auto& r : sec.relocs) {
      if (!added_here(post, sec, r.offset)) continue;
      int t = unit_named(post, r);
      if (t < 0 || post[t].kind != Kind::Func) {
        out.unsafe.push_back({obj.where(sec, r.offset), obj.path(), "a hook entry that names no function"});
        continue;
      }
      const Unit& f = post[t];
      if (f.status != Status::New) {
        out.unsafe.push_back({f.name, obj.path(),
                              fmt::format("{} hook is a function the running program already has; a hook must be "
                                          "new code the patch adds (livesplice/patch.h)",
                                          kind)});
        continue;
      }
      out.hooks.push_back({kind, author_name(f.name, kind), f.name, static_cast<int>(f.symbols.front())});
      roots.push_back(t);
    }
  }
  return roots;
}

void check_hooks(const Units& post, const std::vector<int>& roots, ObjectDiff& out) {
  for (size_t h = 0; h < roots.size(); ++h) {
    // Through the new code the hook brings; code the program already has is left as it
    // is by the update, so a call into it is a call of the running program's.
    std::set<int> seen{roots[h]};
    std::deque<int> work{roots[h]};
    while (!work.empty()) {
      const Unit& u = post[work.front()];
      work.pop_front();
      for (int t : targets_of(post, u)) {
        const Unit& d = post[t];
        if (d.kind != Kind::Func || !seen.insert(t).second) continue;
        if (d.status == Status::Changed) {
          out.unsafe.push_back({out.hooks[h].name, post.obj().path(),
                                fmt::format("{} hook calls {}, which this update replaces: the entry of a "
                                            "function being replaced is closed while hooks run",
                                            out.hooks[h].kind, d.name)});
          work.clear();
          break;
        }
        if (d.status == Status::New) work.push_back(t);
      }
    }
  }
}

void ignore_functions(Units& post, ObjectDiff& out) {
  const auto& obj = post.obj();
  const elf::Section* sec = obj.find_section(kIgnoreSection);
  if (!sec) return;
  for (const auto& r : sec->relocs) {
    if (!added_here(post, *sec, r.offset)) continue;
    int t = unit_named(post, r);
    if (t < 0 || post[t].kind != Kind::Func) {
      out.unsafe.push_back({obj.where(*sec, r.offset), obj.path(), "LIVESPLICE_IGNORE_FUNCTION names no function"});
      continue;
    }
    Unit& f = post[t];
    if (f.status == Status::New) {
      out.unsafe.push_back({f.name, obj.path(), "LIVESPLICE_IGNORE_FUNCTION names a new function, which the running "
                                                "program does not have: nothing to leave as it is"});
      continue;
    }
    if (f.status == Status::Same) {
      out.notes.push_back(fmt::format("{}: LIVESPLICE_IGNORE_FUNCTION, but it did not change", f.name));
      continue;
    }
    out.ignored.push_back({f.name, f.reason});
    // It and its pieces (.cold) stay as the running program has them.
    for (auto& u : post.all())
      if (u.id == f.id || (u.kind == Kind::Func && cold_parent(u.name) == f.norm)) {
        u.status = Status::Same;
        u.reason.clear();
      }
  }
}

void handle_converted_data(const Units& post, ObjectDiff& out) {
  std::set<std::string, std::less<>> converted;
  if (const elf::Section* sec = post.obj().find_section(kConvertedSection); sec && !sec->nobits())
    for (size_t at = 0; at < sec->bytes.size();) {
      size_t end = at;
      while (end < sec->bytes.size() && sec->bytes[end] != 0) ++end;
      if (end > at) converted.emplace(reinterpret_cast<const char*>(sec->bytes.data()) + at, end - at);
      at = end + 1;
    }
  const bool converts = std::any_of(out.hooks.begin(), out.hooks.end(), [](const Hook& h) { return h.kind == "apply"; });
  std::erase_if(out.unsafe, [&](const Unsafe& u) {
    if (!u.data || !converts || !converted.count(u.symbol)) return false;
    out.notes.push_back(fmt::format("{}: {}; converted by the patch's apply hook (LIVESPLICE_CONVERTED)", u.symbol,
                                    u.reason));
    return true;
  });
  for (auto& u : out.unsafe) {
    if (!u.data) continue;
    if (converted.count(u.symbol))
      u.reason += "; LIVESPLICE_CONVERTED names it, but this file declares no LIVESPLICE_APPLY hook to convert it";
    else
      u.reason += fmt::format("; if the patch converts the running program's data in a LIVESPLICE_APPLY hook, say so "
                              "with LIVESPLICE_CONVERTED(\"{}\") (livesplice/patch.h)",
                              u.symbol);
  }
}

}  // namespace ls::diff
