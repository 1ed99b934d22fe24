// Building single objects of a distribution kernel, the way the distribution built them.
//
// What is hard: a kernel build is slow (configuring and `make prepare` take minutes),
// while an update needs only the few objects a patch touches. So the build directory is
// out of tree (`make O=`), kept in the cache and keyed by the source tree, the config and
// the flags, prepared once and reused; each object is then compiled alone, pre and post.
// The compiler and flags must be the distribution's own (CONFIG_CC_VERSION_TEXT names
// the compiler; CONFIG_BUILD_SALT is set to the release), or the pre code will not match
// the running kernel. Every object is built with -ffunction-sections -fdata-sections
// (passed as KCFLAGS to everything, prepare included, so that kbuild never sees a changed
// command and rebuilds the world). After the first make of an object, its command line
// (from kbuild's `.<name>.o.cmd`: the compiler and then objtool) is replayed directly,
// which takes a second instead of make's tens of seconds of checks.
//
// The cache: `<cache>/src/<tarball>-<hash>/` (a source tarball unpacked once) and
// `<cache>/build/<hash>/` (one prepared build directory per source, config and flags),
// each created under a temporary name and renamed into place, and used under an flock
// so that two creates never share a build directory at the same time.
#pragma once

#include <string>
#include <vector>

#include "base/diag.h"
#include "base/subprocess.h"

namespace ls::create {

// One object as kbuild compiled it.
struct KernelObject {
  std::string object;     // relative to the build directory: fs/ext4/mballoc.o
  std::string source;     // relative to the source tree: fs/ext4/mballoc.c
  std::string module;     // "vmlinux" for built-in code, else the module (KBUILD_MODNAME)
  std::string command;    // the shell command kbuild ran (compiler ; objtool)
};

class KernelBuild {
 public:
  // `source`: a kernel source tree, or a source tarball (linux-source-*.tar.xz) that is
  // unpacked into the cache once. `config`: the kernel's config file. `release`: the
  // kernel release (uname -r), written into CONFIG_BUILD_SALT. Prepares the build
  // directory unless the cache already has it; holds its lock until destroyed.
  KernelBuild(Context& ctx, const std::string& source, const std::string& config, const std::string& release,
              const std::string& cache_dir, const SignalGuard& signals);
  ~KernelBuild();
  KernelBuild(const KernelBuild&) = delete;
  KernelBuild& operator=(const KernelBuild&) = delete;

  const std::string& source_dir() const { return source_; }
  const std::string& build_dir() const { return build_; }
  const std::string& compiler() const { return cc_; }
  // "6.1.192", from the source tree's Makefile.
  const std::string& kernel_version() const { return version_; }

  // Compiles `source` (a .c file relative to the source tree) as it is now into a fresh
  // object and copies it to `dest`. Throws Error quoting the compiler's output.
  KernelObject build_object(const std::string& source, const std::string& dest);

 private:
  void unpack_if_tarball(const std::string& source);
  void prepare(const std::string& config_text, const std::string& key);
  std::vector<std::string> make_args() const;

  Context& ctx_;
  const SignalGuard& signals_;
  std::string cache_;
  std::string source_;
  std::string build_;
  std::string cc_;
  std::string version_;
  std::string kcflags_;
  int lock_fd_ = -1;
};

// The release a config file belongs to: `config-6.1.0-55-amd64` -> "6.1.0-55-amd64", else
// its CONFIG_BUILD_SALT; "" when neither says.
std::string release_from_config(const std::string& config_path);

// `${XDG_CACHE_HOME:-$HOME/.cache}/livesplice/kernel`
std::string default_kernel_cache();

// The module every kernel update carries as the identity of its new code's module
// (src/kernel/module.h): built with `compiler` against `headers` (the kernel's
// linux-headers package), cached under `<cache>/skeleton/`; its bytes. Throws ls::Error,
// also when its vermagic is not for `release`.
inline constexpr std::string_view kSkeletonName = "livesplice_update";
std::vector<uint8_t> build_skeleton_module(Context& ctx, const std::string& headers, const std::string& compiler,
                                           const std::string& release, const std::string& cache_dir);

}  // namespace ls::create
