// `livesplice create --kernel`: kernel source + config + patch -> update file.
//
//   read the patch; every file must be a .c file kbuild compiles      nothing touched yet
//   unpack (a tarball) and prepare the build directory                cached, once
//   snapshot the directories the patch touches; check it applies
//   build pre: each patched .c file alone, with function sections     kernel_build.h
//   apply the patch, build post, put the sources back
//   diff each pair (special sections: differ/special_sections.h)      unsafe -> exit 2
//   write the update: one target per module (vmlinux or the .ko)      no change -> exit 3
//   restore and verify the source directories
//
// What is hard is the same as for programs: the source tree is the user's and comes
// back as it was on every path (the TreeGuard restores it from its destructor, a
// SignalGuard turns Ctrl-C into unwinding). The build directory is the cache's: the
// objects built there are removed after each step, so the next run never mistakes a post
// object for a pre one.
#include <unistd.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/process.h"
#include "create/kernel_build.h"
#include "create/kernel_create.h"
#include "create/patch.h"
#include "create/tree_guard.h"
#include "differ/differ.h"
#include "elf/object.h"
#include "update/writer.h"

namespace fs = std::filesystem;

namespace ls::create {
namespace {

using Clock = std::chrono::steady_clock;

bool ends_with(const std::string& s, std::string_view suffix) { return s.ends_with(suffix); }

// The work directory: pre/ and post/ objects and their build logs.
class WorkDir {
 public:
  WorkDir(Context& ctx, bool keep) : ctx_(ctx), keep_(keep) {
    const char* tmp = getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/livesplice-kcreate.XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) fail("cannot create a work directory in {}", templ);
    dir_ = fs::canonical(buf.data()).string();
  }
  ~WorkDir() {
    std::error_code ec;
    if (keep_) ctx_.progress(fmt::format("work directory kept: {}", dir_));
    else fs::remove_all(dir_, ec);
  }
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  const std::string& dir() const { return dir_; }

 private:
  Context& ctx_;
  bool keep_;
  std::string dir_;
};

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

struct Built {
  KernelObject pre, post;
  std::string pre_path, post_path;
};

}  // namespace

