"""Where a package's source comes from: a Debian source package (apt-get source, into
the download cache) or a local source tree the recipe names.

What is hard: the archive moves on. A case's version may be gone from the main pool
(then the highest main-pool version is taken: the case's patch is found by name in its
series), and deb-src may not be enabled (it is added to the machine's existing `deb`
entries, never a new host). apt serves one caller at a time.
"""

import os
import re
import shlex
import shutil
from dataclasses import dataclass

from .context import NotRun, sh
from .recipes import local_source


@dataclass
class Source:
    version: str        # names the build tree
    dsc: str = None     # a Debian source package, or
    local: str = None   # a local source tree, copied as it is


def strip_epoch(v):
    return v.split(":", 1)[1] if ":" in v else v


def ensure_deb_src(ctx):
    """Adds deb-src to the machine's existing deb entries (no new host) when missing."""
    path = "/etc/apt/sources.list.d/debian.sources"
    changed = False
    if os.path.exists(path):
        text = open(path).read()
        new = re.sub(r"^Types:\s*deb\s*$", "Types: deb deb-src", text, flags=re.M)
        if new != text:
            open(path, "w").write(new)
            changed = True
    legacy = "/etc/apt/sources.list"
    if os.path.exists(legacy):
        lines = open(legacy).read().splitlines()
        have = {l.split(None, 1)[1] for l in lines if l.startswith("deb-src ")}
        add = [f"deb-src {l.split(None, 1)[1]}" for l in lines
               if l.startswith("deb ") and l.split(None, 1)[1] not in have]
        if add:
            open(legacy, "a").write("\n".join(add) + "\n")
            changed = True
    if changed:
        ctx.log("enabled deb-src entries; apt-get update")
        sh(ctx, "apt-get update -qq")


def ensure_packages(ctx, names):
    if not names:
        return
    with ctx.apt_lock():
        _, out = sh(ctx, "dpkg-query -W -f='${Package} ${db:Status-Status}\\n' " + " ".join(map(shlex.quote, names)),
                    check=False)
        have = {l.split()[0] for l in out.splitlines() if l.endswith(" installed")}
        missing = [n for n in names if n not in have]
        if missing:
            ctx.log(f"installing {' '.join(missing)}")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            rc, out = sh(ctx, "apt-get install -y -qq --no-install-recommends " + " ".join(missing), env=env,
                         check=False)
            if rc != 0:
                sh(ctx, "apt-get update -qq", check=False)
                sh(ctx, "apt-get install -y -qq --no-install-recommends " + " ".join(missing), env=env)


def _main_pool_versions(ctx, pkg):
    _, out = sh(ctx, f"apt-cache showsrc {shlex.quote(pkg)}", check=False)
    versions = []
    for block in out.split("\n\n"):
        v = re.search(r"^Version: (.*)$", block, re.M)
        d = re.search(r"^Directory: (.*)$", block, re.M)
        if v and d and d.group(1).startswith("pool/main/"):
            versions.append(v.group(1).strip())
    return versions


def _download(ctx, pkg, version):
    """The .dsc of pkg at version (or the highest main-pool version when it is gone)."""
    with ctx.apt_lock():
        for want in [version, None]:
            if want is None:
                cands = _main_pool_versions(ctx, pkg)
                if not cands:
                    break
                _, out = sh(ctx, "printf '%s\\n' " + " ".join(map(shlex.quote, cands)) + " | sort -V | tail -1",
                            check=False)
                want = out.strip()
                ctx.log(f"{pkg}={version} is gone; taking {want}")
            d = os.path.join(ctx.cache, "download", f"{pkg}_{strip_epoch(want)}")
            dsc = [f for f in os.listdir(d) if f.endswith(".dsc")] if os.path.isdir(d) else []
            if dsc:
                return Source(version=strip_epoch(want), dsc=os.path.join(d, dsc[0]))
            os.makedirs(d, exist_ok=True)
            ensure_deb_src(ctx)
            full = want
            if ":" not in want:  # apt wants the epoch when there is one
                for v in _main_pool_versions(ctx, pkg):
                    if strip_epoch(v) == want:
                        full = v
            rc, out = sh(ctx, f"apt-get source --download-only -qq {shlex.quote(pkg + '=' + full)}", cwd=d,
                         check=False)
            dsc = [f for f in os.listdir(d) if f.endswith(".dsc")]
            if rc == 0 and dsc:
                return Source(version=strip_epoch(want), dsc=os.path.join(d, dsc[0]))
            shutil.rmtree(d, ignore_errors=True)
    raise NotRun(f"cannot download the source of {pkg}={version}")


def fetch(ctx, recipe, version):
    """The source of the recipe's package at the case's version."""
    ensure_packages(ctx, recipe.get("apt", []))
    local = local_source(recipe, ctx.eval_dir)
    if local:
        if not os.path.isfile(os.path.join(local, "debian/patches/series")):
            raise NotRun(f"{local}: a local source tree needs debian/patches/series")
        return Source(version=version, local=local)
    return _download(ctx, recipe["package"], version)
