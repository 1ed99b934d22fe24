// `livesplice create`: source tree + patch -> update file.
//
//   check the patch applies (dry run)       nothing touched yet
//   cover the tree                          overlays take every write of the builds
//                                           (tree_overlay.h); else hard links, copies
//   build pre                               the wrapper records every compile and link
//   apply the patch                         sources saved first
//   build post                              the wrapper keeps the pre copy of each object
//   put the sources back                    the pre recompiles below need them
//   pair each rebuilt object with its pre   from this run's pre build, or recompiled into
//                                           the work directory when the tree was built
//                                           before create (those objects lack function
//                                           sections, so they cannot be diffed)
//   diff every pair                         unsafe -> exit 2, nothing changed -> exit 3
//   restore the tree                        uncover, verify against the snapshot; what
//                                           cannot come back is a warning, not exit 1
//   write the update                        targets and build-ids from the link records
//
// What is hard is that every step after the snapshot may fail or be interrupted, and
// the tree must come back regardless: the TreeGuard (build.h) restores in its
// destructor, a SignalGuard turns SIGINT/SIGTERM/SIGHUP into an exception so that
// destructor runs, and only then does the process die of the signal.
#include "create/create.h"

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/process.h"
#include "create/build.h"
#include "create/patch.h"
#include "differ/differ.h"
#include "elf/object.h"
#include "update/writer.h"

namespace fs = std::filesystem;

