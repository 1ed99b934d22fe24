// `livesplice create --kernel`: a kernel source tree (or tarball), its config and a patch
// -> an update file for the running kernel. The pipeline is in kernel_create.cc; the
// build directory and single-object builds in kernel_build.h.
#pragma once

#include <string>

#include "base/diag.h"

namespace ls::create {

struct KernelCreateOptions {
  std::string source;       // kernel source tree, or a linux-source-*.tar.xz (unpacked into the cache)
  std::string config;       // the running kernel's config (/boot/config-RELEASE)
  std::string release;      // uname -r of the kernel; default: from the config's file name
  std::string patch_file;
  std::string output;
  std::string headers;      // the kernel's linux-headers directory; default /usr/src/linux-headers-RELEASE
  std::string cache_dir;    // default: ${XDG_CACHE_HOME:-$HOME/.cache}/livesplice/kernel
  bool keep_work = false;
  std::string label;        // the manifest's label (the version the fix brings); "" for none
};

// Returns the process exit code (see ls::Exit). Throws ls::Error on tool errors and on
// unsafe changes (Exit::Unsafe).
Exit run_kernel_create(Context& ctx, const KernelCreateOptions& options);

}  // namespace ls::create
