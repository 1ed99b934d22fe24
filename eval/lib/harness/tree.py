"""The cached build tree of one package version (and flavour), moved along its quilt
series, and its state (state.json).

What is hard: a tree is configured once and then rebuilt incrementally case after case,
so the state must say what it was configured from. It records a digest of the recipe's
configure keys (recipes.configure_key); when the recipe changes them (a configure line
fixed, a flag added) the tree is unpacked and configured anew rather than kept with a
configuration the recipe no longer describes. The tree is locked while a case uses it,
across threads and across eval/run processes sharing the cache.
"""

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import string
import threading
import time

from .context import NotRun, sh
from .recipes import configure_key, recipe_vars


def build_env(ctx, recipe, tree):
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)
    env["DEB_BUILD_MAINT_OPTIONS"] = "hardening=" + recipe.get("hardening", "+all")
    env["LC_ALL"] = "C"
    # Programs that run a command through $SHELL (script(1), make, editors) must see the
    # same shell whoever runs the harness: CI has none set, a login has bash.
    env["SHELL"] = "/bin/sh"
    env.update(recipe_vars(recipe, ctx.eval_dir))
    env["SRC"] = tree
    # DEB_*_MAINT_* settings change what dpkg-buildflags answers, as in debian/rules.
    for k, v in recipe.get("env", {}).items():
        if k.startswith("DEB_"):
            env[k] = v
    for var in ("CFLAGS", "CPPFLAGS", "CXXFLAGS", "LDFLAGS"):
        _, out = sh(ctx, f"dpkg-buildflags --get {var}", cwd=tree, env=env)
        env[var] = out.strip()
    for k, v in recipe.get("env", {}).items():
        env[k] = string.Template(v).safe_substitute(env)
    env["QUILT_PATCHES"] = "debian/patches"
    env["QUILT_PC"] = ".pc"
    return env


def series(tree):
    names = []
    with open(os.path.join(tree, "debian/patches/series")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                names.append(line.split()[0])
    return names


class Tree:
    """One build tree per package version (and flavour), moved along its quilt series."""

    def __init__(self, ctx, recipe, source, flavour=None):
        self.ctx, self.recipe, self.source = ctx, recipe, source
        self.base = os.path.join(ctx.cache, "build",
                                 f"{recipe['package']}_{source.version}" + (f"+{flavour}" if flavour else ""))
        self.dir = os.path.join(self.base, "src")
        self.state_file = os.path.join(self.base, "state.json")
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def lock(self):
        """Held while a case uses the tree; also across processes (a test run and a
        corpus run may share the cache)."""
        with self._thread_lock:
            os.makedirs(os.path.dirname(self.base), exist_ok=True)
            with open(self.base + ".lock", "w") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)

    def state(self):
        try:
            return json.load(open(self.state_file))
        except (OSError, ValueError):
            return {}

    def save_state(self, st):
        json.dump(st, open(self.state_file, "w"))

    def fresh(self, logf):
        shutil.rmtree(self.base, ignore_errors=True)
        os.makedirs(self.base)
        if self.source.local:
            shutil.copytree(self.source.local, self.dir, symlinks=True)
        else:
            sh(self.ctx, f"dpkg-source -x --skip-patches {shlex.quote(self.source.dsc)} src", cwd=self.base,
               log_file=logf)
        self.save_state({})

    def ensure(self, logf="/dev/null"):
        """The tree exists and was configured (if at all) from the recipe as it is now."""
        st = self.state() if os.path.isdir(self.dir) else None
        if st is None or not os.path.exists(self.state_file):
            self.fresh(logf)
            return
        want = configure_key(self.recipe, self.ctx.eval_dir)
        if st.get("configured") and "configure_key" not in st:
            # Configured by a harness that did not record the key: taken as it is.
            st["configure_key"] = want
            self.save_state(st)
        elif st.get("configured") and st["configure_key"] != want:
            self.ctx.log(f"{self.recipe['package']}: the recipe's configuration changed; unpacking the tree anew")
            self.fresh(logf)

    def _move_to(self, names, idx, env, logf):
        """Applies the series up to, not including, names[idx]."""
        rc, out = sh(self.ctx, "quilt top", cwd=self.dir, env=env, check=False)
        top = out.strip() if rc == 0 else None
        top_idx = names.index(top.removeprefix("debian/patches/")) if top else -1
        try:
            if top_idx > idx - 1:
                target = names[idx - 1] if idx > 0 else None
                sh(self.ctx, "quilt pop -f " + (shlex.quote(target) if target else "-a"), cwd=self.dir, env=env,
                   log_file=logf)
            elif top_idx < idx - 1:
                sh(self.ctx, f"quilt push --fuzz=0 {shlex.quote(names[idx - 1])}", cwd=self.dir, env=env,
                   log_file=logf)
        except NotRun:
            self.ctx.log(f"{self.recipe['package']}: quilt could not move; starting from a fresh tree")
            self.fresh(logf)
            if idx > 0:
                sh(self.ctx, f"quilt push --fuzz=0 {shlex.quote(names[idx - 1])}", cwd=self.dir, env=env,
                   log_file=logf)

    def prepare(self, patch, logf):
        """Moves the tree to just before `patch` and builds it; returns the build env."""
        self.ensure(logf)
        names = series(self.dir)
        if patch not in names:
            raise NotRun(f"{patch} is not in debian/patches/series")
        env = build_env(self.ctx, self.recipe, self.dir)
        idx = names.index(patch)
        self._move_to(names, idx, env, logf)
        st = self.state()
        if not st.get("configured"):
            if self.recipe.get("autoreconf"):
                sh(self.ctx, "autoreconf -fi", cwd=self.dir, env=env, log_file=logf)
            if self.recipe.get("configure"):
                sh(self.ctx, self.recipe["configure"], cwd=self.dir, env=env, log_file=logf)
            st["configured"] = True
            st["configure_key"] = configure_key(self.recipe, self.ctx.eval_dir)
            self.save_state(st)
        t0 = time.monotonic()
        sh(self.ctx, self.recipe["build"], cwd=self.dir, env=env, log_file=logf)
        st["built_at"] = names[idx - 1] if idx > 0 else None
        st["build_seconds"] = round(time.monotonic() - t0, 1)
        self.save_state(st)
        return env