namespace ls::create {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

bool under(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

std::string relative_to(const std::string& path, const std::string& root) {
  if (path == root) return ".";
  if (under(path, root)) return path.substr(root.size() + 1);
  return path;
}

std::string human_size(uint64_t n) {
  if (n < 10 * 1024) return fmt::format("{} bytes", n);
  if (n < 10 * 1024 * 1024) return fmt::format("{:.1f} KiB", n / 1024.0);
  return fmt::format("{:.1f} MiB", n / (1024.0 * 1024.0));
}

// ---- the pipeline -------------------------------------------------------------------

struct Pair {
  std::string object;             // absolute, in the tree
  const CompileRecord* post = nullptr;
  std::string pre_path;           // the pre object to diff against
  std::string pre_origin;         // "pre-build", "recompiled", "none"
};

class Pipeline {
 public:
  Pipeline(Context& ctx, const CreateOptions& opt, const SignalGuard& signals)
      : ctx_(ctx), opt_(opt), signals_(signals) {}
  Exit run();

 private:
  std::vector<Pair> pair_objects(const Workspace& ws, const Records& pre, const Records& post);
  std::string recompile_pre(const Workspace& ws, const CompileRecord& rec, size_t n);
  std::string empty_object(const Workspace& ws, const CompileRecord& rec, size_t n);

  Context& ctx_;
  const CreateOptions& opt_;
  // Children are stopped by the signal itself; between them, the stages ask.
  const SignalGuard& signals_;
};

std::string Pipeline::recompile_pre(const Workspace& ws, const CompileRecord& rec, size_t n) {
  std::string out = fmt::format("{}/recompiled/{}/{}", ws.dir(), n, fs::path(rec.output).filename().string());
  fs::create_directories(fs::path(out).parent_path());
  RunOptions opts;
  opts.cwd = rec.cwd;
  opts.env = {{"LIVESPLICE_ACTIVE", "1"}};
  auto cmd = recompile_command(rec, out);
  ctx_.note(fmt::format("recompile: {}", fmt::join(cmd, " ")));
  RunResult r = ls::run(cmd, opts);
  if (r.status != 0)
    fail("{}: recompiling its pre version failed (exit {}): {}\n{}", rec.output, r.status, fmt::join(cmd, " "),
         r.output);
  return out;
}

// A source file the patch adds has no pre object: everything in it is new, which is
// what diffing against an empty object of the same compiler says.
std::string Pipeline::empty_object(const Workspace& ws, const CompileRecord& rec, size_t n) {
  std::string out = fmt::format("{}/recompiled/{}/empty.o", ws.dir(), n);
  fs::create_directories(fs::path(out).parent_path());
  RunOptions opts;
  opts.cwd = ws.dir();
  opts.env = {{"LIVESPLICE_ACTIVE", "1"}};
  RunResult r = ls::run({rec.tool, "-x", "c", "-c", "/dev/null", "-o", out}, opts);
  if (r.status != 0) fail("{}: cannot compile an empty object with {}:\n{}", rec.output, rec.tool, r.output);
  return out;
}

std::vector<Pair> Pipeline::pair_objects(const Workspace& ws, const Records& pre, const Records& post) {
  std::map<std::string, const CompileRecord*> rebuilt, pre_compiled;
  for (const auto& c : post.compiles) rebuilt[c.output] = &c;
  for (const auto& c : pre.compiles) pre_compiled[c.output] = &c;

  std::vector<Pair> pairs;
  size_t recompiles = 0;
  for (const auto& [obj, rec] : rebuilt) {
    if (!is_elf_file(obj)) {
      ctx_.note(fmt::format("{}: not an ELF object; skipped", obj));
      continue;
    }
    if (rec->lto)
      fail("{}: compiled with -flto: LTO objects hold compiler IR, not machine code; build without LTO", obj);
    Pair p;
    p.object = obj;
    p.post = rec;
    std::string kept = ws.pre_objects_dir() + obj;
    if (pre_compiled.count(obj) && fs::exists(kept)) {
      p.pre_path = kept;
      p.pre_origin = "pre-build";
    } else if (!fs::exists(rec->source)) {
      p.pre_origin = "none";
    } else {
      p.pre_origin = "recompiled";
      ++recompiles;
    }
    pairs.push_back(p);
  }
  if (recompiles)
    ctx_.progress(fmt::format("recompiling {} pre object{} (the tree was built before create, without "
                              "function sections)", recompiles, recompiles == 1 ? "" : "s"));
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (pairs[i].pre_origin == "recompiled") pairs[i].pre_path = recompile_pre(ws, *pairs[i].post, i);
    else if (pairs[i].pre_origin == "none") pairs[i].pre_path = empty_object(ws, *pairs[i].post, i);
  }
  return pairs;
}

Exit Pipeline::run() {
  auto t0 = Clock::now();
  std::error_code ec;
  std::string source = fs::canonical(opt_.source_dir, ec).string();
  if (ec) fail("{}: {}", opt_.source_dir, ec.message());
  std::string build_dir;
  if (!opt_.build_dir.empty()) build_dir = fs::weakly_canonical(fs::absolute(opt_.build_dir)).string();
  std::string output = fs::absolute(opt_.output).lexically_normal().string();
  Patch patch = read_patch(fs::canonical(opt_.patch_file).string());

  // Declaration order is destruction order in reverse: the guard restores the tree from
  // copies inside the workspace, so it must go first.
  Workspace ws(ctx_, opt_.wrapper_path, opt_.keep_work);
  BuildPlan plan = plan_build(ctx_, source, build_dir, opt_.build_cmd, ws.wrapper());
  std::string build_root = plan.build_dir;
  std::vector<std::string> roots = {source};
  if (plan.out_of_tree() && !under(plan.build_dir, source)) roots.push_back(plan.build_dir);
  TreeGuard guard(ctx_, roots, ws.saved_dir(), ws.dir() + "/links", opt_.in_place ? "" : ws.dir() + "/layers");
  if (!guard.covered() && !opt_.in_place)
    ctx_.warn(fmt::format("building in the tree itself: {}; a file the build rewrites in place (other than a "
                          "compiler's output) cannot be restored afterwards",
                          guard.uncovered_reason()));
  guard.exclude(output);
  guard.exclude(output + ".tmp");
  guard.exclude(ws.dir());

  check_patch(ctx_, source, patch);
  if (!guard.covered() && plan.out_of_tree() && fs::exists(plan.build_dir)) guard.save_metadata(plan.build_dir);

  // Pre.
  ctx_.progress(fmt::format("building pre ({})…", plan.system));
  BuildStats pre_stats = run_build(ctx_, plan, ws, Phase::Pre);
  ctx_.progress(fmt::format("pre build: {} objects compiled, {} linked ({:.1f} s)", pre_stats.compiled,
                            pre_stats.linked, pre_stats.seconds));
  Records pre;
  pre.load(ws.record_file(Phase::Pre));
  std::map<std::string, std::string> pre_build_ids;
  for (const auto& l : pre.links) pre_build_ids[l.output] = read_build_id(l.output);

  // Patch.
  signals_.check();
  ctx_.progress(fmt::format("applying {} ({})", patch.name, fmt::join(patch.files, ", ")));
  std::vector<std::string> patched;
  for (const auto& f : patch.files) {
    patched.push_back(source + "/" + f);
    guard.save(patched.back());
  }
  apply_patch(source, patch);

  // Post.
  ctx_.progress(fmt::format("building post ({})…", plan.system));
  BuildStats post_stats = run_build(ctx_, plan, ws, Phase::Post);
  ctx_.progress(fmt::format("post build: {} objects rebuilt, {} linked ({:.1f} s)", post_stats.compiled,
                            post_stats.linked, post_stats.seconds));
  Records post;
  post.load(ws.record_file(Phase::Post));
  guard.restore_files(patched);

  if (post.compiles.empty()) {
    bool touches_code = std::any_of(patch.files.begin(), patch.files.end(), [](const std::string& f) {
      static const std::regex kCode(R"(\.(c|cc|cpp|cxx|C|S|s)$)");
      return std::regex_search(f, kCode);
    });
    if (touches_code)
      fail("the post build compiled nothing although {} changes {}: does the build run the compiler by a "
           "name on PATH (cc, gcc) or through CMake? see {} (with --keep-work)",
           patch.name, fmt::join(patch.files, ", "), ws.log_file(Phase::Post));
    fmt::print(stderr, "livesplice: no change: the patch rebuilt no object\n");
    if (ctx_.json) fmt::print("{}\n", nlohmann::json{{"result", "no-change"}, {"objects_rebuilt", 0}}.dump());
    guard.restore();
    return Exit::NoChange;
  }

  signals_.check();
  std::vector<Pair> pairs = pair_objects(ws, pre, post);

  // Diff.
  ctx_.progress(fmt::format("diffing {} object{}", pairs.size(), pairs.size() == 1 ? "" : "s"));
  std::deque<elf::Object> objects;   // stable addresses for the update units
  std::vector<diff::ObjectDiff> diffs;
  std::vector<const elf::Object*> pre_objs, post_objs;
  for (const auto& p : pairs) {
    objects.push_back(elf::Object::load(p.pre_path));
    pre_objs.push_back(&objects.back());
    objects.push_back(elf::Object::load(p.object));
    post_objs.push_back(&objects.back());
    diffs.push_back(diff::diff_objects(ctx_, *pre_objs.back(), *post_objs.back()));
    signals_.check();
  }
  // Which binaries the objects end up in.
  Records all = pre;
  all.append(post);
  auto bins = map_objects_to_binaries(all);
  std::map<std::string, const LinkRecord*> link_of;
  for (const auto& l : all.links) link_of[l.output] = &l;
  // libtool compiles each source twice (PIC for the shared library, plain for the static
  // archive). A copy that only went into an archive no link of this build used cannot
  // be running anywhere the update can name, and matching it against the binary that
  // runs the other copy fails; so, when some object does reach a binary, the ones that
  // reach none are left out (below), and their verdicts do not count here either.
  const bool some_linked =
      std::any_of(pairs.begin(), pairs.end(), [&](const Pair& p) { return !bins[p.object].empty(); });
  auto left_out = [&](size_t i) { return some_linked && bins[pairs[i].object].empty(); };

  std::vector<std::string> unsafe;
  for (size_t i = 0; i < diffs.size(); ++i)
    if (!left_out(i))
      for (const auto& u : diffs[i].unsafe)
        unsafe.push_back(fmt::format("  {}: {}: {}", relative_to(pairs[i].object, build_root), u.symbol, u.reason));
  if (!unsafe.empty())
    throw Error(fmt::format("{} cannot be applied to a running program safely:\n{}", patch.name,
                            fmt::join(unsafe, "\n")),
                Exit::Unsafe);
  bool changed = std::any_of(diffs.begin(), diffs.end(), [](const auto& d) { return d.has_changes(); });
  if (!changed) {
    fmt::print(stderr, "livesplice: no change: {} object{} rebuilt, no function changed\n", pairs.size(),
               pairs.size() == 1 ? "" : "s");
    for (const auto& d : diffs)
      for (const auto& n : d.notes) fmt::print(stderr, "  note: {}\n", n);
    // An object with no code before or after the patch: its source is compiled but its
    // preprocessor conditionals leave nothing in this configuration (a TLS backend not
    // chosen, say). Said apart, since the fix matters to builds configured otherwise.
    auto has_code = [](const elf::Object& o) {
      return std::any_of(o.sections().begin(), o.sections().end(),
                         [](const elf::Section& sec) { return sec.exec() && sec.size > 0; });
    };
    std::vector<std::string> without_code;
    for (size_t i = 0; i < pairs.size(); ++i)
      if (!has_code(*pre_objs[i]) && !has_code(*post_objs[i]))
        without_code.push_back(relative_to(pairs[i].object, build_root));
    for (const auto& o : without_code)
      fmt::print(stderr, "  note: {}: no code before or after the patch: its source compiles to nothing in this "
                         "configuration\n", o);
    if (ctx_.json)
      fmt::print("{}\n", nlohmann::json{{"result", "no-change"},
                                        {"objects_rebuilt", pairs.size()},
                                        {"objects_without_code", without_code}}.dump());
    guard.restore();
    return Exit::NoChange;
  }


  update::UpdateInput in;
  in.patch_name = patch.name;
  in.patch_text = patch.text;
  in.patch_files = patch.files;
  in.build_system = plan.system;
  in.label = opt_.label;
  std::map<std::string, size_t> target_index;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (left_out(i)) {   // saying where it went instead

      std::set<std::string> into;   // the pre and the post build each archived it
      for (const auto& a : all.archives)
        if (std::find(a.objects.begin(), a.objects.end(), pairs[i].object) != a.objects.end())
          into.insert(relative_to(a.output, build_root));
      ctx_.warn(fmt::format("{}: left out of the update: no binary of this build links it{}",
                            relative_to(pairs[i].object, build_root),
                            into.empty() ? "" : fmt::format(" (it went only into {})", fmt::join(into, ", "))));
      continue;
    }
    update::Unit u;
    u.pre = pre_objs[i];
    u.post = post_objs[i];
    u.diff = &diffs[i];
    u.path = relative_to(pairs[i].object, build_root);
    u.source = relative_to(pairs[i].post->source, source);
    u.pre_origin = pairs[i].pre_origin;
    for (const auto& bin : bins[pairs[i].object]) {
      auto [it, fresh] = target_index.emplace(bin, in.targets.size());
      if (fresh) {
        update::Target t;
        t.name = fs::path(bin).filename().string();
        t.path = relative_to(bin, build_root);
        const LinkRecord* l = link_of.count(bin) ? link_of[bin] : nullptr;
        t.kind = !l ? "executable" : l->relocatable ? "relocatable" : l->shared ? "shared-library" : "executable";
        if (guard.existed(bin)) t.original_build_id = guard.original_build_id(bin);
        auto pb = pre_build_ids.find(bin);
        t.pre_build_id = pb != pre_build_ids.end() ? pb->second : t.original_build_id;
        t.build_id = !t.original_build_id.empty() ? t.original_build_id : t.pre_build_id;
        in.targets.push_back(t);
      }
      u.targets.push_back(it->second);
    }
    if (u.targets.empty())
      ctx_.warn(fmt::format("{}: no link of this object was seen; the update does not name its binary", u.path));
    in.units.push_back(std::move(u));
  }

