// `livesplice create`: source tree + patch -> update file. Pipeline::run() is these
// steps, in this order:
//
//   read_inputs, cover_tree     the guard covers the tree: overlays take every write of
//                               the builds (tree_overlay.h); else hard links, copies
//   check_patch                 it applies (dry run); nothing touched yet
//   build(Pre)                  the wrapper records every compile and link
//   apply_the_patch             sources saved first
//   build(Post)                 the wrapper keeps the pre copy of each object
//   restore_files               the sources back: the pre recompiles below need them
//   nothing_rebuilt             no object rebuilt: exit 3 (or an error, for a code change)
//   pair_objects                each rebuilt object with its pre: from this run's pre
//                               build, or recompiled into the work directory when the
//                               tree was built before create (those objects lack
//                               function sections, so they cannot be diffed)
//   diff_pairs                  (steps.h, shared with create --kernel)
//   map_binaries                which binaries each object is linked into
//   refuse_unsafe               unsafe -> exit 2
//   no_change                   no function changed -> exit 3
//   update_input                units and targets; build-ids from the link records
//   restore                     uncover, verify against the snapshot; what cannot come
//                               back is a warning, not exit 1
//   write_update_file, print_summary
//
// What is hard is that every step after the snapshot may fail or be interrupted, and
// the tree must come back regardless: the TreeGuard (tree_guard.h) restores in its
// destructor, a SignalGuard turns SIGINT/SIGTERM/SIGHUP into an exception so that
// destructor runs, and only then does the process die of the signal
// (run_interruptible, steps.h).
#include "create/create.h"

#include <chrono>
#include <filesystem>
#include <optional>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "base/demangle.h"
#include "base/subprocess.h"
#include "create/build.h"
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
  update::PreOrigin pre_origin = update::PreOrigin::PreBuild;
};

class Pipeline {
 public:
  Pipeline(Context& ctx, const CreateOptions& opt, const SignalGuard& signals)
      : ctx_(ctx), opt_(opt), signals_(signals) {}
  Exit run();

 private:
  // The steps of run(), in order (the file's top comment says what each is for).
  void read_inputs();
  void cover_tree();
  Records build(Phase phase);
  void apply_the_patch();
  Exit nothing_rebuilt();
  std::vector<Pair> pair_objects();
  void map_binaries();
  Exit no_change(const DiffedPairs& diffed);
  update::UpdateInput update_input(const DiffedPairs& diffed);
  void print_summary(const update::UpdateInput& in, const update::WriteSummary& sum,
                     const std::vector<std::string>& left);

  std::string recompile_pre(const CompileRecord& rec, size_t n);
  std::string empty_object(const CompileRecord& rec, size_t n);
  std::string label(const std::string& object) const { return relative_to(object, plan_.build_dir); }
  // libtool compiles each source twice (PIC for the shared library, plain for the
  // static archive). A copy that only went into an archive no link of this build used
  // cannot be running anywhere the update can name, and matching it against the binary
  // that runs the other copy fails; so, when some object does reach a binary, the ones
  // that reach none are left out of the update, and their verdicts do not count.
  bool left_out(size_t i) const { return some_linked_ && bins_.at(pairs_[i].object).empty(); }

  Context& ctx_;
  const CreateOptions& opt_;
  // Children are stopped by the signal itself; between them, the steps ask.
  const SignalGuard& signals_;
  Clock::time_point t0_ = Clock::now();

  std::string source_, build_dir_, output_;
  Patch patch_;
  // Declaration order is destruction order in reverse: the guard restores the tree from
  // copies inside the workspace, so it must go first.
  std::optional<Workspace> ws_;
  BuildPlan plan_;
  std::optional<TreeGuard> guard_;
  BuildStats pre_stats_, post_stats_;
  Records pre_, post_, all_;
  std::map<std::string, std::string> pre_build_ids_;   // of the pre build's links
  std::vector<std::string> patched_;                    // absolute
  std::vector<Pair> pairs_;
  std::map<std::string, std::vector<std::string>> bins_;   // object -> the binaries it is in
  std::map<std::string, const LinkRecord*> link_of_;
  bool some_linked_ = false;
};