Exit run_kernel_create(Context& ctx, const KernelCreateOptions& opt) {
  SignalGuard signals;
  try {
    auto t0 = Clock::now();
    std::string output = fs::absolute(opt.output).lexically_normal().string();
    Patch patch = read_patch(fs::canonical(opt.patch_file).string());
    std::vector<std::string> sources = compiled_sources(patch);
    std::string release = !opt.release.empty() ? opt.release : release_from_config(opt.config);
    if (release.empty())
      fail("{}: cannot tell the kernel release from the config's name or CONFIG_BUILD_SALT; give --release",
           opt.config);

    // The headers the update's module is built against: checked now, used once the diff
    // says there is an update to write.
    std::string headers = !opt.headers.empty() ? opt.headers : "/usr/src/linux-headers-" + release;
    if (!fs::exists(fs::path(headers) / "Makefile"))
      fail("{}: no kernel headers there; install linux-headers-{} or give its directory with --headers", headers,
           release);

    KernelBuild kb(ctx, opt.source, opt.config, release, opt.cache_dir, signals);
    const std::string& src = kb.source_dir();
    WorkDir work(ctx, opt.keep_work);
    TreeGuard guard(ctx, guard_roots(src, patch.files), work.dir() + "/saved");
    guard.exclude(output);
    guard.exclude(output + ".tmp");
    check_patch(ctx, src, patch);

    std::vector<Built> built(sources.size());
    for (size_t i = 0; i < sources.size(); ++i) {
      if (!fs::exists(src + "/" + sources[i])) continue;   // a file the patch adds: no pre
      ctx.progress(fmt::format("building pre {}…", sources[i]));
      built[i].pre_path = fmt::format("{}/pre/{}/{}", work.dir(), i, fs::path(sources[i]).stem().string() + ".o");
      built[i].pre = kb.build_object(sources[i], built[i].pre_path);
      signals.check();
    }

    std::vector<std::string> patched;
    for (const auto& f : patch.files) {
      patched.push_back(src + "/" + f);
      guard.save(patched.back());
    }
    ctx.progress(fmt::format("applying {} ({})", patch.name, fmt::join(patch.files, ", ")));
    apply_patch(src, patch);
    for (size_t i = 0; i < sources.size(); ++i) {
      ctx.progress(fmt::format("building post {}…", sources[i]));
      built[i].post_path = fmt::format("{}/post/{}/{}", work.dir(), i, fs::path(sources[i]).stem().string() + ".o");
      built[i].post = kb.build_object(sources[i], built[i].post_path);
      if (built[i].pre_path.empty()) {
        // A new file: diffing against an empty object says everything in it is new.
        built[i].pre = built[i].post;
        built[i].pre_path = work.dir() + "/empty.o";
        RunResult r = run({kb.compiler(), "-x", "c", "-c", "/dev/null", "-o", built[i].pre_path});
        if (r.status != 0) fail("cannot compile an empty object with {}:\n{}", kb.compiler(), r.output);
      } else if (built[i].pre.module != built[i].post.module) {
        fail("{}: the patch moves it from {} to {}", sources[i], built[i].pre.module, built[i].post.module);
      }
      signals.check();
    }
    guard.restore_files(patched);

    ctx.progress(fmt::format("diffing {} object{}", built.size(), built.size() == 1 ? "" : "s"));
    std::deque<elf::Object> objects;
    std::vector<diff::ObjectDiff> diffs;
    std::vector<const elf::Object*> pre_objs, post_objs;
    for (const auto& b : built) {
      objects.push_back(elf::Object::load(b.pre_path));
      pre_objs.push_back(&objects.back());
      objects.push_back(elf::Object::load(b.post_path));
      post_objs.push_back(&objects.back());
      diffs.push_back(diff::diff_objects(ctx, *pre_objs.back(), *post_objs.back()));
      signals.check();
    }
    std::vector<std::string> unsafe;
    for (size_t i = 0; i < diffs.size(); ++i)
      for (const auto& u : diffs[i].unsafe)
        unsafe.push_back(fmt::format("  {}: {}: {}", built[i].post.object, u.symbol, u.reason));
    if (!unsafe.empty())
      throw Error(fmt::format("{} cannot be applied to a running kernel safely:\n{}", patch.name,
                              fmt::join(unsafe, "\n")),
                  Exit::Unsafe);
    bool changed = std::any_of(diffs.begin(), diffs.end(), [](const auto& d) { return d.has_changes(); });
    if (!changed) {
      fmt::print(stderr, "livesplice: no change: {} object{} rebuilt, no function changed\n", built.size(),
                 built.size() == 1 ? "" : "s");
      if (ctx.json) fmt::print("{}\n", nlohmann::json{{"result", "no-change"}, {"objects_rebuilt", built.size()}}.dump());
      guard.restore();
      return Exit::NoChange;
    }

    update::UpdateInput in;
    in.patch_name = patch.name;
    in.patch_text = patch.text;
    in.patch_files = patch.files;
    in.build_system = "kbuild";
    in.label = opt.label;
    in.kernel_release = release;
    in.kernel_version = kb.kernel_version();
    in.kernel_module = build_skeleton_module(ctx, headers, kb.compiler(), release, opt.cache_dir);
    std::map<std::string, size_t> target_of_module;
    for (size_t i = 0; i < built.size(); ++i) {
      const std::string& module = built[i].post.module;
      auto [it, fresh] = target_of_module.emplace(module, in.targets.size());
      if (fresh) {
        update::Target t;
        t.name = module;
        t.path = module == "vmlinux" ? "vmlinux" : module + ".ko";
        t.kind = module == "vmlinux" ? "kernel" : "kernel-module";
        in.targets.push_back(t);
      }
      update::Unit u;
      u.pre = pre_objs[i];
      u.post = post_objs[i];
      u.diff = &diffs[i];
      u.path = built[i].post.object;
      u.source = built[i].post.source;
      u.targets = {it->second};
      u.pre_origin = fs::exists(src + "/" + sources[i]) ? "recompiled" : "none";
      in.units.push_back(std::move(u));
    }
    signals.check();
    ctx.progress(fmt::format("writing {}", output));
    update::WriteSummary sum = update::write_update(ctx, in, output);
    auto left = guard.restore();
    if (!left.empty())
      fail("the update was written to {}, but {} path{} in the source tree could not be restored (listed above)",
           output, left.size(), left.size() == 1 ? "" : "s");

    double total = std::chrono::duration<double>(Clock::now() - t0).count();
    if (ctx.json) {
      nlohmann::ordered_json j;
      j["result"] = "ok";
      j["update"] = output;
      j["update_bytes"] = sum.bytes;
      j["kernel"] = {{"release", release}, {"version", kb.kernel_version()}};
      j["objects_rebuilt"] = built.size();
      j["functions_changed"] = sum.functions_changed;
      j["functions_new"] = sum.functions_new;
      j["data_new"] = sum.data_new;
      j["functions"] = nlohmann::ordered_json::array();
      for (size_t i = 0; i < diffs.size(); ++i)
        for (const auto& s : diffs[i].symbols)
          if (s.kind == diff::UnitKind::Func && s.status != diff::Status::Same)
            j["functions"].push_back({{"name", s.name},
                                      {"status", diff::to_string(s.status)},
                                      {"reason", s.reason},
                                      {"object", built[i].post.object},
                                      {"module", built[i].post.module}});
      j["special"] = nlohmann::ordered_json::array();
      for (size_t i = 0; i < diffs.size(); ++i)
        for (const auto& c : diffs[i].special)
          j["special"].push_back({{"object", built[i].post.object},
                                  {"section", post_objs[i]->section(c.section).name},
                                  {"entries", c.ranges.size()}});
      j["seconds"] = total;
      fmt::print("{}\n", j.dump(2));
    } else {
      fmt::print("{}: {} object{} rebuilt, {} function{} changed, {} new, {} new data; {} bytes ({:.1f} s)\n", output,
                 built.size(), built.size() == 1 ? "" : "s", sum.functions_changed,
                 sum.functions_changed == 1 ? "" : "s", sum.functions_new, sum.data_new, sum.bytes, total);
      for (size_t i = 0; i < diffs.size(); ++i)
        for (const auto& s : diffs[i].symbols)
          if (s.kind == diff::UnitKind::Func && s.status != diff::Status::Same)
            fmt::print("  {} {} in {} ({}): {}\n", diff::to_string(s.status), s.name, built[i].post.module,
                       built[i].post.object, s.reason);
    }
    return Exit::Ok;
  } catch (const Interrupted& e) {
    fmt::print(stderr, "livesplice: {}; the source tree was restored\n", e.what());
    signals.reraise();
    throw;
  }
}

}  // namespace ls::create