  // Everything the update needs is in memory now: put the tree back first, so that an
  // update written into the tree lands in the tree and not in the builds' overlay.
  signals_.check();
  auto left = guard.restore();
  ctx_.progress(fmt::format("writing {}", output));
  update::WriteSummary ws_sum = update::write_update(ctx_, in, output);
  if (signals_.pending()) {
    // Interrupted while writing: the update may be whole, but the user asked to stop.
    fs::remove(output, ec);
    signals_.check();
  }
  // The update is good whatever became of the tree: a path the build changed and
  // nothing could bring back is a warning (each named above), not a failed create.
  if (!left.empty())
    ctx_.warn(fmt::format("the update is written, but {} path{} in the tree could not be restored (listed above)",
                          left.size(), left.size() == 1 ? "" : "s"));

  double total = seconds_since(t0);
  if (ctx_.json) {
    nlohmann::ordered_json j;
    j["result"] = "ok";
    j["update"] = output;
    j["update_bytes"] = ws_sum.bytes;
    j["objects_rebuilt"] = pairs.size();
    j["functions_changed"] = ws_sum.functions_changed;
    j["functions_new"] = ws_sum.functions_new;
    j["data_new"] = ws_sum.data_new;
    j["targets"] = nlohmann::ordered_json::array();
    for (const auto& t : in.targets)
      j["targets"].push_back({{"name", t.name}, {"path", t.path}, {"build_id", t.build_id}});
    j["functions"] = nlohmann::ordered_json::array();
    for (const update::Unit& u : in.units)
      for (const auto& s : u.diff->symbols)
        if (s.kind == diff::UnitKind::Func && s.status != diff::Status::Same)
          j["functions"].push_back({{"name", s.name}, {"status", diff::to_string(s.status)}, {"object", u.path}});
    j["seconds"] = {{"pre_build", pre_stats.seconds}, {"post_build", post_stats.seconds}, {"total", total}};
    j["tree_restored"] = left.empty();
    if (!left.empty()) j["tree_not_restored"] = left;
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("{}: {} object{} rebuilt, {} function{} changed, {} new, {} new data; {} ({:.1f} s)\n", output,
               pairs.size(), pairs.size() == 1 ? "" : "s", ws_sum.functions_changed,
               ws_sum.functions_changed == 1 ? "" : "s", ws_sum.functions_new, ws_sum.data_new,
               human_size(ws_sum.bytes), total);
    for (const auto& t : in.targets)
      fmt::print("  for {} ({}), build-id {}\n", t.path, t.kind, t.build_id.empty() ? "(none)" : t.build_id);
  }
  return Exit::Ok;
}

}  // namespace

Exit run_create(Context& ctx, const CreateOptions& options) {
  SignalGuard signals;
  try {
    return Pipeline(ctx, options, signals).run();
  } catch (const Interrupted& e) {
    // Unwinding has run the pipeline's guards: the tree is back (anything that could
    // not be restored was reported by name). Now die of the signal, as a shell expects.
    fmt::print(stderr, "livesplice: {}; the tree was restored\n", e.what());
    signals.reraise();
    throw;
  }
}

}  // namespace ls::create
