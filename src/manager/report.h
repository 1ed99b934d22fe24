// What install, remove and sync did: per update and target, the outcome and why.
//
// One printer for both forms, so that the text and --json never say different things:
// each entry is printed as one line when it happens (a sync over many processes shows
// its progress), or, with --json, gathered into one document printed at the end:
//   {"command", "root", "exit", "store": [{"outcome": "installed"|"not-installed"|
//    "removed"|"not-removed", "id", "file", "error"}], "targets": [{"outcome", "update",
//    "label", "target": {"pid", "start_time", "command"} | {"target": "kernel",
//    "release"}, "reason", "kind", "next_attempt"}]}
// Target outcomes: applied, already-applied, pending (a kernel update waiting for its
// module), undone, failed, retrying (held back by the backoff), not-for-this-kernel,
// fits-nothing, would-apply, would-undo (--dry-run).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/diag.h"

namespace ls::manager {

class Report {
 public:
  using Json = nlohmann::ordered_json;
  Report(const Context& ctx, std::string command) : ctx_(ctx), command_(std::move(command)) {}

  // A change to the store (install, remove): `line` for people, `entry` for --json.
  void store(Json entry, const std::string& line);
  // An outcome for one update on one target (or on none: fits-nothing).
  void target(Json entry, const std::string& line);
  // --json: the document, once, at the end; `rc` the command's exit code.
  void finish(const std::string& root, Exit rc) const;

 private:
  const Context& ctx_;
  std::string command_;
  Json store_ = Json::array(), targets_ = Json::array();
};

}  // namespace ls::manager