Exit Pipeline::run() {
  read_inputs();
  cover_tree();
  check_patch(ctx_, source_, patch_);
  if (!guard_->covered() && plan_.out_of_tree() && fs::exists(plan_.build_dir)) guard_->save_metadata(plan_.build_dir);
  pre_ = build(Phase::Pre);
  for (const auto& l : pre_.links) pre_build_ids_[l.output] = read_build_id(l.output);
  signals_.check();
  apply_the_patch();
  post_ = build(Phase::Post);
  guard_->restore_files(patched_);
  if (post_.compiles.empty()) return nothing_rebuilt();

  signals_.check();
  pairs_ = pair_objects();
  std::vector<BuiltPair> built;
  for (const auto& p : pairs_) built.push_back({p.pre_path, p.object});
  DiffedPairs diffed = diff_pairs(ctx_, built, signals_);
  map_binaries();
  std::vector<std::string> labels;
  for (const auto& p : pairs_) labels.push_back(label(p.object));
  refuse_unsafe(diffed, labels, [&](size_t i) { return !left_out(i); }, patch_.name, "program");
  if (!diffed.changed()) return no_change(diffed);
  update::UpdateInput in = update_input(diffed);

  // Everything the update needs is in memory now: put the tree back first, so that an
  // update written into the tree lands in the tree and not in the builds' overlay.
  signals_.check();
  auto left = guard_->restore();
  update::WriteSummary sum = write_update_file(ctx_, in, output_, signals_);
  // The update is good whatever became of the tree: a path the build changed and
  // nothing could bring back is a warning (each named above), not a failed create.
  if (!left.empty())
    ctx_.warn(fmt::format("the update is written, but {} path{} in the tree could not be restored (listed above)",
                          left.size(), plural(left.size())));
  print_summary(in, sum, left);
  return Exit::Ok;
}

void Pipeline::read_inputs() {
  std::error_code ec;
  source_ = fs::canonical(opt_.source_dir, ec).string();
  if (ec) fail("{}: {}", opt_.source_dir, ec.message());
  if (!opt_.build_dir.empty()) build_dir_ = fs::weakly_canonical(fs::absolute(opt_.build_dir)).string();
  output_ = fs::absolute(opt_.output).lexically_normal().string();
  patch_ = read_patch(fs::canonical(opt_.patch_file).string());
}

// The workspace, the build plan, and the guard over the source tree and an out-of-tree
// build directory outside it: overlays when they can be mounted (unless --in-place).
void Pipeline::cover_tree() {
  ws_.emplace(ctx_, opt_.wrapper_path, opt_.keep_work);
  plan_ = plan_build(ctx_, source_, build_dir_, opt_.build_cmd, ws_->wrapper());
  std::vector<std::string> roots = {source_};
  if (plan_.out_of_tree() && !under(plan_.build_dir, source_)) roots.push_back(plan_.build_dir);
  guard_.emplace(ctx_, roots, ws_->saved_dir(), ws_->dir() + "/links", opt_.in_place ? "" : ws_->dir() + "/layers");
  if (!guard_->covered() && !opt_.in_place)
    ctx_.warn(fmt::format("building in the tree itself: {}; a file the build rewrites in place (other than a "
                          "compiler's output) cannot be restored afterwards",
                          guard_->uncovered_reason()));
  guard_->exclude(output_);
  guard_->exclude(output_ + ".tmp");
  guard_->exclude(ws_->dir());
}

Records Pipeline::build(Phase phase) {
  bool pre = phase == Phase::Pre;
  ctx_.progress(fmt::format("building {} ({})…", to_string(phase), plan_.system));
  BuildStats& stats = pre ? pre_stats_ : post_stats_;
  stats = run_build(ctx_, plan_, *ws_, phase);
  ctx_.progress(fmt::format("{} build: {} objects {}, {} linked ({:.1f} s)", to_string(phase), stats.compiled,
                            pre ? "compiled" : "rebuilt", stats.linked, stats.seconds));
  Records records;
  records.load(ws_->record_file(phase));
  return records;
}

void Pipeline::apply_the_patch() {
  ctx_.progress(fmt::format("applying {} ({})", patch_.name, fmt::join(patch_.files, ", ")));
  for (const auto& f : patch_.files) {
    patched_.push_back(source_ + "/" + f);
    guard_->save(patched_.back());
  }
  apply_patch(source_, patch_);
}

