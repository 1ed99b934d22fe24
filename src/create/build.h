// Running the user's build through livesplice-cc, reading what it recorded, and putting
// the tree back afterwards.
//
// What is hard: create runs the user's own build twice inside the user's own tree, and
// must leave that tree byte for byte and mtime for mtime as it found it — whether the
// tree was clean or already built, in-tree or out-of-tree, and on every exit path.
// First choice: the builds never write the tree at all — they run under overlays whose
// upper layers take every write (tree_overlay.h), and unmounting them restores the tree
// whatever the build did. The rest of this comment is what still runs beside that (the
// copies double as the original binaries' build-ids) and what alone keeps the tree
// where no overlay can be mounted, or with --in-place.
// Three mechanisms share one directory of saved copies (`<work>/saved/files/<abs path>`,
// first copy wins, mtime and mode preserved):
//   - the wrapper saves every object, dependency file, linked binary and archive it is
//     about to overwrite (the compiler writes its output in place, so nothing else
//     could keep the old bytes);
//   - TreeGuard::save() saves what create changes itself (the patched sources), and
//     save_metadata() everything in an out-of-tree build directory that is not an ELF
//     file (CMakeCache.txt, generated makefiles, .ninja_log, stamps, static archives
//     written by an `ar` we do not intercept);
//   - a stat snapshot of every entry under the roots, taken first: on restore, entries
//     that did not exist are removed, entries that differ are copied back from the saved
//     copies, directory mtimes are reset, and whatever still differs is reported by name;
//   - with the snapshot, a hard link to every file (when the work directory is on the
//     same filesystem): tools that replace a file by renaming a new one over it (ar,
//     libtool's .lo/.la, install, generated headers moved into place, CMake's generated
//     files) leave the old inode alive there, so such files come back even though no
//     copy was made. A file rewritten in place by anything but the compiler (xgettext's
//     catalogue, kbuild's .cmd files, man pages through a shell redirection) leaves
//     nothing behind: without overlays it cannot come back, and is named.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "base/diag.h"
#include "create/steps.h"
#include "create/tree_guard.h"

namespace ls::create {

enum class Phase { Pre, Post };
std::string_view to_string(Phase p);

// One line of the wrapper's record file (see src/create/wrapper.cc). Paths are absolute.
struct CompileRecord {
  Phase phase = Phase::Pre;
  std::string cwd;
  std::string tool;                 // the real compiler that ran
  std::vector<std::string> argv;    // as the build invoked it
  std::vector<std::string> exec;    // as it was run (with the flags the wrapper added)
  std::string output;               // the object
  std::string source;
  std::vector<std::string> deps;    // dependency files it wrote
  bool lto = false;
};

struct LinkRecord {
  Phase phase = Phase::Pre;
  std::string cwd;
  std::string output;
  std::vector<std::string> objects, archives, shared_libs, libs, libdirs, sources;
  bool shared = false;
  bool relocatable = false;         // -r: the output is an object again
};

struct ArchiveRecord {
  Phase phase = Phase::Pre;
  std::string output;
  std::vector<std::string> objects;
};

// `ar x ARCHIVE` run in `dir`: the objects it leaves there are copies of the members.
struct ExtractRecord {
  Phase phase = Phase::Pre;
  std::string dir;
  std::string archive;
};

struct Records {
  std::vector<CompileRecord> compiles;
  std::vector<LinkRecord> links;
  std::vector<ArchiveRecord> archives;
  std::vector<ExtractRecord> extracts;

  // Appends the records in `path` (absent file: none). Malformed line: Error `path:N`.
  void load(const std::string& path);
  // Appends every record of `other`.
  void append(const Records& other);
};

// The private work directory of one create run (a WorkDir, steps.h): the wrapper's PATH
// directory of symlinks, record files, saved copies, pre objects, logs.
class Workspace {
 public:
  Workspace(Context& ctx, const std::string& wrapper_path, bool keep);

  const std::string& dir() const { return work_.dir(); }
  const std::string& wrapper() const { return wrapper_; }
  std::string record_file(Phase p) const;
  std::string saved_dir() const { return dir() + "/saved"; }        // wrapper: LIVESPLICE_BACKUP_DIR
  std::string pre_objects_dir() const { return dir() + "/pre"; }    // wrapper: LIVESPLICE_PRE_DIR
  std::string log_file(Phase p) const;
  // The environment a build runs with in phase p.
  std::map<std::string, std::string> build_env(Phase p) const;
  // The environment of configure steps: the wrapper is not on PATH and records nothing,
  // so a configure script or CMake finds and caches the real compiler, and its test
  // compiles leave no records. (CMake still reaches the wrapper through its launchers.)
  std::map<std::string, std::string> configure_env() const;

 private:
  std::string wrapper_;   // checked before the work directory is made
  WorkDir work_;
  std::string shim_dir_;
};

// How to run the build: configure steps (once, before the pre build) and the build.
struct BuildPlan {
  std::string system;              // "make", "cmake", "configure+make", "custom"
  std::string source_dir;
  std::string build_dir;           // == source_dir for in-tree builds
  std::vector<std::vector<std::string>> configure;   // run in build_dir
  std::string build_shell;         // `sh -c` command, run in build_cwd
  std::string build_cwd;
  bool out_of_tree() const { return build_dir != source_dir; }
};
BuildPlan plan_build(Context& ctx, const std::string& source_dir, const std::string& build_dir,
                     const std::string& build_cmd, const std::string& wrapper_path);

struct BuildStats {
  size_t compiled = 0;
  size_t linked = 0;
  double seconds = 0;
};

// Runs the plan's configure steps (pre only) and build for phase p, output into the
// phase's log. Throws Error when a step fails, quoting the log's last lines.
BuildStats run_build(Context& ctx, const BuildPlan& plan, const Workspace& ws, Phase p);

// The GNU build-id of a linked ELF file as hex, or "" when it has none / is not ELF.
std::string read_build_id(const std::string& path);
bool is_elf_file(const std::string& path);

// Which final binaries (executables, shared libraries) each object ends up in, following
// archives, partial (-r) links and members extracted from one archive into another
// (libtool's nested convenience libraries). Keys and values are absolute paths.
std::map<std::string, std::vector<std::string>> map_objects_to_binaries(const Records& records);

// Compile command for rebuilding `rec.source` into `output` without touching the tree:
// the recorded command with -o replaced and dependency-file options removed.
std::vector<std::string> recompile_command(const CompileRecord& rec, const std::string& output);

}  // namespace ls::create
