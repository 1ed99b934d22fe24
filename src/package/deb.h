// `livesplice package`: live updates as a Debian package, so that a fleet is patched by
// the apt it already runs (repositories, unattended-upgrades, configuration management).
//
// The package is only files: each update, byte for byte, at the path the store gives it
// (/var/lib/livesplice/updates/ID.lsu, manager/store.h). Applying is not the package's
// business but the livesplice package's: it declares a dpkg file trigger on that
// directory, so that after a dpkg run that installed, upgraded or removed any number of
// update packages, `livesplice sync` runs once and converges every process on what the
// store now holds (debian/livesplice.triggers, debian/livesplice.postinst).
//
// What is hard is the upgrade. dpkg unpacks the new version's files over the old ones
// (each renamed into place: a path both versions ship never disappears), then deletes
// the old version's files the new one does not ship, and only then runs the trigger. So
// an update kept from one version to the next stays applied throughout, and the sync
// applies the new ones and undoes the dropped ones: the process ends with exactly the new
// set and is never without a fix both versions carry. A cumulative version is therefore
// the old updates plus new ones made on top of them (create on the tree with the earlier
// fixes applied), as Ksplice shipped its updates; an update that replaces an older one's
// functions from the original source cannot be applied over it, and would leave a gap.
//
// Order. The store applies updates in install order, but dpkg writes no install record.
// An update without one is ordered by its file's modification time (store.h), so the
// package gives its files increasing times in the order of the command line: an update
// made on top of another must come after it.
#pragma once

#include <string>
#include <vector>

#include "base/diag.h"

namespace ls::package {

struct PackageOptions {
  std::vector<std::string> updates;   // in the order they apply
  std::string name;                   // the Debian package name
  std::string version;                // its Debian version
  std::string out_dir;
  std::string maintainer;             // "" for $DEBFULLNAME <$DEBEMAIL>, else a placeholder
};

// Verifies every update (digest, schema), writes NAME_VERSION_amd64.deb into out_dir
// with dpkg-deb and prints its path. Exit 1 for an unusable update, a name or version
// Debian refuses, or dpkg-deb failing.
Exit run_package(Context& ctx, const PackageOptions& options);

}  // namespace ls::package