// The post build compiled nothing: a patch of code whose build did not reach the
// wrapper is an error; one of anything else (a README) is no change.
Exit Pipeline::nothing_rebuilt() {
  bool touches_code = std::any_of(patch_.files.begin(), patch_.files.end(), [](const std::string& f) {
    static const std::regex kCode(R"(\.(c|cc|cpp|cxx|C|S|s)$)");
    return std::regex_search(f, kCode);
  });
  if (touches_code)
    fail("the post build compiled nothing although {} changes {}: does the build run the compiler by a "
         "name on PATH (cc, gcc) or through CMake? see {} (with --keep-work)",
         patch_.name, fmt::join(patch_.files, ", "), ws_->log_file(Phase::Post));
  report_no_change(ctx_, "the patch rebuilt no object", 0, {});
  guard_->restore();
  return Exit::NoChange;
}

std::string Pipeline::recompile_pre(const CompileRecord& rec, size_t n) {
  std::string out = fmt::format("{}/recompiled/{}/{}", ws_->dir(), n, fs::path(rec.output).filename().string());
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
std::string Pipeline::empty_object(const CompileRecord& rec, size_t n) {
  std::string out = fmt::format("{}/recompiled/{}/empty.o", ws_->dir(), n);
  fs::create_directories(fs::path(out).parent_path());
  RunOptions opts;
  opts.cwd = ws_->dir();
  opts.env = {{"LIVESPLICE_ACTIVE", "1"}};
  RunResult r = ls::run({rec.tool, "-x", "c", "-c", "/dev/null", "-o", out}, opts);
  if (r.status != 0) fail("{}: cannot compile an empty object with {}:\n{}", rec.output, rec.tool, r.output);
  return out;
}

std::vector<Pair> Pipeline::pair_objects() {
  std::map<std::string, const CompileRecord*> rebuilt, pre_compiled;
  for (const auto& c : post_.compiles) rebuilt[c.output] = &c;
  for (const auto& c : pre_.compiles) pre_compiled[c.output] = &c;

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
    std::string kept = ws_->pre_objects_dir() + obj;
    if (pre_compiled.count(obj) && fs::exists(kept)) {
      p.pre_path = kept;
      p.pre_origin = update::PreOrigin::PreBuild;
    } else if (!fs::exists(rec->source)) {
      p.pre_origin = update::PreOrigin::None;
    } else {
      p.pre_origin = update::PreOrigin::Recompiled;
      ++recompiles;
    }
    pairs.push_back(p);
  }
  if (recompiles)
    ctx_.progress(fmt::format("recompiling {} pre object{} (the tree was built before create, without "
                              "function sections)", recompiles, plural(recompiles)));
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (pairs[i].pre_origin == update::PreOrigin::Recompiled) pairs[i].pre_path = recompile_pre(*pairs[i].post, i);
    else if (pairs[i].pre_origin == update::PreOrigin::None) pairs[i].pre_path = empty_object(*pairs[i].post, i);
  }
  return pairs;
}

// Which binaries the objects end up in, from both builds' records.
void Pipeline::map_binaries() {
  all_ = pre_;
  all_.append(post_);
  bins_ = map_objects_to_binaries(all_);
  for (const auto& l : all_.links) link_of_[l.output] = &l;
  some_linked_ = std::any_of(pairs_.begin(), pairs_.end(), [&](const Pair& p) { return !bins_[p.object].empty(); });
  for (const auto& p : pairs_) bins_[p.object];   // every object a row, linked or not
}

Exit Pipeline::no_change(const DiffedPairs& diffed) {
  std::vector<std::string> notes;
  for (const auto& d : diffed.diffs) notes.insert(notes.end(), d.notes.begin(), d.notes.end());
  // An object with no code before or after the patch: its source is compiled but its
  // preprocessor conditionals leave nothing in this configuration (a TLS backend not
  // chosen, say). Said apart, since the fix matters to builds configured otherwise.
  auto has_code = [](const elf::Object& o) {
    return std::any_of(o.sections().begin(), o.sections().end(),
                       [](const elf::Section& sec) { return sec.exec() && sec.size > 0; });
  };
  std::vector<std::string> without_code;
  for (size_t i = 0; i < pairs_.size(); ++i)
    if (!has_code(*diffed.pre[i]) && !has_code(*diffed.post[i])) without_code.push_back(label(pairs_[i].object));
  for (const auto& o : without_code)
    notes.push_back(fmt::format("{}: no code before or after the patch: its source compiles to nothing in this "
                                "configuration", o));
  report_no_change(ctx_, nothing_changed(pairs_.size()), pairs_.size(), notes,
                   {{"objects_without_code", without_code}});
  guard_->restore();
  return Exit::NoChange;
}

