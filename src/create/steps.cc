#include "create/steps.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace fs = std::filesystem;

namespace ls::create {

WorkDir::WorkDir(Context& ctx, std::string_view prefix, bool keep) : ctx_(ctx), keep_(keep) {
  const char* tmp = getenv("TMPDIR");
  std::string templ = fmt::format("{}/{}.XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) fail("cannot create a work directory in {}: {}", templ, strerror(errno));
  dir_ = fs::canonical(buf.data()).string();
}

WorkDir::~WorkDir() {
  if (keep_) {
    ctx_.progress(fmt::format("work directory kept: {}", dir_));
    return;
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

Exit run_interruptible(Context& ctx, std::string_view tree, const std::function<Exit(const SignalGuard&)>& pipeline) {
  SignalGuard signals;
  try {
    return pipeline(signals);
  } catch (const Interrupted& e) {
    ctx.report(fmt::format("{}; the {} was restored", e.what(), tree));
    signals.reraise();
    throw;
  }
}

bool DiffedPairs::changed() const {
  return std::any_of(diffs.begin(), diffs.end(), [](const auto& d) { return d.has_changes(); });
}

DiffedPairs diff_pairs(Context& ctx, const std::vector<BuiltPair>& pairs, const SignalGuard& signals) {
  ctx.progress(fmt::format("diffing {} object{}", pairs.size(), plural(pairs.size())));
  DiffedPairs out;
  for (const auto& p : pairs) {
    out.objects.push_back(elf::Object::load(p.pre_path));
    out.pre.push_back(&out.objects.back());
    out.objects.push_back(elf::Object::load(p.post_path));
    out.post.push_back(&out.objects.back());
    out.diffs.push_back(diff::diff_objects(ctx, *out.pre.back(), *out.post.back()));
    signals.check();
  }
  return out;
}

void refuse_unsafe(const DiffedPairs& diffed, const std::vector<std::string>& labels,
                   const std::function<bool(size_t)>& counts, std::string_view patch, std::string_view runner) {
  std::vector<std::string> unsafe;
  for (size_t i = 0; i < diffed.size(); ++i)
    if (counts(i))
      for (const auto& u : diffed.diffs[i].unsafe) unsafe.push_back(fmt::format("  {}: {}: {}", labels[i], u.symbol, u.reason));
  if (!unsafe.empty())
    throw Error(fmt::format("{} cannot be applied to a running {} safely:\n{}", patch, runner, fmt::join(unsafe, "\n")),
                Exit::Unsafe);
}

std::string nothing_changed(size_t rebuilt) {
  return fmt::format("{} object{} rebuilt, no function changed", rebuilt, plural(rebuilt));
}

void report_no_change(Context& ctx, std::string_view why, size_t rebuilt, const std::vector<std::string>& notes,
                      const nlohmann::json& extra) {
  std::string msg = fmt::format("no change: {}", why);
  for (const auto& n : notes) msg += fmt::format("\n  note: {}", n);
  ctx.report(msg);
  if (ctx.json) {
    nlohmann::json j{{"result", "no-change"}, {"objects_rebuilt", rebuilt}};
    j.update(extra);
    fmt::print("{}\n", j.dump());
  }
}

update::WriteSummary write_update_file(Context& ctx, const update::UpdateInput& in, const std::string& output,
                                       const SignalGuard& signals) {
  ctx.progress(fmt::format("writing {}", output));
  // What the patch said to livesplice (livesplice/patch.h), listed.
  for (const auto& u : in.units) {
    for (const auto& h : u.diff->hooks) ctx.progress(fmt::format("  {} hook {}:{}", h.kind, u.path, h.name));
    for (const auto& i : u.diff->ignored)
      ctx.progress(fmt::format("  left out, as the patch says (LIVESPLICE_IGNORE_FUNCTION): {}:{}", u.path, i.name));
  }
  update::WriteSummary sum = update::write_update(ctx, in, output);
  if (signals.pending()) {
    // Interrupted while writing: the update may be whole, but the user asked to stop.
    std::error_code ec;
    fs::remove(output, ec);
    signals.check();
  }
  return sum;
}

nlohmann::ordered_json summary_json(const std::string& output, const update::WriteSummary& sum) {
  nlohmann::ordered_json j;
  j["result"] = "ok";
  j["update"] = output;
  j["update_bytes"] = sum.bytes;
  return j;
}

void add_summary_counts(nlohmann::ordered_json& j, size_t rebuilt, const update::WriteSummary& sum) {
  j["objects_rebuilt"] = rebuilt;
  j["functions_changed"] = sum.functions_changed;
  j["functions_new"] = sum.functions_new;
  j["data_new"] = sum.data_new;
}

}  // namespace ls::create
