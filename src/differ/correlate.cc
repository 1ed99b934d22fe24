// Units and their correlation across pre and post.
//
// What is hard: GCC numbers what it invents. Clones (`foo.isra.0`, `foo.constprop.1`,
// `foo.part.0`) and static locals (`hits.2`) take counters that shift when unrelated code
// is added, and two functions may each own a static local called `hits`. So names are
// normalised (counters dropped) and, where a normalised name is still ambiguous, data is
// paired by its owners — the functions whose code refers to it — before falling back to
// exact names and then order. Globals pair by name. `.localalias` symbols are aliases of
// their global and fold into its unit.
#include <algorithm>
#include <cctype>
#include <elf.h>
#include <set>

#include <fmt/format.h>

#include "differ/special_sections.h"
#include "differ/units.h"

namespace ls::diff {

std::string normalize_name(std::string_view name) {
  std::string out;
  size_t i = 0;
  // The first component is the C name itself and is kept even if numeric-looking.
  size_t dot = name.find('.', 1);
  out.assign(name.substr(0, dot));
  if (dot == std::string_view::npos) return out;
  i = dot;
  while (i < name.size()) {
    size_t next = name.find('.', i + 1);
    std::string_view part = name.substr(i + 1, next == std::string_view::npos ? std::string_view::npos : next - i - 1);
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    if (!numeric) {
      out += '.';
      out += part;
    }
    if (next == std::string_view::npos) break;
    i = next;
  }
  return out;
}

std::string cold_parent(std::string_view name) {
  std::string n = normalize_name(name);
  constexpr std::string_view suffix = ".cold";
  if (n.size() > suffix.size() && n.ends_with(suffix)) return n.substr(0, n.size() - suffix.size());
  return {};
}

namespace {

bool is_alias_name(std::string_view n) { return n.ends_with(".localalias"); }

// Sections that carry no comparable program content of their own.
bool is_anonymous_candidate(const elf::Section& s) {
  if (!s.alloc() || s.size == 0) return false;
  if (s.merge_strings() || s.merge_constants()) return false;
  if (is_special_table(s.name)) return false;   // kernel tables: entries, not data
  if (s.type != SHT_PROGBITS && s.type != SHT_NOBITS) return false;
  if (s.name.starts_with(".note") || s.name == ".eh_frame" || s.name.starts_with(".init_array") ||
      s.name.starts_with(".fini_array") || s.name.starts_with(".ctors") || s.name.starts_with(".dtors"))
    return false;
  return true;
}

// `.data.rel.ro*` is written only by the dynamic linker, before the program runs, and
// is read-only afterwards (RELRO): to the program it is constant data, whether or not the
// object was built as PIE.
bool writable(const elf::Section& s) { return s.write() && !s.name.starts_with(".data.rel.ro"); }

bool read_only_data(const elf::Section& s) { return !writable(s) && !s.nobits() && !s.exec(); }

}  // namespace

Units::Units(const elf::Object& obj) : obj_(&obj) {
  const auto& syms = obj.symbols();
  const auto& secs = obj.sections();
  by_symbol_.assign(syms.size(), -1);
  by_section_.resize(secs.size());

  // Group defined function/data symbols by (section, value): aliases share a unit.
  std::map<std::pair<uint32_t, uint64_t>, std::vector<uint32_t>> at;
  for (const auto& s : syms) {
    if (!s.in_section()) continue;
    if (s.type != elf::SymbolType::Func && s.type != elf::SymbolType::Object && s.type != elf::SymbolType::Tls)
      continue;
    if (!secs[s.section].alloc()) continue;
    at[{s.section, s.value}].push_back(s.index);
  }
  for (auto& [place, members] : at) {
    // Canonical: a global over a local, a plain name over `.localalias`.
    std::stable_sort(members.begin(), members.end(), [&](uint32_t a, uint32_t b) {
      auto rank = [&](uint32_t i) { return (syms[i].local() ? 2 : 0) + (is_alias_name(syms[i].name) ? 4 : 0); };
      return rank(a) < rank(b);
    });
    const auto& c = syms[members.front()];
    const auto& sec = secs[c.section];
    Unit u;
    u.id = static_cast<int>(units_.size());
    u.kind = c.type == elf::SymbolType::Func ? Kind::Func : Kind::Object;
    u.name = c.name;
    u.norm = normalize_name(c.name);
    u.symbols = members;
    u.section = c.section;
    u.start = c.value;
    for (uint32_t m : members) u.size = std::max(u.size, syms[m].size);
    u.local = std::all_of(members.begin(), members.end(), [&](uint32_t m) { return syms[m].local(); });
    u.writable = writable(sec);
    u.nobits = sec.nobits();
    for (uint32_t m : members) by_symbol_[m] = u.id;
    units_.push_back(std::move(u));
  }
  // Symbols from a malformed object may claim bytes past their section: clamp, so that
  // every later read of a unit stays inside its section.
  for (auto& u : units_) {
    uint64_t limit = secs[u.section].size;
    u.start = std::min(u.start, limit);
    u.size = std::min(u.size, limit - u.start);
    by_section_[u.section].push_back(u.id);
  }
  for (auto& ids : by_section_)
    std::sort(ids.begin(), ids.end(), [&](int a, int b) { return units_[a].start < units_[b].start; });
  // Zero-sized symbols (hand-written assembly) extend to the next unit or the section end.
  for (auto& ids : by_section_)
    for (size_t k = 0; k < ids.size(); ++k) {
      Unit& u = units_[ids[k]];
      if (u.size != 0) continue;
      uint64_t end = k + 1 < ids.size() ? units_[ids[k + 1]].start : secs[u.section].size;
      u.size = end > u.start ? end - u.start : 0;
    }

  std::vector<std::vector<uint64_t>> referenced;
  for (const auto& sec : secs) {
    if (!by_section_[sec.index].empty() || !is_anonymous_candidate(sec)) continue;
    // Read-only anonymous data referenced at several offsets is a pool of unnamed items
    // (at -O0 string literals live in plain `.rodata`): one unit per referenced item,
    // paired later by contents, so that an item moving is not a change.
    // Both sides are always split the same way, so that a pool referenced at one offset
    // in pre and several in post still pairs item by item.
    std::vector<uint64_t> cuts;
    bool split = read_only_data(sec) || is_code_pool(sec.name);
    if (split) {
      if (referenced.empty()) referenced = referenced_offsets();
      cuts = referenced[sec.index];
    }
    if (cuts.empty() || cuts.front() != 0) cuts.insert(cuts.begin(), 0);
    for (size_t k = 0; k < cuts.size(); ++k) {
      Unit u;
      u.id = static_cast<int>(units_.size());
      u.kind = Kind::Anon;
      u.chunk = split;
      u.name = split ? fmt::format("{}+{:#x}", sec.name, cuts[k]) : sec.name;
      u.norm = normalize_name(sec.name);
      u.section = sec.index;
      u.start = cuts[k];
      u.size = (k + 1 < cuts.size() ? cuts[k + 1] : sec.size) - cuts[k];
      u.local = true;
      u.writable = writable(sec);
      u.nobits = sec.nobits();
      by_section_[sec.index].push_back(u.id);
      units_.push_back(std::move(u));
    }
  }

  for (auto& u : units_) {
    const auto& sec = secs[u.section];
    for (size_t i = 0; i < sec.relocs.size(); ++i)
      if (sec.relocs[i].offset >= u.start && sec.relocs[i].offset < u.start + u.size) u.relocs.push_back(i);
  }
}

std::vector<std::vector<uint64_t>> Units::referenced_offsets() const {
  const auto& obj = *obj_;
  std::vector<std::set<uint64_t>> offs(obj.sections().size());
  for (const auto& sec : obj.sections()) {
    if (!sec.alloc()) continue;
    for (const auto& r : sec.relocs) {
      const auto& sym = obj.symbol(r.symbol);
      if (!sym.in_section() || sym.section >= offs.size()) continue;
      if (sym.type != elf::SymbolType::Section && sym.type != elf::SymbolType::NoType) continue;
      const auto& target = obj.section(sym.section);
      if ((target.exec() && !is_code_pool(target.name)) || target.write()) continue;
      int64_t bias = 0;
      if (elf::is_pc_relative(r.kind) && sec.exec()) {
        bias = r.width;
        const auto& fields = operand_fields(sec.index);
        auto it = std::lower_bound(fields.begin(), fields.end(), r.offset,
                                   [](const arch::OperandField& f, uint64_t off) { return f.offset < off; });
        if (it != fields.end() && it->offset == r.offset) bias = it->bias;
      }
      int64_t eff = static_cast<int64_t>(sym.value) + r.addend + bias;
      if (eff >= 0 && static_cast<uint64_t>(eff) < target.size) offs[sym.section].insert(eff);
    }
  }
  std::vector<std::vector<uint64_t>> out(offs.size());
  for (size_t i = 0; i < offs.size(); ++i) out[i].assign(offs[i].begin(), offs[i].end());
  return out;
}

int Units::unit_at(uint32_t sec, uint64_t offset) const {
  if (sec >= by_section_.size()) return -1;
  const auto& ids = by_section_[sec];
  if (ids.empty()) return -1;
  if (ids.size() == 1) return ids.front();
  int best = -1;
  for (int id : ids) {
    const Unit& u = units_[id];
    if (offset >= u.start && offset < u.start + u.size) return id;
    if (u.start <= offset) best = id;
  }
  return best;
}

const std::vector<arch::OperandField>& Units::operand_fields(uint32_t sec) const {
  auto it = fields_.find(sec);
  if (it != fields_.end()) return it->second;
  const auto& s = obj_->section(sec);
  return fields_[sec] = s.exec() ? target().operand_fields(s.bytes) : std::vector<arch::OperandField>{};
}

namespace {

// Functions (normalized, with .cold pieces standing for their parent) whose code refers
// to each data unit.
void record_owners(Units& side) {
  const auto& obj = side.obj();
  std::vector<std::set<std::string>> owners(side.all().size());
  for (const Unit& f : side.all()) {
    if (f.kind != Kind::Func) continue;
    std::string owner = cold_parent(f.name);
    if (owner.empty()) owner = f.norm;
    const auto& sec = obj.section(f.section);
    for (size_t ri : f.relocs) {
      const auto& r = sec.relocs[ri];
      const auto& sym = obj.symbol(r.symbol);
      int target = side.unit_of_symbol(r.symbol);
      if (target < 0 && sym.in_section()) target = side.unit_at(sym.section, sym.value + r.addend + 4);
      if (target >= 0 && side[target].kind != Kind::Func) owners[target].insert(owner);
    }
  }
  for (auto& u : side.all()) u.owners.assign(owners[u.id].begin(), owners[u.id].end());
}

void pair(Unit& a, Unit& b) {
  a.twin = b.id;
  b.twin = a.id;
  a.pair_id = b.pair_id = b.id;
}

// Contents of a chunk as a string: bytes outside relocation fields, then what each
// relocation points at. Run after named units are paired (their pair ids are final).
std::string chunk_signature(const Units& side, const Unit& u) {
  const auto& sec = side.obj().section(u.section);
  std::string sig(reinterpret_cast<const char*>(sec.bytes.data()) + u.start, u.size);
  for (size_t ri : u.relocs) {
    const auto& r = sec.relocs[ri];
    for (unsigned w = 0; w < r.width && r.offset - u.start + w < sig.size(); ++w) sig[r.offset - u.start + w] = 0;
    Reference ref = reference(side, sec, r);
    sig += fmt::format("|{}:{}:{}:{}:{}:{}", r.offset - u.start, static_cast<int>(ref.kind), static_cast<int>(ref.to),
                       ref.id, ref.offset, ref.text);
  }
  return sig;
}

void pair_chunks(Units& pre, Units& post) {
  std::map<std::pair<std::string, std::string>, std::vector<int>> post_by_sig;
  for (const auto& u : post.all())
    if (u.chunk) post_by_sig[{u.norm, chunk_signature(post, u)}].push_back(u.id);
  for (auto& u : pre.all()) {
    if (!u.chunk) continue;
    auto it = post_by_sig.find({u.norm, chunk_signature(pre, u)});
    if (it == post_by_sig.end() || it->second.empty()) continue;
    pair(u, post[it->second.front()]);
    it->second.erase(it->second.begin());
  }
}

}  // namespace

void correlate(Units& pre, Units& post) {
  record_owners(pre);
  record_owners(post);

  auto group_key = [](const Unit& u) {
    return std::to_string(static_cast<int>(u.kind)) + (u.local ? "L:" : "G:") + u.norm;
  };
  std::map<std::string, std::vector<int>> pre_groups, post_groups;
  for (const auto& u : pre.all())
    if (!u.chunk) pre_groups[group_key(u)].push_back(u.id);
  for (const auto& u : post.all())
    if (!u.chunk) post_groups[group_key(u)].push_back(u.id);

  for (auto& [key, pre_ids] : pre_groups) {
    auto it = post_groups.find(key);
    if (it == post_groups.end()) continue;
    std::vector<int>& post_ids = it->second;
    if (pre_ids.size() == 1 && post_ids.size() == 1) {
      pair(pre[pre_ids[0]], post[post_ids[0]]);
      continue;
    }
    // Ambiguous: by owners, then exact name, then order.
    auto unpaired = [](std::vector<int>& ids, Units& side) {
      std::vector<int> out;
      for (int id : ids)
        if (side[id].twin < 0) out.push_back(id);
      return out;
    };
    auto match_by = [&](auto&& same) {
      for (int a : unpaired(pre_ids, pre))
        for (int b : unpaired(post_ids, post))
          if (post[b].twin < 0 && pre[a].twin < 0 && same(pre[a], post[b])) pair(pre[a], post[b]);
    };
    match_by([](const Unit& a, const Unit& b) { return !a.owners.empty() && a.owners == b.owners; });
    match_by([](const Unit& a, const Unit& b) { return a.name == b.name; });
    match_by([](const Unit& a, const Unit& b) {
      // Owners overlapping is better evidence than nothing.
      for (const auto& o : a.owners)
        if (std::find(b.owners.begin(), b.owners.end(), o) != b.owners.end()) return true;
      return false;
    });
    auto rest_a = unpaired(pre_ids, pre);
    auto rest_b = unpaired(post_ids, post);
    for (size_t k = 0; k < std::min(rest_a.size(), rest_b.size()); ++k) pair(pre[rest_a[k]], post[rest_b[k]]);
  }

  // A global in one side may be the same function made static (or back) in the other.
  std::map<std::string, int> post_by_norm;
  for (const auto& u : post.all())
    if (u.twin < 0) post_by_norm.emplace(std::to_string(static_cast<int>(u.kind)) + u.norm, u.id);
  for (auto& u : pre.all()) {
    if (u.twin >= 0 || u.chunk) continue;
    auto it = post_by_norm.find(std::to_string(static_cast<int>(u.kind)) + u.norm);
    if (it != post_by_norm.end() && post[it->second].twin < 0) pair(u, post[it->second]);
  }

  pair_chunks(pre, post);

  // Unpaired units get ids no unit of the other side can have.
  for (auto& u : pre.all())
    if (u.twin < 0) u.pair_id = -1 - u.id;
  for (auto& u : post.all())
    if (u.twin < 0) u.pair_id = (int64_t{1} << 40) + u.id;
}

}  // namespace ls::diff
