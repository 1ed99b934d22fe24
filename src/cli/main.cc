// livesplice: rebootless updates generated from a source patch.
//
// main() reads as what it does: define the subcommands (add_*), parse, run the one
// given (run), which hands a Context to one pipeline; every subcommand returns an
// ls::Exit. Errors thrown by offline stages stop in run().
#include <CLI/CLI.hpp>
#include <filesystem>
#include <unistd.h>

#include "base/diag.h"
#include "git_describe.h"
#include "create/create.h"
#include "create/kernel_create.h"
#include "differ/report.h"
#include "kernel/apply.h"
#include "process/apply.h"
#include "manager/manager.h"
#include "manager/watch.h"
#include "package/deb.h"
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

// The context and every subcommand's options, filled in by CLI11 as it parses. The
// App pointers say which subcommand was given (exactly one is).
struct Command {
  ls::Context ctx;

  CLI::App* diff = nullptr;
  std::string pre, post;

  CLI::App* create = nullptr;
  ls::create::CreateOptions copt;
  bool kernel = false;                  // create --kernel: a different pipeline, with kopt
  ls::create::KernelCreateOptions kopt;
  CLI::Option* kconfig = nullptr;

  CLI::App* info = nullptr;
  std::string update_path;

  CLI::App* apply = nullptr;
  ls::proc::ApplyOptions aopt;
  CLI::Option* apply_pid = nullptr;
  bool apply_kernel = false;
  ls::kernel::KernelApplyOptions kaopt;

  CLI::App* undo = nullptr;
  ls::proc::UndoOptions uopt;
  CLI::Option* undo_pid = nullptr;
  bool undo_kernel = false;

  CLI::App* view = nullptr;
  pid_t view_pid = 0;
  bool view_patch = false;
  CLI::Option* view_pid_opt = nullptr;
  bool view_kernel = false;

  // The update manager (src/manager/manager.h): a store of updates kept applied.
  ls::manager::ManagerOptions mopt;
  CLI::App* install = nullptr;
  std::vector<std::string> install_files;
  CLI::App* remove = nullptr;
  std::vector<std::string> remove_ids;
  bool remove_all = false;
  CLI::App* sync = nullptr;
  bool sync_dry_run = false;
  CLI::App* status = nullptr;
  CLI::App* watch = nullptr;
  int watch_hold_limit_ms = 10000;

  // Updates as a Debian package (src/package/deb.h).
  CLI::App* package = nullptr;
  ls::package::PackageOptions popt;
};

void add_diff(CLI::App& app, Command& c) {
  c.diff = app.add_subcommand(
      "diff", "Compare PRE.o and POST.o (one source file built before and after a patch):\n"
              "which functions and data are same, changed, new or removed, and why.");
  c.diff->add_option("pre", c.pre, "Object built before the patch")->required()->check(CLI::ExistingFile);
  c.diff->add_option("post", c.post, "Object built after the patch")->required()->check(CLI::ExistingFile);
  c.diff->add_flag("--json", c.ctx.json, "Print JSON on stdout");
}

