#include "kernel/kallsyms.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <map>
#include <sstream>

namespace ls::kernel {

Result<Kallsyms> Kallsyms::read(const std::string& path) {
  std::ifstream in(path);
  if (!in) return error("{}: cannot open (is this Linux, and are we root?)", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

Result<Kallsyms> Kallsyms::parse(std::string_view text, std::string_view what) {
  Kallsyms k;
  size_t line_no = 0;
  bool any_address = false;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    ++line_no;
    if (line.empty()) continue;
    // "ffffffff81000000 T _stext" or "ffffffffc0a01000 t foo\t[ext4]"
    uint64_t addr = 0;
    auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), addr, 16);
    size_t pos = p - line.data();
    if (ec != std::errc() || pos + 3 > line.size() || line[pos] != ' ' || line[pos + 2] != ' ')
      return error("{}:{}: not a kallsyms line: '{}'", what, line_no, line);
    KSymbol s;
    s.addr = TargetAddr(addr);
    s.type = line[pos + 1];
    std::string_view rest = line.substr(pos + 3);
    size_t tab = rest.find('\t');
    s.name = std::string(rest.substr(0, tab));
    if (tab != std::string_view::npos) {
      std::string_view mod = rest.substr(tab + 1);
      if (mod.size() < 2 || mod.front() != '[' || mod.back() != ']')
        return error("{}:{}: bad module field '{}'", what, line_no, mod);
      s.module = std::string(mod.substr(1, mod.size() - 2));
    }
    any_address |= addr != 0;
    k.syms_.push_back(std::move(s));
  }
  if (k.syms_.empty()) return error("{}: no symbols", what);
  if (!any_address)
    return error("{}: every address reads as 0 (not root, or kernel.kptr_restrict=2)", what);

  std::stable_sort(k.syms_.begin(), k.syms_.end(),
                   [](const KSymbol& a, const KSymbol& b) { return a.addr < b.addr; });
  // Sizes: distance to the next higher address within the same module (aliases at one
  // address share it).
  std::map<std::string, std::vector<KSymbol*>> by_module;
  for (KSymbol& s : k.syms_) by_module[s.module].push_back(&s);
  for (auto& [mod, list] : by_module) {
    for (size_t i = 0, j = 0; i < list.size(); i = j) {
      for (j = i; j < list.size() && list[j]->addr == list[i]->addr; ++j) {}
      uint64_t size = j < list.size() ? list[j]->addr - list[i]->addr : 0;
      for (size_t n = i; n < j; ++n) list[n]->size = size;
    }
  }
  return k;
}

std::vector<const KSymbol*> Kallsyms::named(std::string_view name,
                                            std::optional<std::string_view> module) const {
  std::vector<const KSymbol*> out;
  for (const KSymbol& s : syms_) {
    if (s.name != name) continue;
    if (module && !(*module == "vmlinux" ? s.module.empty() : s.module == *module)) continue;
    out.push_back(&s);
  }
  return out;
}

Result<const KSymbol*> Kallsyms::unique(std::string_view name,
                                       std::optional<std::string_view> module) const {
  auto all = named(name, module);
  std::string in = module ? fmt::format(" in {}", *module) : "";
  if (all.empty()) return error("kallsyms: no symbol '{}'{}", name, in);
  if (all.size() > 1) {
    std::string where;
    for (const KSymbol* s : all)
      where += fmt::format(" {}{}", s->addr, s->module.empty() ? "" : " [" + s->module + "]");
    return error("kallsyms: '{}'{} is ambiguous:{}", name, in, where);
  }
  return all.front();
}

const KSymbol* Kallsyms::containing(TargetAddr addr) const {
  auto it = std::upper_bound(syms_.begin(), syms_.end(), addr,
                             [](TargetAddr a, const KSymbol& s) { return a < s.addr; });
  while (it != syms_.begin()) {
    --it;
    if (it->addr > addr) continue;
    if (it->size != 0 && addr - it->addr < static_cast<int64_t>(it->size)) return &*it;
    return nullptr;
  }
  return nullptr;
}

const KSymbol* Kallsyms::at_or_below(TargetAddr addr) const {
  auto it = std::upper_bound(syms_.begin(), syms_.end(), addr,
                             [](TargetAddr a, const KSymbol& s) { return a < s.addr; });
  return it == syms_.begin() ? nullptr : &*std::prev(it);
}

}  // namespace ls::kernel
