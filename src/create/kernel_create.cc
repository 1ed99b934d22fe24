// `livesplice create --kernel`: kernel source + config + patch -> update file.
// KernelPipeline::run() is these steps, in this order:
//
//   read_inputs        every file the patch changes must be a .c file kbuild compiles;
//                      the release and its headers found; nothing touched yet
//   cover_sources      unpack (a tarball) and prepare the build directory (cached, once);
//                      guard the directories the patch touches; check it applies
//   build(Pre)         each patched .c file alone, with function sections (kernel_build.h)
//   apply_the_patch, build(Post), restore_files
//   diff_pairs         (steps.h, shared with create; special sections:
//                      differ/special_sections.h)
//   refuse_unsafe      unsafe -> exit 2
//   no change          -> exit 3
//   update_input       one target per module (vmlinux or the .ko), the skeleton module
//   write_update_file
//   restore            verify the source directories; what cannot come back fails
//   print_summary
//
// What is hard is the same as for programs: the source tree is the user's and comes
// back as it was on every path (the TreeGuard restores it from its destructor, a
// SignalGuard turns Ctrl-C into unwinding). The build directory is the cache's: the
// objects built there are removed after each step, so the next run never mistakes a post
// object for a pre one.
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "base/subprocess.h"
#include "create/kernel_build.h"
#include "create/kernel_create.h"
#include "create/build.h"   // Phase
#include "create/patch.h"
#include "create/steps.h"
#include "create/tree_guard.h"
#include "differ/differ.h"
#include "elf/object.h"
#include "update/writer.h"

namespace fs = std::filesystem;

namespace ls::create {
namespace {

using Clock = std::chrono::steady_clock;

bool ends_with(const std::string& s, std::string_view suffix) { return s.ends_with(suffix); }

// The .c files the patch changes; anything else it touches that would change code is
// refused here, before anything is built.
std::vector<std::string> compiled_sources(const Patch& patch) {
  std::vector<std::string> out, refused;
  for (const auto& f : patch.files) {
    if (ends_with(f, ".c")) out.push_back(f);
    else if (ends_with(f, ".h") || ends_with(f, ".S") || ends_with(f, ".s") || ends_with(f, ".lds") ||
             fs::path(f).filename() == "Makefile" || fs::path(f).filename() == "Kbuild" ||
             fs::path(f).filename().string().rfind("Kconfig", 0) == 0)
      refused.push_back(f);
  }
  if (!refused.empty())
    fail("{}: changes {}: only changes to .c files are supported for the kernel (a header, assembly file, "
         "Makefile or Kconfig change reaches objects that cannot be found without building the whole kernel)",
         patch.path, fmt::join(refused, ", "));
  if (out.empty()) fail("{}: changes no .c file", patch.path);
  return out;
}

// The directories to snapshot: each patched file's directory (its nearest existing
// ancestor for a new file), without nesting.
std::vector<std::string> guard_roots(const std::string& source, const std::vector<std::string>& files) {
  std::set<std::string> dirs;
  for (const auto& f : files) {
    fs::path d = fs::path(source) / fs::path(f).parent_path();
    while (!fs::exists(d) && d.string().size() > source.size()) d = d.parent_path();
    dirs.insert(d.lexically_normal().string());
  }
  std::vector<std::string> roots;
  for (const auto& d : dirs) {
    bool nested = std::any_of(roots.begin(), roots.end(),
                              [&](const std::string& r) { return d.rfind(r + "/", 0) == 0; });
    if (!nested) roots.push_back(d);
  }
  return roots;
}

// One patched source file's objects.
struct Built {
  KernelObject pre, post;
  std::string pre_path, post_path;
  update::PreOrigin pre_origin = update::PreOrigin::None;
};

class KernelPipeline {
 public:
  KernelPipeline(Context& ctx, const KernelCreateOptions& opt, const SignalGuard& signals)
      : ctx_(ctx), opt_(opt), signals_(signals) {}
  Exit run();

 private:
  // The steps of run(), in order (the file's top comment says what each is for).
  void read_inputs();
  void cover_sources();
  void build(Phase phase);
  void apply_the_patch();
  update::UpdateInput update_input(const DiffedPairs& diffed);
  void print_summary(const DiffedPairs& diffed, const update::WriteSummary& sum);

  std::string object_path(Phase phase, size_t i) const {
    return fmt::format("{}/{}/{}/{}", work_->dir(), to_string(phase), i, fs::path(sources_[i]).stem().string() + ".o");
  }

