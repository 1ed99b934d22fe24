// The command line itself, on the built binary: `livesplice --version`, a bare
// `livesplice`, and the help of the subcommands that act on a process or the kernel.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "livesplice_version.h"
#include "update/format.h"
#include "support.h"

namespace {

using lstest::RunResult;

TEST(Cli, VersionNamesTheProjectVersionAndTheUpdateFormat) {
  RunResult r = lstest::run({lstest::livesplice(), "--version"});
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out.rfind(std::string("livesplice ") + LIVESPLICE_VERSION, 0), 0u) << r.describe();
  EXPECT_NE(r.out.find(fmt::format("update file format {}\n", ls::update::kFormatVersion)), std::string::npos)
      << r.describe();
}

// No subcommand: the usage on stderr (not a one-line complaint), exit 1.
TEST(Cli, BareCommandPrintsTheUsage) {
  RunResult r = lstest::run({lstest::livesplice()});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_TRUE(r.out.empty()) << r.describe();
  for (const char* word : {"Usage:", "Subcommands:", "create", "apply", "undo", "--version", "Exit codes"})
    EXPECT_NE(r.err.find(word), std::string::npos) << word << " missing from\n" << r.describe();
}

// apply, view and undo work on a process or the kernel: each one's help says both, and
// shows an example of each.
TEST(Cli, HelpOfApplyViewUndoTeachesProcessAndKernel) {
  for (const std::string sub : {"apply", "view", "undo"}) {
    RunResult r = lstest::run({lstest::livesplice(), sub, "--help"});
    EXPECT_EQ(r.status, 0) << r.describe();
    for (const std::string& text : {std::string("(--pid)"), std::string("(--kernel, as root"),
                                    std::string("Examples:"), "livesplice " + sub + " --pid ",
                                    "livesplice " + sub + " --kernel"})
      EXPECT_NE(r.out.find(text), std::string::npos) << sub << ": '" << text << "' missing from\n" << r.out;
  }
}

}  // namespace
