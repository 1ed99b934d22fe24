// Renderings of a diff and the `livesplice diff` command.
#include "differ/report.h"

#include <fmt/format.h>

namespace ls::diff {

nlohmann::json to_json(const ObjectDiff& d) {
  nlohmann::json j;
  j["pre"] = d.pre_path;
  j["post"] = d.post_path;
  j["source"] = d.source_file;
  auto& syms = j["symbols"] = nlohmann::json::array();
  std::map<std::string, int> counts{{"same", 0}, {"changed", 0}, {"new", 0}, {"removed", 0}};
  for (const auto& s : d.symbols) {
    nlohmann::json e{{"name", s.name},
                     {"kind", to_string(s.kind)},
                     {"status", to_string(s.status)},
                     {"reason", s.reason},
                     {"local", s.local},
                     {"included", s.included},
                     {"pre_size", s.pre_size},
                     {"post_size", s.post_size}};
    if (!s.post_section.empty()) e["section"] = s.post_section;
    else if (!s.pre_section.empty()) e["section"] = s.pre_section;
    if (!s.parent.empty()) e["parent"] = s.parent;
    syms.push_back(std::move(e));
    counts[std::string(to_string(s.status))]++;
  }
  auto& unsafe = j["unsafe"] = nlohmann::json::array();
  for (const auto& u : d.unsafe) unsafe.push_back({{"symbol", u.symbol}, {"object", u.object}, {"reason", u.reason}});
  j["summary"] = {{"changed", counts["changed"]}, {"new", counts["new"]}, {"removed", counts["removed"]},
                  {"same", counts["same"]}, {"unsafe", d.unsafe.size()}};
  return j;
}

std::string to_text(const ObjectDiff& d) {
  std::string out;
  size_t same = 0;
  for (const auto& s : d.symbols) {
    if (s.status == Status::Same) {
      ++same;
      continue;
    }
    out += fmt::format("  {:<8} {:<6} {}{}\n", to_string(s.status), to_string(s.kind), s.name,
                       s.included ? "  [carried]" : "");
    if (!s.reason.empty()) out += fmt::format("           {}\n", s.reason);
  }
  out += fmt::format("  ({} unchanged)\n", same);
  for (const auto& u : d.unsafe) out += fmt::format("  UNSAFE   {}: {}: {}\n", u.object, u.symbol, u.reason);
  return out;
}

Exit exit_status(const ObjectDiff& d) {
  if (!d.unsafe.empty()) return Exit::Unsafe;
  if (!d.has_changes()) return Exit::NoChange;
  return Exit::Ok;
}

Exit run_diff(Context& ctx, const std::string& pre_path, const std::string& post_path) {
  auto pre = elf::Object::load(pre_path);
  auto post = elf::Object::load(post_path);
  auto d = diff_objects(ctx, pre, post);
  if (ctx.json) fmt::print("{}\n", to_json(d).dump(2));
  else fmt::print("{} -> {}\n{}", pre_path, post_path, to_text(d));
  return exit_status(d);
}

}  // namespace ls::diff