void add_create(CLI::App& app, Command& c) {
  c.copt.wrapper_path = self_dir() + "/livesplice-cc";
  c.create = app.add_subcommand(
      "create", "Build the source tree before and after PATCH, diff every rebuilt object and\n"
                "write an update file. The tree is restored to how it was found.");
  c.create->add_option("--source", c.copt.source_dir,
                       "Source tree the running program was built from (--kernel: a kernel tree or source tarball)")
      ->required()->check(CLI::ExistingPath);
  c.create->add_option("--patch", c.copt.patch_file, "Unified diff, applied with patch -p1 in --source")
      ->required()->check(CLI::ExistingFile);
  c.create->add_option("--build-cmd", c.copt.build_cmd,
                       "Shell command that builds the tree (run in --source; default: make, or cmake for CMake projects)");
  c.create->add_option("--build-dir", c.copt.build_dir, "Out-of-tree build directory (CMake/autotools)");
  c.create->add_option("-o,--output", c.copt.output, "Update file to write")->required();
  c.create->add_flag("--keep-work", c.copt.keep_work, "Keep the work directory (pre objects, build logs)");
  c.create->add_flag("--in-place", c.copt.in_place,
                     "Build in the tree itself, not under a private overlay; the tree is restored from copies and "
                     "hard links, which cannot bring back a file the build rewrites in place without the compiler");
  c.create->add_option("--label", c.copt.label,
                     "The version the fix brings, as users name it (e.g. the fixed package's Debian version); "
                     "status shows it as the effective version of what the update patches");
  c.create->add_flag("--json", c.ctx.json, "Print the summary as JSON on stdout");
  // Kernel updates: the same subcommand, a different pipeline (src/create/kernel_create.h).
  c.create->add_flag("--kernel", c.kernel, "The source is the running kernel's (linux-source-*.tar.xz or a tree)");
  c.kconfig = c.create->add_option("--config", c.kopt.config, "--kernel: the kernel's config (/boot/config-RELEASE)")
                      ->check(CLI::ExistingFile);
  c.create->add_option("--release", c.kopt.release, "--kernel: uname -r of the kernel (default: from the config's name)");
  c.create->add_option("--headers", c.kopt.headers,
                       "--kernel: the kernel's linux-headers directory, for the update's module "
                       "(default: /usr/src/linux-headers-RELEASE)");
  c.create->add_option("--cache-dir", c.kopt.cache_dir,
                       "--kernel: where the unpacked source and prepared build live (default: ~/.cache/livesplice/kernel)");
}

void add_info(CLI::App& app, Command& c) {
  c.info = app.add_subcommand("info", "Print what an update file contains");
  c.info->add_option("update", c.update_path, "Update file")->required()->check(CLI::ExistingFile);
  c.info->add_flag("--json", c.ctx.json, "Print JSON on stdout");
}

