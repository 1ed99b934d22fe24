// `livesplice create`: source tree + patch -> update file.
//
// The pipeline (create.cc): build pre with the compiler wrapper -> apply the patch ->
// rebuild -> pair each rebuilt object with its pre copy -> diff -> restore the tree
// (sources, mtimes and build outputs) to how it was found -> write the update.
#pragma once

#include <string>

#include "base/diag.h"

namespace ls::create {

struct CreateOptions {
  std::string source_dir;
  std::string patch_file;
  std::string build_cmd;      // empty: guess (make / cmake / configure+make)
  std::string build_dir;      // out-of-tree build directory, if any
  std::string output;
  std::string wrapper_path;   // the livesplice-cc binary
  bool keep_work = false;     // keep the work directory (pre objects, logs) for debugging
  bool in_place = false;      // build in the tree itself, not under overlays (tree_overlay.h)
  std::string label;          // the manifest's label (the version the fix brings); "" for none
};

// Returns the process exit code (see ls::Exit). Throws ls::Error on tool errors.
Exit run_create(Context& ctx, const CreateOptions& options);

}  // namespace ls::create
