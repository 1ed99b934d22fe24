// livesplice: rebootless updates generated from a source patch.
//
// main() only parses the command line and hands a Context to one pipeline; every
// subcommand returns an ls::Exit. Errors thrown by offline stages stop here.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <unistd.h>

#include "core/diag.h"
#include "git_describe.h"
#include "create/create.h"
#include "create/kernel_create.h"
#include "differ/report.h"
#include "kernel/apply.h"
#include "manager/manager.h"
#include "process/apply.h"
#include "update/format.h"
#include "update/reader.h"

namespace {

std::string self_dir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

// "livesplice 0.1.0 (git 1a2b3c4)": the project version, and the checkout it was built
// from when there was one; then the update file format this build reads and writes.
std::string version_text() {
  std::string v = fmt::format("livesplice {}", LIVESPLICE_VERSION);
  if (*LIVESPLICE_GIT_DESCRIBE) v += fmt::format(" (git {})", LIVESPLICE_GIT_DESCRIBE);
  return v + fmt::format("\nupdate file format {}", ls::update::kFormatVersion);
}

}  // namespace

int main(int argc, char** argv) {
  ls::Context ctx;
  CLI::App app{
      "livesplice: turn a source patch into a live update of a running program.\n\n"
      "  livesplice create --source DIR --patch FIX.patch -o fix.lsu   build pre and post, diff, write the update\n"
      "  livesplice create --kernel --source linux-source.tar.xz --config /boot/config-R --patch FIX.patch -o fix.lsu\n"
      "  livesplice info fix.lsu                                      what an update contains\n"
      "  livesplice diff pre.o post.o                                 compare one object built twice\n"
      "  livesplice apply --pid PID fix.lsu                          apply it to a running process\n"
      "  livesplice view --pid PID                                    what is applied there\n"
      "  livesplice undo --pid PID [ID | --all]                       take it out again\n"
      "  livesplice apply --kernel fix.lsu [--core livesplice.ko]     apply it to the running kernel (root)\n"
      "  livesplice view --kernel / undo --kernel [ID]                what is applied there / take it out\n"
      "  livesplice install fix.lsu                                   keep it applied to every process it fits\n"
      "  livesplice status / sync / remove ID                         the machine's updates (the manager)\n\n"
      "Exit codes: 0 ok, 1 tool error, 2 cannot be patched safely, 3 no change.",
      "livesplice"};
  app.require_subcommand(1);
  app.set_version_flag("--version", version_text(), "Print the version and exit");
  app.fallthrough();  // -v/-q may follow the subcommand
  app.add_flag("-v,--verbose", ctx.verbose, "More detail on stderr");
  app.add_flag("-q,--quiet", ctx.quiet, "No progress lines");

  std::string pre, post;
  auto* diff = app.add_subcommand(
      "diff", "Compare PRE.o and POST.o (one source file built before and after a patch):\n"
              "which functions and data are same, changed, new or removed, and why.");
  diff->add_option("pre", pre, "Object built before the patch")->required()->check(CLI::ExistingFile);
  diff->add_option("post", post, "Object built after the patch")->required()->check(CLI::ExistingFile);
  diff->add_flag("--json", ctx.json, "Print JSON on stdout");

  ls::create::CreateOptions copt;
  copt.wrapper_path = self_dir() + "/livesplice-cc";
  auto* create = app.add_subcommand(
      "create", "Build the source tree before and after PATCH, diff every rebuilt object and\n"
                "write an update file. The tree is restored to how it was found.");
  create->add_option("--source", copt.source_dir,
                     "Source tree the running program was built from (--kernel: a kernel tree or source tarball)")
      ->required()->check(CLI::ExistingPath);
  create->add_option("--patch", copt.patch_file, "Unified diff, applied with patch -p1 in --source")
      ->required()->check(CLI::ExistingFile);
  create->add_option("--build-cmd", copt.build_cmd,
                     "Shell command that builds the tree (run in --source; default: make, or cmake for CMake projects)");
  create->add_option("--build-dir", copt.build_dir, "Out-of-tree build directory (CMake/autotools)");
  create->add_option("-o,--output", copt.output, "Update file to write")->required();
  create->add_flag("--keep-work", copt.keep_work, "Keep the work directory (pre objects, build logs)");
  create->add_flag("--in-place", copt.in_place,
                   "Build in the tree itself, not under a private overlay; the tree is restored from copies and "
                   "hard links, which cannot bring back a file the build rewrites in place without the compiler");
  create->add_option("--label", copt.label,
                     "The version the fix brings, as users name it (e.g. the fixed package's Debian version); "
                     "status shows it as the effective version of what the update patches");
  create->add_flag("--json", ctx.json, "Print the summary as JSON on stdout");
  // Kernel updates: the same subcommand, a different pipeline (src/create/kernel_create.h).
  bool kernel = false;
  ls::create::KernelCreateOptions kopt;
  create->add_flag("--kernel", kernel, "The source is the running kernel's (linux-source-*.tar.xz or a tree)");
  auto* kconfig = create->add_option("--config", kopt.config, "--kernel: the kernel's config (/boot/config-RELEASE)")
                      ->check(CLI::ExistingFile);
  create->add_option("--release", kopt.release, "--kernel: uname -r of the kernel (default: from the config's name)");
  create->add_option("--headers", kopt.headers,
                     "--kernel: the kernel's linux-headers directory, for the update's module "
                     "(default: /usr/src/linux-headers-RELEASE)");
  create->add_option("--cache-dir", kopt.cache_dir,
                     "--kernel: where the unpacked source and prepared build live (default: ~/.cache/livesplice/kernel)");

  std::string update_path;
  auto* info = app.add_subcommand("info", "Print what an update file contains");
  info->add_option("update", update_path, "Update file")->required()->check(CLI::ExistingFile);
  info->add_flag("--json", ctx.json, "Print JSON on stdout");

  ls::proc::ApplyOptions aopt;
  auto* apply = app.add_subcommand(
      "apply", "Apply an update to a running process (--pid) or to the running kernel\n"
               "(--kernel, as root), without restarting it.");
  apply->footer(
      "Every replaced function is first matched against the code actually running (run-pre\n"
      "matching); then the process's threads (for the kernel: every CPU, inside stop_machine)\n"
      "are stopped, checked to be outside the functions being replaced, the functions are\n"
      "redirected, and everything resumes. A thread inside one is let run out of it while the\n"
      "entries are trapped (--hot-wait). If a thread stays in the way after the retries, or\n"
      "the running code differs, nothing is changed (exit 2).\n"
      "--kernel: the update must be for this kernel's release (uname -r); its new code is\n"
      "loaded as a kernel module; an update of a module that is not loaded yet waits, and is\n"
      "applied as that module loads.\n\n"
      "Examples:\n"
      "  livesplice apply --pid 1234 fix.lsu\n"
      "  livesplice apply --kernel fix.lsu --core livesplice.ko\n"
      "    (livesplice.ko: make -C /lib/modules/$(uname -r)/build M=$PWD/kernel)\n");
  auto* apply_pid = apply->add_option("--pid", aopt.pid, "Process to update (or --kernel)")->check(CLI::PositiveNumber);
  // The running kernel instead (src/kernel/apply.h): same stages, livesplice.ko does the stop.
  bool apply_kernel = false;
  ls::kernel::KernelApplyOptions kaopt;
  apply->add_flag("--kernel", apply_kernel, "Update the running kernel instead of a process (as root)")
      ->excludes(apply_pid);
  apply->add_option("--core", kaopt.core, "--kernel: livesplice.ko, loaded if it is not yet")->check(CLI::ExistingFile);
  apply->add_option("update", aopt.update, "Update file made by livesplice create")->required()->check(CLI::ExistingFile);
  apply->add_option("--retries", aopt.retries, "Further attempts when a thread (--kernel: a task) is in the way")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  apply->add_option("--retry-delay", aopt.retry_delay_ms, "Milliseconds between attempts")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  apply->add_option("--hot-wait", aopt.hot_wait_ms,
                    "Milliseconds an attempt lets threads run out of the functions (their entries trapped); 0: none")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  apply->add_flag("--json", ctx.json, "Print the result as JSON on stdout");

  ls::proc::UndoOptions uopt;
  auto* undo = app.add_subcommand(
      "undo", "Take an applied update out of a running process (--pid) or the running kernel\n"
              "(--kernel, as root): the newest one when no ID is given.");
  undo->footer(
      "Updates stack: undo the newest update of a function first, or use --all (processes).\n"
      "The same checks as apply: nothing is changed while a thread runs the code being\n"
      "removed (exit 2). --kernel also unloads the update's module, or cancels a pending\n"
      "update; with nothing applied it exits 3.\n\n"
      "Examples:\n"
      "  livesplice undo --pid 1234               the newest update\n"
      "  livesplice undo --pid 1234 --all\n"
      "  livesplice undo --kernel 3f2a            the kernel update whose id starts 3f2a\n");
  auto* undo_pid = undo->add_option("--pid", uopt.pid, "Process (or --kernel)")->check(CLI::PositiveNumber);
  bool undo_kernel = false;
  undo->add_flag("--kernel", undo_kernel, "Undo a kernel update (the newest when no ID is given)")->excludes(undo_pid);
  undo->add_option("id", uopt.id, "Update id (a prefix is enough), as livesplice view shows");
  undo->add_flag("--all", uopt.all, "Undo every update, newest first (--pid only)");
  undo->add_option("--retries", uopt.retries, "Further attempts when a thread is in the way")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  undo->add_option("--retry-delay", uopt.retry_delay_ms, "Milliseconds between attempts")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  undo->add_option("--hot-wait", uopt.hot_wait_ms,
                   "Milliseconds an attempt lets threads run out of the new code (its entries trapped); 0: none")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  undo->add_flag("--json", ctx.json, "Print the result as JSON on stdout");

  pid_t view_pid = 0;
  bool view_patch = false;
  auto* view = app.add_subcommand(
      "view", "List the updates applied to a running process (--pid) or to the running kernel\n"
              "(--kernel, as root), with their ids.");
  view->footer(
      "A process's updates come from the ledger it keeps; the kernel's from livesplice.ko,\n"
      "with the updates still waiting for their module listed as pending.\n\n"
      "Examples:\n"
      "  livesplice view --pid 1234 --patch\n"
      "  livesplice view --kernel --json\n");
  auto* view_pid_opt = view->add_option("--pid", view_pid, "Process (or --kernel)")->check(CLI::PositiveNumber);
  bool view_kernel = false;
  view->add_flag("--kernel", view_kernel, "The updates applied to the running kernel")->excludes(view_pid_opt);
  view->add_flag("--patch", view_patch, "Also print each update's patch text (--pid only)");
  view->add_flag("--json", ctx.json, "Print JSON on stdout");

  // The update manager (src/manager/manager.h): a store of updates kept applied.
  ls::manager::ManagerOptions mopt;
  auto manager_options = [&](CLI::App* cmd, bool changes) {
    cmd->add_option("--root", mopt.root,
                    "The store's directory (default: $LIVESPLICE_ROOT, else /var/lib/livesplice)");
    if (!changes) return;
    cmd->add_option("--retries", mopt.retries, "Further attempts per process when a thread is in the way")
        ->capture_default_str()->check(CLI::NonNegativeNumber);
    cmd->add_option("--retry-delay", mopt.retry_delay_ms, "Milliseconds between those attempts")
        ->capture_default_str()->check(CLI::NonNegativeNumber);
    cmd->add_option("--hot-wait", mopt.hot_wait_ms, "Milliseconds an attempt lets threads run out of the functions")
        ->capture_default_str()->check(CLI::NonNegativeNumber);
    cmd->add_option("--rounds", mopt.rounds,
                    "Further passes over the processes where it failed, 0.2 s apart, then 4 times longer each")
        ->capture_default_str()->check(CLI::NonNegativeNumber);
  };
  const char* manager_footer =
      "The store holds the updates this machine should have; every update is applied to every\n"
      "running process that maps the executable or library it was made for, known by its\n"
      "build-id as mapped (also when the file was replaced on disk since the process started).\n"
      "One line per process: applied, already applied, undone, or failed and why. Nothing stops\n"
      "at the first failure; what failed is tried again (--rounds) and `status` says why.\n"
      "Exit 0 when everything that fits is done, 2 when a process could not be patched safely,\n"
      "1 for other failures. One command changes the store at a time (others wait).\n";

  std::vector<std::string> install_files;
  auto* install = app.add_subcommand(
      "install", "Put updates in the store and apply each to every running process it fits (as root).");
  install->footer(std::string(manager_footer) +
                  "\nExamples:\n"
                  "  livesplice install fix.lsu\n"
                  "  livesplice install --root /srv/store a.lsu b.lsu\n");
  install->add_option("updates", install_files, "Update files made by livesplice create")->required()
      ->check(CLI::ExistingFile);
  manager_options(install, true);

  std::vector<std::string> remove_ids;
  bool remove_all = false;
  auto* remove = app.add_subcommand(
      "remove", "Take updates out of the store and undo them in every process they are applied in.");
  remove->footer(std::string(manager_footer) +
                 "\nAn update leaves the store first: a remove that is interrupted is finished by\n"
                 "the next `livesplice sync`, never reverted by it.\n\n"
                 "Examples:\n"
                 "  livesplice remove 3f2a        the stored update whose id starts 3f2a (see status)\n"
                 "  livesplice remove --all\n");
  auto* remove_ids_opt = remove->add_option("ids", remove_ids, "Update ids (a prefix is enough)");
  remove->add_flag("--all", remove_all, "Every stored update")->excludes(remove_ids_opt);
  manager_options(remove, true);

  bool sync_dry_run = false;
  auto* sync = app.add_subcommand(
      "sync", "Make the running processes agree with the store: every stored update applied\n"
              "wherever it fits, every update the store applied and no longer holds undone.");
  sync->footer(std::string(manager_footer) +
               "\nIdempotent: a second sync finds everything applied. Updates applied by hand with\n"
               "`apply` (or from another --root) are left alone.\n\n"
               "Examples:\n"
               "  livesplice sync --dry-run     what it would do\n"
               "  livesplice sync\n");
  sync->add_flag("--dry-run", sync_dry_run, "Say what would be applied and undone, change nothing");
  manager_options(sync, true);

  auto* status = app.add_subcommand(
      "status", "Per stored update: the processes it is applied in, those it fits but is not\n"
                "applied in and why; per binary, each process's effective version.");
  status->footer(
      "The effective version of a binary in a process is the label (create --label) of the\n"
      "newest stored update applied there. Changes nothing.\n\n"
      "Examples:\n"
      "  livesplice status\n"
      "  livesplice status --json\n");
  status->add_flag("--json", ctx.json, "Print JSON on stdout");
  manager_options(status, false);

  if (argc <= 1) {   // no subcommand at all: teach, rather than name a missing option
    fmt::print(stderr, "{}", app.help());
    return static_cast<int>(ls::Exit::ToolError);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : static_cast<int>(ls::Exit::ToolError);
  }

  try {
    ls::Exit rc = ls::Exit::Ok;
    if (*diff) rc = ls::diff::run_diff(ctx, pre, post);
    else if (*create && kernel) {
      if (!*kconfig) throw ls::Error("create --kernel needs --config (the kernel's /boot/config-RELEASE)");
      kopt.source = copt.source_dir;
      kopt.patch_file = copt.patch_file;
      kopt.output = copt.output;
      kopt.keep_work = copt.keep_work;
      kopt.label = copt.label;
      rc = ls::create::run_kernel_create(ctx, kopt);
    } else if (*create) {
      if (!std::filesystem::is_directory(copt.source_dir))
        throw ls::Error(copt.source_dir + ": not a directory (a tarball is accepted with --kernel only)");
      rc = ls::create::run_create(ctx, copt);
    }
    else if (*install) rc = ls::manager::run_install(ctx, mopt, install_files);
    else if (*remove) {
      if (remove_ids.empty() && !remove_all) throw ls::Error("remove: give the ids of stored updates, or --all");
      rc = ls::manager::run_remove(ctx, mopt, remove_ids, remove_all);
    } else if (*sync) rc = ls::manager::run_sync(ctx, mopt, sync_dry_run);
    else if (*status) rc = ls::manager::run_status(ctx, mopt);
    else if (*info) rc = ls::update::run_info(ctx, update_path);
    else if ((*apply && !apply_kernel && !*apply_pid) || (*undo && !undo_kernel && !*undo_pid) ||
             (*view && !view_kernel && !*view_pid_opt))
      throw ls::Error("give --pid PID (a process) or --kernel (the running kernel)");
    else if (*apply && apply_kernel) {
      kaopt.update = aopt.update;
      kaopt.retries = aopt.retries;
      kaopt.retry_delay_ms = aopt.retry_delay_ms;
      rc = ls::kernel::run_kernel_apply(ctx, kaopt);
    } else if (*undo && undo_kernel) {
      if (uopt.all) throw ls::Error("undo --kernel takes one ID or none (the newest), not --all");
      rc = ls::kernel::run_kernel_undo(ctx, {uopt.id, static_cast<unsigned>(uopt.retries),
                                             static_cast<unsigned>(uopt.retry_delay_ms)});
    } else if (*view && view_kernel) rc = ls::kernel::run_kernel_view(ctx);
    else if (*apply) rc = ls::proc::run_apply(ctx, aopt);   // LS_APPLY_WIRED
    else if (*undo) rc = ls::proc::run_undo(ctx, uopt);
    else if (*view) rc = ls::proc::run_view(ctx, view_pid, view_patch);
    return static_cast<int>(rc);
  } catch (const ls::Error& e) {
    fmt::print(stderr, "livesplice: error: {}\n", e.what());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    fmt::print(stderr, "livesplice: internal error: {}\n", e.what());
    return static_cast<int>(ls::Exit::ToolError);
  }
}
