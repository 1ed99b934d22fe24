// Reading an update back: `livesplice info`.
//
// The file goes through the ELF layer's full validation (every range, link and
// relocation), then its digest and its manifest's schema (manifest.h) before anything
// of it is shown, so that later stages (apply) can index without checking again. A file
// that fails any of this is "not a usable update" with the reason, exit 1.
#include "update/reader.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "update/format.h"
#include "update/manifest.h"

namespace ls::update {
namespace {

std::string hex_size(const std::optional<uint64_t>& v) { return v ? fmt::format("{:#x}", *v) : "-"; }

}  // namespace

Exit run_info(Context& ctx, const std::string& path) {
  Manifest m = read_manifest(path);
  if (ctx.json) {
    // The manifest as it is in the file, with the verified digest beside it.
    nlohmann::ordered_json j = m.json;
    j["digest"] = m.digest;
    fmt::print("{}\n", j.dump(2));
    return Exit::Ok;
  }
  auto object_name = [&](size_t k) { return m.objects[k].path; };
  auto size_of = [](const std::string& p) {
    std::error_code ec;
    auto n = std::filesystem::file_size(p, ec);
    return ec ? std::string("?") : fmt::format("{} bytes", n);
  };

  fmt::print("{}: livesplice update (format {}, made by livesplice {} on {}), {}\n", path, kFormatVersion,
             m.livesplice_version, m.created, size_of(path));
  fmt::print("digest {} (verified)\n", m.digest);
  if (!m.label.empty()) fmt::print("label {}\n", printable(m.label));
  // Kernel updates name the kernel by release; their targets are vmlinux and modules.
  if (m.kernel)
    fmt::print("kernel {} (Linux {}){}\n", m.kernel_release, m.kernel_version,
               m.kernel_module_section
                   ? fmt::format(", its new code's module made from the skeleton in section {}", m.kernel_module_section)
                   : std::string(", no skeleton module (made before apply --kernel loaded modules)"));
  for (const auto& t : m.targets) {
    fmt::print("target {} ({}, {})\n", t.name, t.kind, t.path);
    if (t.kind.starts_with("kernel")) continue;
    fmt::print("  build-id {}", t.build_id.empty() ? "(none)" : t.build_id);
    if (t.original_build_id.empty()) fmt::print("  (not built before create: pre build's)\n");
    else fmt::print("  (as built before create)\n");
    if (!t.pre_build_id.empty() && t.pre_build_id != t.build_id) fmt::print("  pre build's build-id {}\n", t.pre_build_id);
  }
  if (m.targets.empty()) fmt::print("target: unknown (no link of the rebuilt objects was seen)\n");

  fmt::print("patch {} ({} file{}): {}\n", m.patch_name, m.patch_files.size(), m.patch_files.size() == 1 ? "" : "s",
             fmt::join(m.patch_files, ", "));

  fmt::print("objects:\n");
  for (const auto& o : m.objects) {
    std::vector<std::string> tnames;
    for (size_t t : o.targets) tnames.push_back(m.targets[t].name);
    fmt::print("  {:<28} from {:<20} in {:<16} (pre object: {})\n", o.path, o.source,
               tnames.empty() ? std::string("?") : fmt::format("{}", fmt::join(tnames, ", ")), o.pre);
    for (const auto& n : o.notes) fmt::print("      note: {}\n", n);
  }

  size_t width = 8;
  for (const auto& f : m.functions) width = std::max(width, f.name.size() + (f.local ? 9 : 0));
  fmt::print("functions:\n");
  for (const auto& f : m.functions) {
    std::string name = f.name + (f.local ? " (static)" : "");
    fmt::print("  {:<8} {:<{}}  pre {:>6}  post {:>6}  {}{}\n", to_string(f.status), name, width, hex_size(f.pre_size),
               hex_size(f.post_size), object_name(f.object),
               f.parent.empty() ? std::string() : fmt::format("  (part of {})", f.parent));
    if (!f.reason.empty() && ctx.verbose) fmt::print("           {}\n", f.reason);
  }
  if (!m.data.empty()) {
    fmt::print("data:\n");
    for (const auto& d : m.data)
      fmt::print("  {:<8} {:<{}}  size {:>6}  {}{}\n", to_string(d.status), d.name + (d.local ? " (static)" : ""), width,
                 hex_size(d.size), object_name(d.object), d.carried ? "" : "  (not carried)");
  }
  if (!m.hooks.empty()) {
    fmt::print("hooks (run in the target, in this order within a kind):\n");
    for (const auto& h : m.hooks)
      fmt::print("  {:<10} {}  {} (runs {})\n", to_string(h.kind), printable(h.name), object_name(h.object),
                 printable(h.function));
  }
  if (!m.ignored.empty()) {
    fmt::print("ignored (changed, left as the running program has them: LIVESPLICE_IGNORE_FUNCTION):\n");
    for (const auto& i : m.ignored) fmt::print("  {}  {}\n", printable(i.name), object_name(i.object));
  }
  size_t pre = 0, post = 0;
  for (const auto& s : m.sections) (s.role == "pre" ? pre : post)++;
  size_t local_run = std::count_if(m.run_symbols.begin(), m.run_symbols.end(), [](const auto& r) { return r.local; });
  fmt::print("carries {} pre and {} post sections; {} run symbols ({} file-local)\n", pre, post,
             m.run_symbols.size(), local_run);
  return Exit::Ok;
}

}  // namespace ls::update