// One unit per object that reaches a binary (those left out are named), one target per
// binary they reach.
update::UpdateInput Pipeline::update_input(const DiffedPairs& diffed) {
  update::UpdateInput in;
  in.patch_name = patch_.name;
  in.patch_text = patch_.text;
  in.patch_files = patch_.files;
  in.build_system = plan_.system;
  in.label = opt_.label;
  std::map<std::string, size_t> target_index;
  for (size_t i = 0; i < pairs_.size(); ++i) {
    if (left_out(i)) {   // saying where it went instead
      std::set<std::string> into;   // the pre and the post build each archived it
      for (const auto& a : all_.archives)
        if (std::find(a.objects.begin(), a.objects.end(), pairs_[i].object) != a.objects.end())
          into.insert(label(a.output));
      ctx_.warn(fmt::format("{}: left out of the update: no binary of this build links it{}", label(pairs_[i].object),
                            into.empty() ? "" : fmt::format(" (it went only into {})", fmt::join(into, ", "))));
      continue;
    }
    update::Unit u;
    u.pre = diffed.pre[i];
    u.post = diffed.post[i];
    u.diff = &diffed.diffs[i];
    u.path = label(pairs_[i].object);
    u.source = relative_to(pairs_[i].post->source, source_);
    u.pre_origin = pairs_[i].pre_origin;
    for (const auto& bin : bins_[pairs_[i].object]) {
      auto [it, fresh] = target_index.emplace(bin, in.targets.size());
      if (fresh) {
        update::Target t;
        t.name = fs::path(bin).filename().string();
        t.path = label(bin);
        const LinkRecord* l = link_of_.count(bin) ? link_of_[bin] : nullptr;
        t.kind = !l ? "executable" : l->relocatable ? "relocatable" : l->shared ? "shared-library" : "executable";
        if (guard_->existed(bin)) t.original_build_id = guard_->original_build_id(bin);
        auto pb = pre_build_ids_.find(bin);
        t.pre_build_id = pb != pre_build_ids_.end() ? pb->second : t.original_build_id;
        t.build_id = !t.original_build_id.empty() ? t.original_build_id : t.pre_build_id;
        in.targets.push_back(t);
      }
      u.targets.push_back(it->second);
    }
    if (u.targets.empty())
      ctx_.warn(fmt::format("{}: no link of this object was seen; the update does not name its binary", u.path));
    in.units.push_back(std::move(u));
  }
  return in;
}

void Pipeline::print_summary(const update::UpdateInput& in, const update::WriteSummary& sum,
                             const std::vector<std::string>& left) {
  double total = seconds_since(t0_);
  if (ctx_.json) {
    nlohmann::ordered_json j = summary_json(output_, sum);
    add_summary_counts(j, pairs_.size(), sum);
    j["targets"] = nlohmann::ordered_json::array();
    for (const auto& t : in.targets)
      j["targets"].push_back({{"name", t.name}, {"path", t.path}, {"build_id", t.build_id}});
    j["functions"] = nlohmann::ordered_json::array();
    for (const update::Unit& u : in.units)
      for (const auto& s : u.diff->symbols)
        if (s.kind == diff::UnitKind::Func && s.status != diff::Status::Same)
          j["functions"].push_back({{"name", s.name}, {"demangled", demangled(s.name)},
                                    {"status", diff::to_string(s.status)}, {"object", u.path}});
    j["seconds"] = {{"pre_build", pre_stats_.seconds}, {"post_build", post_stats_.seconds}, {"total", total}};
    j["tree_restored"] = left.empty();
    if (!left.empty()) j["tree_not_restored"] = left;
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("{}: {} object{} rebuilt, {} function{} changed, {} new, {} new data; {} ({:.1f} s)\n", output_,
             pairs_.size(), plural(pairs_.size()), sum.functions_changed, plural(sum.functions_changed),
             sum.functions_new, sum.data_new, human_size(sum.bytes), total);
  for (const auto& t : in.targets)
    fmt::print("  for {} ({}), build-id {}\n", t.path, t.kind, t.build_id.empty() ? "(none)" : t.build_id);
  for (const update::Unit& u : in.units)
    for (const auto& s : u.diff->symbols)
      if (s.kind == diff::UnitKind::Func && s.status != diff::Status::Same)
        fmt::print("  {} {}\n", diff::to_string(s.status), printable(with_demangled(u.path + ":" + s.name)));
}

}  // namespace

Exit run_create(Context& ctx, const CreateOptions& options) {
  return run_interruptible(ctx, "tree", [&](const SignalGuard& signals) { return Pipeline(ctx, options, signals).run(); });
}

}  // namespace ls::create