void add_apply(CLI::App& app, Command& c) {
  c.apply = app.add_subcommand(
      "apply", "Apply an update to a running process (--pid) or to the running kernel\n"
               "(--kernel, as root), without restarting it.");
  c.apply->footer(
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
  c.apply_pid = c.apply->add_option("--pid", c.aopt.pid, "Process to update (or --kernel)")->check(CLI::PositiveNumber);
  // The running kernel instead (src/kernel/apply.h): same stages, livesplice.ko does the stop.
  c.apply->add_flag("--kernel", c.apply_kernel, "Update the running kernel instead of a process (as root)")
      ->excludes(c.apply_pid);
  c.apply->add_option("--core", c.kaopt.core, "--kernel: livesplice.ko, loaded if it is not yet")->check(CLI::ExistingFile);
  c.apply->add_option("update", c.aopt.update, "Update file made by livesplice create")->required()->check(CLI::ExistingFile);
  c.apply->add_option("--retries", c.aopt.retries, "Further attempts when a thread (--kernel: a task) is in the way")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  c.apply->add_option("--retry-delay", c.aopt.retry_delay_ms, "Milliseconds between attempts")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  c.apply->add_option("--hot-wait", c.aopt.hot_wait_ms,
                      "Milliseconds an attempt lets threads run out of the functions (their entries trapped); 0: none")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  c.apply->add_option("--hook-timeout", c.aopt.hook_timeout_ms,
                     "Milliseconds a hook of the update may run before it is abandoned (nothing changed)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  c.apply->add_flag("--json", c.ctx.json, "Print the result as JSON on stdout");
}

void add_undo(CLI::App& app, Command& c) {
  c.undo = app.add_subcommand(
      "undo", "Take an applied update out of a running process (--pid) or the running kernel\n"
              "(--kernel, as root): the newest one when no ID is given.");
  c.undo->footer(
      "Updates stack: undo the newest update of a function first, or use --all (processes).\n"
      "The same checks as apply: nothing is changed while a thread runs the code being\n"
      "removed (exit 2). --kernel also unloads the update's module, or cancels a pending\n"
      "update; with nothing applied it exits 3.\n\n"
      "Examples:\n"
      "  livesplice undo --pid 1234               the newest update\n"
      "  livesplice undo --pid 1234 --all\n"
      "  livesplice undo --kernel 3f2a            the kernel update whose id starts 3f2a\n");
  c.undo_pid = c.undo->add_option("--pid", c.uopt.pid, "Process (or --kernel)")->check(CLI::PositiveNumber);
  c.undo->add_flag("--kernel", c.undo_kernel, "Undo a kernel update (the newest when no ID is given)")->excludes(c.undo_pid);
  c.undo->add_option("id", c.uopt.id, "Update id (a prefix is enough), as livesplice view shows");
  c.undo->add_flag("--all", c.uopt.all, "Undo every update, newest first (--pid only)");
  c.undo->add_option("--retries", c.uopt.retries, "Further attempts when a thread is in the way")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  c.undo->add_option("--retry-delay", c.uopt.retry_delay_ms, "Milliseconds between attempts")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  c.undo->add_option("--hot-wait", c.uopt.hot_wait_ms,
                     "Milliseconds an attempt lets threads run out of the new code (its entries trapped); 0: none")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  c.undo->add_option("--hook-timeout", c.uopt.hook_timeout_ms,
                     "Milliseconds a hook of the update may run before it is abandoned (nothing changed)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  c.undo->add_flag("--json", c.ctx.json, "Print the result as JSON on stdout");
}

void add_view(CLI::App& app, Command& c) {
  c.view = app.add_subcommand(
      "view", "List the updates applied to a running process (--pid) or to the running kernel\n"
              "(--kernel, as root), with their ids.");
  c.view->footer(
      "A process's updates come from the ledger it keeps; the kernel's from livesplice.ko,\n"
      "with the updates still waiting for their module listed as pending.\n\n"
      "Examples:\n"
      "  livesplice view --pid 1234 --patch\n"
      "  livesplice view --kernel --json\n");
  c.view_pid_opt = c.view->add_option("--pid", c.view_pid, "Process (or --kernel)")->check(CLI::PositiveNumber);
  c.view->add_flag("--kernel", c.view_kernel, "The updates applied to the running kernel")->excludes(c.view_pid_opt);
  c.view->add_flag("--patch", c.view_patch, "Also print each update's patch text (--pid only)");
  c.view->add_flag("--json", c.ctx.json, "Print JSON on stdout");
}

ls::Exit run_create(Command& c) {
  if (c.kernel) {
    if (!*c.kconfig) throw ls::Error("create --kernel needs --config (the kernel's /boot/config-RELEASE)");
    c.kopt.source = c.copt.source_dir;
    c.kopt.patch_file = c.copt.patch_file;
    c.kopt.output = c.copt.output;
    c.kopt.keep_work = c.copt.keep_work;
    c.kopt.label = c.copt.label;
    return ls::create::run_kernel_create(c.ctx, c.kopt);
  }
  if (!std::filesystem::is_directory(c.copt.source_dir))
    throw ls::Error(c.copt.source_dir + ": not a directory (a tarball is accepted with --kernel only)");
  return ls::create::run_create(c.ctx, c.copt);
}

// apply, undo and view: on the running kernel (--kernel) or on a process (--pid).
ls::Exit run_live(Command& c) {
  if ((*c.apply && !c.apply_kernel && !*c.apply_pid) || (*c.undo && !c.undo_kernel && !*c.undo_pid) ||
      (*c.view && !c.view_kernel && !*c.view_pid_opt))
    throw ls::Error("give --pid PID (a process) or --kernel (the running kernel)");
  if (*c.apply && c.apply_kernel) {
    c.kaopt.update = c.aopt.update;
    c.kaopt.retries = c.aopt.retries;
    c.kaopt.retry_delay_ms = c.aopt.retry_delay_ms;
    return ls::kernel::run_kernel_apply(c.ctx, c.kaopt);
  }
  if (*c.undo && c.undo_kernel) {
    if (c.uopt.all) throw ls::Error("undo --kernel takes one ID or none (the newest), not --all");
    return ls::kernel::run_kernel_undo(c.ctx, {c.uopt.id, static_cast<unsigned>(c.uopt.retries),
                                               static_cast<unsigned>(c.uopt.retry_delay_ms)});
  }
  if (*c.view && c.view_kernel) return ls::kernel::run_kernel_view(c.ctx);
  if (*c.apply) return ls::proc::run_apply(c.ctx, c.aopt);   // LS_APPLY_WIRED
  if (*c.undo) return ls::proc::run_undo(c.ctx, c.uopt);
  return ls::proc::run_view(c.ctx, c.view_pid, c.view_patch);
}

// install, remove, sync, status: the update manager's commands.
void add_manager(CLI::App& app, Command& c) {
  auto manager_options = [&](CLI::App* cmd, bool changes) {
    cmd->add_option("--root", c.mopt.root,
                    "The store's directory (default: $LIVESPLICE_ROOT, else /var/lib/livesplice)");
    if (!changes) return;
    cmd->add_option("--retries", c.mopt.retries, "Further attempts per process when a thread is in the way")
        ->capture_default_str()->check(CLI::NonNegativeNumber);
    cmd->add_option("--retry-delay", c.mopt.retry_delay_ms, "Milliseconds between those attempts")
        ->capture_default_str()->check(CLI::NonNegativeNumber);
    cmd->add_option("--hot-wait", c.mopt.hot_wait_ms, "Milliseconds an attempt lets threads run out of the functions")
        ->capture_default_str()->check(CLI::NonNegativeNumber);
    cmd->add_option("--rounds", c.mopt.rounds,
                    "Further passes over the processes where it failed, 0.2 s apart, then 4 times longer each")
        ->capture_default_str()->check(CLI::NonNegativeNumber);
    cmd->add_option("--backoff", c.mopt.backoff_s,
                    "Seconds before a later sync tries an apply that failed again (then 4 times longer "
                    "after each further failure, up to a day); install always tries")
        ->capture_default_str()->check(CLI::NonNegativeNumber);
    cmd->add_flag("--json", c.ctx.json,
                  "Print one JSON document on stdout: per update and target, the outcome and why");
    cmd->add_option("--core", c.mopt.core,
                    "livesplice.ko, for kernel updates when it is not loaded (default: "
                    "/lib/modules/RELEASE/extra/livesplice.ko, where modules_install puts it)")
        ->check(CLI::ExistingFile);
  };
  const char* manager_footer =
      "The store holds the updates this machine should have; every update is applied to every\n"
      "running process that maps the executable or library it was made for, known by its\n"
      "build-id as mapped (also when the file was replaced on disk since the process started),\n"
      "and a kernel update (create --kernel) to the running kernel when it was made for its\n"
      "release (uname -r), as apply --kernel does.\n"
      "One line per target: applied, already applied, undone, or failed and why. Nothing stops\n"
      "at the first failure; what failed is tried again (--rounds) and `status` says why.\n"
      "A later sync tries it again once its backoff is over (--backoff), saying\n"
      "'retrying: busy thread, next attempt after TIME' until then.\n"
      "--json: {\"command\", \"root\", \"exit\", \"store\": [{\"outcome\", \"id\", \"file\", \"error\"}],\n"
      "\"targets\": [{\"outcome\", \"update\", \"label\", \"target\" ({\"pid\", \"start_time\", \"command\"}\n"
      "or {\"target\": \"kernel\", \"release\"}), \"reason\", \"kind\", \"next_attempt\"}]}; outcomes\n"
      "applied, already-applied, pending, undone, failed, retrying, not-for-this-kernel,\n"
      "fits-nothing, would-apply, would-undo; kinds busy, mismatch, seccomp, not-running,\n"
      "permission, other.\n"
      "Exit 0 when everything that fits is done, 2 when a process could not be patched safely,\n"
      "1 for other failures. One command changes the store at a time (others wait).\n";

  c.install = app.add_subcommand(
      "install", "Put updates in the store and apply each to every running process it fits (as root).");
  c.install->footer(std::string(manager_footer) +
                  "\nExamples:\n"
                  "  livesplice install fix.lsu\n"
                  "  livesplice install --root /srv/store a.lsu b.lsu\n");
  c.install->add_option("updates", c.install_files, "Update files made by livesplice create")->required()
      ->check(CLI::ExistingFile);
  manager_options(c.install, true);

  c.remove = app.add_subcommand(
      "remove", "Take updates out of the store and undo them in every process they are applied in.");
  c.remove->footer(std::string(manager_footer) +
                 "\nAn update leaves the store first: a remove that is interrupted is finished by\n"
                 "the next `livesplice sync`, never reverted by it.\n\n"
                 "Examples:\n"
                 "  livesplice remove 3f2a        the stored update whose id starts 3f2a (see status)\n"
                 "  livesplice remove --all\n");
  auto* remove_ids_opt = c.remove->add_option("ids", c.remove_ids, "Update ids (a prefix is enough)");
  c.remove->add_flag("--all", c.remove_all, "Every stored update")->excludes(remove_ids_opt);
  manager_options(c.remove, true);

  c.sync = app.add_subcommand(
      "sync", "Make the running processes and kernel agree with the store: every stored update applied\n"
              "wherever it fits, every update the store applied and no longer holds undone.");
  c.sync->footer(std::string(manager_footer) +
               "\nIdempotent: a second sync finds everything applied. Updates applied by hand with\n"
               "`apply` (or from another --root) are left alone. At boot, systemd's\n"
               "livesplice-sync.service runs it to apply the stored kernel updates again.\n\n"
               "Examples:\n"
               "  livesplice sync --dry-run     what it would do\n"
               "  livesplice sync\n");
  c.sync->add_flag("--dry-run", c.sync_dry_run, "Say what would be applied and undone, change nothing");
  manager_options(c.sync, true);

  c.status = app.add_subcommand(
      "status", "Per stored update: the processes it is applied in, those it fits but is not\n"
                "applied in and why; per binary, each process's effective version.");
  c.status->footer(
      "The effective version of a binary in a process is the label (create --label) of the\n"
      "newest stored update applied there. Changes nothing.\n\n"
      "Examples:\n"
      "  livesplice status\n"
      "  livesplice status --json\n");
  c.status->add_flag("--json", c.ctx.json, "Print JSON on stdout");
  manager_options(c.status, false);

  c.watch = app.add_subcommand(
      "watch", "Run as a daemon that applies the stored updates to every process that starts\n"
               "running a patched program, or loads a patched library, before that code runs.");
  c.watch->footer(
      "A process that execs a program a stored update is for, or whose ld.so opens such a\n"
      "library (at start or in dlopen), is held when ld.so has mapped everything, before any\n"
      "constructor, main() or the library's first call; the updates that fit it are applied\n"
      "as `sync` would, then it runs on. Nothing else is stopped or traced. An apply refused\n"
      "there (a thread in the way) is tried again on the running process after 1, 4, 16...\n"
      "seconds (`status` shows the failures). Needs root (CAP_SYS_ADMIN for fanotify,\n"
      "CAP_SYS_PTRACE); systemd/livesplice-watch.service runs it. SIGTERM stops it after\n"
      "releasing what it holds.\n\n"
      "Examples:\n"
      "  livesplice watch\n"
      "  livesplice watch --root /srv/store\n");
  manager_options(c.watch, true);
  c.watch->add_option("--hold-limit", c.watch_hold_limit_ms,
                      "Milliseconds a starting process may take to map its libraries before it is let go")
      ->capture_default_str()->check(CLI::PositiveNumber);
}

void add_package(CLI::App& app, Command& c) {
  c.package = app.add_subcommand(
      "package", "Write updates as a Debian package (NAME_VERSION_amd64.deb in DIR) that installs\n"
                 "them into the store; livesplice's dpkg trigger then applies them everywhere.");
  c.package->footer(
      "The package depends on livesplice and holds each update at\n"
      "/var/lib/livesplice/updates/ID.lsu. After a dpkg run that installed, upgraded or\n"
      "removed any number of such packages, livesplice's trigger runs `livesplice sync`\n"
      "once: stored updates are applied wherever they fit, those no longer stored undone.\n"
      "Updates apply in the order given. A newer version of a package should hold the\n"
      "older one's updates plus the new ones, made on top of them (create on the tree with\n"
      "the earlier fixes applied): an upgrade then keeps every fix applied and adds the new.\n"
      "Exit 0 when the package was written, 1 otherwise (an unusable update, a name or\n"
      "version Debian refuses).\n\n"
      "Examples:\n"
      "  livesplice package kvd-fix.lsu --name kvd-live --version 1 -o repo/incoming\n"
      "  livesplice package fix1.lsu fix2.lsu --name kvd-live --version 2 -o repo/incoming\n");
  c.package->add_option("updates", c.popt.updates, "Update files made by livesplice create, in the order they apply")
      ->required()->check(CLI::ExistingFile);
  c.package->add_option("--name", c.popt.name, "The Debian package name")->required();
  c.package->add_option("--version", c.popt.version, "The Debian package version")->required();
  c.package->add_option("-o,--output", c.popt.out_dir, "Directory to write the .deb into")->required();
  c.package->add_option("--maintainer", c.popt.maintainer,
                        "The Maintainer field (default: $DEBFULLNAME <$DEBEMAIL>)");
}

// The one subcommand given. Offline stages throw; this is where their errors stop.
int run(Command& c) {
  try {
    ls::Exit rc = ls::Exit::Ok;
    if (*c.diff) rc = ls::diff::run_diff(c.ctx, c.pre, c.post);
    else if (*c.create) rc = run_create(c);
    else if (*c.info) rc = ls::update::run_info(c.ctx, c.update_path);
    else if (*c.install) rc = ls::manager::run_install(c.ctx, c.mopt, c.install_files);
    else if (*c.remove) {
      if (c.remove_ids.empty() && !c.remove_all) throw ls::Error("remove: give the ids of stored updates, or --all");
      rc = ls::manager::run_remove(c.ctx, c.mopt, c.remove_ids, c.remove_all);
    } else if (*c.sync) rc = ls::manager::run_sync(c.ctx, c.mopt, c.sync_dry_run);
    else if (*c.status) rc = ls::manager::run_status(c.ctx, c.mopt);
    else if (*c.watch) rc = ls::manager::run_watch(c.ctx, {c.mopt, c.watch_hold_limit_ms});
    else if (*c.package) rc = ls::package::run_package(c.ctx, c.popt);
    else rc = run_live(c);
    return static_cast<int>(rc);
  } catch (const ls::Error& e) {
    c.ctx.report(fmt::format("error: {}", e.what()));
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    c.ctx.report(fmt::format("internal error: {}", e.what()));
    return static_cast<int>(ls::Exit::ToolError);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Command cmd;
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
      "  livesplice status / sync / remove ID                         the machine's updates (the manager)\n"
      "  livesplice package fix.lsu --name N --version V -o DIR       the updates as a Debian package\n\n"
      "Exit codes: 0 ok, 1 tool error, 2 cannot be patched safely, 3 no change.",
      "livesplice"};
  app.require_subcommand(1);
  app.set_version_flag("--version", version_text(), "Print the version and exit");
  app.fallthrough();  // -v/-q may follow the subcommand
  app.add_flag("-v,--verbose", cmd.ctx.verbose, "More detail on stderr");
  app.add_flag("-q,--quiet", cmd.ctx.quiet, "No progress lines");

  add_diff(app, cmd);
  add_create(app, cmd);
  add_info(app, cmd);
  add_apply(app, cmd);
  add_undo(app, cmd);
  add_view(app, cmd);
  add_manager(app, cmd);
  add_package(app, cmd);

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
  return run(cmd);
}