  Context& ctx_;
  const KernelCreateOptions& opt_;
  const SignalGuard& signals_;
  Clock::time_point t0_ = Clock::now();

  std::string output_, release_, headers_;
  Patch patch_;
  std::vector<std::string> sources_;   // the .c files the patch changes
  // Declaration order is destruction order in reverse: the guard's copies are in the
  // work directory.
  std::optional<KernelBuild> kb_;
  std::optional<WorkDir> work_;
  std::optional<TreeGuard> guard_;
  std::vector<std::string> patched_;   // absolute
  std::vector<Built> built_;
};

Exit KernelPipeline::run() {
  read_inputs();
  cover_sources();
  build(Phase::Pre);
  apply_the_patch();
  build(Phase::Post);
  guard_->restore_files(patched_);

  std::vector<BuiltPair> pairs;
  std::vector<std::string> labels;
  for (const auto& b : built_) {
    pairs.push_back({b.pre_path, b.post_path});
    labels.push_back(b.post.object);
  }
  DiffedPairs diffed = diff_pairs(ctx_, pairs, signals_);
  refuse_unsafe(diffed, labels, [](size_t) { return true; }, patch_.name, "kernel");
  if (!diffed.changed()) {
    report_no_change(ctx_, nothing_changed(built_.size()), built_.size(), {});
    guard_->restore();
    return Exit::NoChange;
  }
  update::UpdateInput in = update_input(diffed);

  signals_.check();
  update::WriteSummary sum = write_update_file(ctx_, in, output_, signals_);
  auto left = guard_->restore();
  if (!left.empty())
    fail("the update was written to {}, but {} path{} in the source tree could not be restored (listed above)",
         output_, left.size(), plural(left.size()));
  print_summary(diffed, sum);
  return Exit::Ok;
}

void KernelPipeline::read_inputs() {
  output_ = fs::absolute(opt_.output).lexically_normal().string();
  patch_ = read_patch(fs::canonical(opt_.patch_file).string());
  sources_ = compiled_sources(patch_);
  release_ = !opt_.release.empty() ? opt_.release : release_from_config(opt_.config);
  if (release_.empty())
    fail("{}: cannot tell the kernel release from the config's name or CONFIG_BUILD_SALT; give --release",
         opt_.config);
  // The headers the update's module is built against: checked now, used once the diff
  // says there is an update to write.
  headers_ = !opt_.headers.empty() ? opt_.headers : "/usr/src/linux-headers-" + release_;
  if (!fs::exists(fs::path(headers_) / "Makefile"))
    fail("{}: no kernel headers there; install linux-headers-{} or give its directory with --headers", headers_,
         release_);
}

void KernelPipeline::cover_sources() {
  kb_.emplace(ctx_, opt_.source, opt_.config, release_, opt_.cache_dir, signals_);
  work_.emplace(ctx_, "livesplice-kcreate", opt_.keep_work);
  guard_.emplace(ctx_, guard_roots(kb_->source_dir(), patch_.files), work_->dir() + "/saved");
  guard_->exclude(output_);
  guard_->exclude(output_ + ".tmp");
  check_patch(ctx_, kb_->source_dir(), patch_);
  built_.resize(sources_.size());
}

// Pre: each file that exists before the patch. Post: each file; one the patch adds is
// diffed against an empty object, which says everything in it is new.
void KernelPipeline::build(Phase phase) {
  const std::string& src = kb_->source_dir();
  for (size_t i = 0; i < sources_.size(); ++i) {
    Built& b = built_[i];
    if (phase == Phase::Pre) {
      if (!fs::exists(src + "/" + sources_[i])) continue;   // a file the patch adds: no pre
      ctx_.progress(fmt::format("building pre {}…", sources_[i]));
      b.pre_path = object_path(phase, i);
      b.pre = kb_->build_object(sources_[i], b.pre_path);
      b.pre_origin = update::PreOrigin::Recompiled;
      signals_.check();
      continue;
    }
    ctx_.progress(fmt::format("building post {}…", sources_[i]));
    b.post_path = object_path(phase, i);
    b.post = kb_->build_object(sources_[i], b.post_path);
    if (b.pre_path.empty()) {
      b.pre = b.post;
      b.pre_path = work_->dir() + "/empty.o";
      RunResult r = ls::run({kb_->compiler(), "-x", "c", "-c", "/dev/null", "-o", b.pre_path});
      if (r.status != 0) fail("cannot compile an empty object with {}:\n{}", kb_->compiler(), r.output);
    } else if (b.pre.module != b.post.module) {
      fail("{}: the patch moves it from {} to {}", sources_[i], b.pre.module, b.post.module);
    }
    signals_.check();
  }
}

void KernelPipeline::apply_the_patch() {
  for (const auto& f : patch_.files) {
    patched_.push_back(kb_->source_dir() + "/" + f);
    guard_->save(patched_.back());
  }
  ctx_.progress(fmt::format("applying {} ({})", patch_.name, fmt::join(patch_.files, ", ")));
  apply_patch(kb_->source_dir(), patch_);
}

// One unit per object, one target per module: "vmlinux" (built-in code) or the .ko.
update::UpdateInput KernelPipeline::update_input(const DiffedPairs& diffed) {
  update::UpdateInput in;
  in.patch_name = patch_.name;
  in.patch_text = patch_.text;
  in.patch_files = patch_.files;
  in.build_system = "kbuild";
  in.label = opt_.label;
  in.kernel_release = release_;
  in.kernel_version = kb_->kernel_version();
  in.kernel_module = build_skeleton_module(ctx_, headers_, kb_->compiler(), release_, opt_.cache_dir);
  std::map<std::string, size_t> target_of_module;
  for (size_t i = 0; i < built_.size(); ++i) {
    const std::string& module = built_[i].post.module;
    auto [it, fresh] = target_of_module.emplace(module, in.targets.size());
    if (fresh) {
      update::Target t;
      t.name = module;
      t.path = module == "vmlinux" ? "vmlinux" : module + ".ko";
      t.kind = module == "vmlinux" ? "kernel" : "kernel-module";
      in.targets.push_back(t);
    }
    update::Unit u;
    u.pre = diffed.pre[i];
    u.post = diffed.post[i];
    u.diff = &diffed.diffs[i];
    u.path = built_[i].post.object;
    u.source = built_[i].post.source;
    u.targets = {it->second};
    u.pre_origin = built_[i].pre_origin;
    in.units.push_back(std::move(u));
  }
  return in;
}

void KernelPipeline::print_summary(const DiffedPairs& diffed, const update::WriteSummary& sum) {
  double total = std::chrono::duration<double>(Clock::now() - t0_).count();
  auto changed = [](const diff::SymbolDiff& s) { return s.kind == diff::UnitKind::Func && s.status != diff::Status::Same; };
  if (ctx_.json) {
    nlohmann::ordered_json j = summary_json(output_, sum);
    j["kernel"] = {{"release", release_}, {"version", kb_->kernel_version()}};
    add_summary_counts(j, built_.size(), sum);
    j["functions"] = nlohmann::ordered_json::array();
    for (size_t i = 0; i < diffed.size(); ++i)
      for (const auto& s : diffed.diffs[i].symbols)
        if (changed(s))
          j["functions"].push_back({{"name", s.name},
                                    {"status", diff::to_string(s.status)},
                                    {"reason", s.reason},
                                    {"object", built_[i].post.object},
                                    {"module", built_[i].post.module}});
    j["special"] = nlohmann::ordered_json::array();
    for (size_t i = 0; i < diffed.size(); ++i)
      for (const auto& c : diffed.diffs[i].special)
        j["special"].push_back({{"object", built_[i].post.object},
                                {"section", diffed.post[i]->section(c.section).name},
                                {"entries", c.ranges.size()}});
    j["seconds"] = total;
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("{}: {} object{} rebuilt, {} function{} changed, {} new, {} new data; {} bytes ({:.1f} s)\n", output_,
             built_.size(), plural(built_.size()), sum.functions_changed, plural(sum.functions_changed),
             sum.functions_new, sum.data_new, sum.bytes, total);
  for (size_t i = 0; i < diffed.size(); ++i)
    for (const auto& s : diffed.diffs[i].symbols)
      if (changed(s))
        fmt::print("  {} {} in {} ({}): {}\n", diff::to_string(s.status), s.name, built_[i].post.module,
                   built_[i].post.object, s.reason);
}

}  // namespace

Exit run_kernel_create(Context& ctx, const KernelCreateOptions& opt) {
  return run_interruptible(ctx, "source tree",
                           [&](const SignalGuard& signals) { return KernelPipeline(ctx, opt, signals).run(); });
}

}  // namespace ls::create
