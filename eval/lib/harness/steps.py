"""One case, step by step: build the pre tree, start the program, trigger before, create,
apply under load, smoke and trigger after, view, undo; and the flavours a case is run
in again when the main build does not compile its fix.

What is hard: telling the outcomes apart. A failure of the harness or the recipe is
`not-run` (NotRun), one of livesplice or of the program under update is `error`
(Failed); create's or apply's "cannot be applied safely" is `refused` (or `needs-hook`
when the recipe names the hook). Every path stops the program and its setup processes
and saves the result at once; an interrupted case saves none, so it runs again.
"""

import datetime
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time

from .context import Failed, Interrupted, NotRun, append, free_port, now_iso, run_child
from .program import Load, Program
from .recipes import flavoured, program_for
from .source import ensure_packages
from .tree import Tree


class Decided(Exception):
    """The case has its outcome before the end (refused, not-applicable)."""


def livesplice(ctx, args, logf, cwd=None, env=None, timeout=1800):
    cmd = [ctx.livesplice] + args
    append(logf, f"\n$ {shlex.join(cmd)}\n")
    t0 = time.monotonic()
    p = run_child(ctx, cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    secs = time.monotonic() - t0
    append(logf, p.stdout + p.stderr + f"(exit {p.returncode}, {secs:.1f} s)\n")
    try:
        data = json.loads(p.stdout) if p.stdout.strip() else None
    except ValueError:
        data = None
    return p.returncode, data, p.stderr.strip(), secs


def first_error(stderr):
    lines = [l for l in stderr.splitlines() if l.strip()]
    keep = [l for l in lines if "error" in l.lower() or "unsafe" in l.lower() or "cannot" in l.lower()
            or l.startswith("  ")]
    return "\n".join((keep or lines)[-12:])


def binary_id(path):
    """Which livesplice ran a case: the start of its SHA-256 and its mtime."""
    try:
        h = hashlib.sha256(open(path, "rb").read()).hexdigest()[:12]
        m = datetime.datetime.fromtimestamp(os.stat(path).st_mtime, datetime.timezone.utc)
        return f"{h} ({m.strftime('%Y-%m-%d %H:%M')} UTC)"
    except OSError:
        return "?"


def with_ports(env, rundir):
    return dict(env, RUN=rundir, PORT=str(free_port()), PORT2=str(free_port()), PORT3=str(free_port()))


def bash_command(cmd):
    """create runs --build-cmd with /bin/sh; a recipe's `build` is bash wherever it runs."""
    return "bash -c " + shlex.quote(cmd)


class CaseRun:
    """One case of one recipe in one build tree; `run` returns its result record."""

    def __init__(self, ctx, case, recipe, tree):
        self.ctx, self.case, self.recipe, self.tree = ctx, case, recipe, tree
        self.cdir = os.path.join(ctx.out, "cases", case["id"])
        self.logf = os.path.join(self.cdir, "log.txt")
        self.per_case = recipe.get("cases", {}).get(case["patch"], {})
        self.trig = self.per_case.get("trigger")
        self.program = None
        self.env = None
        rec = {k: case.get(k, "") for k in ("package", "version", "patch", "cves", "class")}
        rec.update(id=case["id"], outcome=None, reason="", stage="", functions=[], new_functions=[],
                   create_s=None, pause_us=None, triggered=None, smoke_under_load=None, started=now_iso(),
                   livesplice=binary_id(ctx.livesplice))
        self.rec = rec

    def run(self):
        shutil.rmtree(self.cdir, ignore_errors=True)
        os.makedirs(self.cdir)
        rec = self.rec
        try:
            rec["stage"] = "fetch"
            ensure_packages(self.ctx, self.recipe.get("apt", []))
            with self.tree.lock():
                self.build_pre()
                self.start_program()
                self.trigger_before()
                update = self.create()
                applied = self.apply(update)
                self.check_after_apply()
                self.view(applied)
                self.undo(applied)
                rec["stage"], rec["outcome"] = "done", "applied"
        except Decided:
            pass
        except (Failed, NotRun, subprocess.TimeoutExpired) as e:
            if self.ctx.stopping.is_set():
                raise Interrupted() from e   # what failed was stopped by the interruption
            self.failed(e)
        finally:
            if self.program:
                self.program.stop()
            rec["finished"] = now_iso()
            json.dump(rec, open(os.path.join(self.cdir, "result.json"), "w"), indent=2)
        return rec

    def failed(self, e):
        rec = self.rec
        if isinstance(e, NotRun):
            rec["outcome"], rec["reason"] = "not-run", str(e)[-3000:]
        elif isinstance(e, subprocess.TimeoutExpired):
            rec["outcome"] = "error" if rec["stage"] in ("create", "apply", "view", "undo") else "not-run"
            rec["reason"] = f"timed out: {e}"
        else:
            rec["outcome"], rec["reason"] = "error", str(e)
            # A fix that changes what data already in the program means (a hash seed, an
            # encoding) in a way no object comparison can see: create and apply succeed
            # and the program then misbehaves. The recipe names the hook that would keep
            # the old data valid; the misbehaviour shown is the evidence, and the outcome
            # is needs-hook, not a livesplice defect. Only after a successful apply.
            if self.per_case.get("hook") and rec["stage"] in ("apply", "after-apply") and rec.get("pauses_us"):
                rec["outcome"], rec["hook"] = "needs-hook", self.per_case["hook"]
                rec["reason"] = f"applied, then: {e}"

    def decide(self, outcome, reason):
        self.rec["outcome"], self.rec["reason"] = outcome, reason
        if outcome == "refused" and self.per_case.get("hook"):
            self.rec["outcome"], self.rec["hook"] = "needs-hook", self.per_case["hook"]
        raise Decided()

    # ---- the steps, in order

    def build_pre(self):
        self.rec["stage"] = "build"
        self.env = self.tree.prepare(self.case["patch"], self.logf)
        self.rec["built_version"] = os.path.basename(self.tree.base)

    def start_program(self):
        self.rec["stage"] = "start"
        self.spec = program_for(self.recipe, self.case)
        if self.spec.get("name"):
            self.rec["program"] = self.spec["name"]
        self.env = with_ports(self.env, os.path.join(self.cdir, "run"))
        self.program = Program(self.ctx, self.spec, self.env, self.env["RUN"], self.logf)
        self.program.start()
        self.rec["pids"] = self.program.pids
        ok, detail = self.program.smoke()
        if not ok:
            raise NotRun(f"smoke check fails before any update: {detail}")

    def trigger_before(self):
        """On a second instance: a trigger may well kill the program it misbehaves in."""
        if not self.trig:
            return
        self.rec["stage"] = "trigger-before"
        venv = with_ports(self.env, os.path.join(self.cdir, "run-before"))
        victim = Program(self.ctx, self.spec, venv, venv["RUN"], self.logf)
        try:
            victim.start()
            rc, detail = victim.trigger(self.trig)
        finally:
            victim.stop()
        self.rec["trigger_before"] = rc
        if rc == 0:
            raise NotRun(f"the trigger does not misbehave before the update: {detail}")
        append(self.logf, f"trigger before the update: exit {rc} (misbehaves): {detail}\n")

    def create(self):
        rec = self.rec
        rec["stage"] = "create"
        update = os.path.join(self.cdir, "update.lsu")
        patch = os.path.join(self.tree.dir, "debian/patches", self.case["patch"])
        build = bash_command(self.recipe.get("create_build", self.recipe["build"]))
        rc, data, err, secs = livesplice(
            self.ctx, ["create", "--json", "-q", "--source", self.tree.dir, "--patch", patch, "-o", update,
                       "--build-cmd", build], self.logf, cwd=self.tree.dir, env=self.env)
        rec["create_s"] = round(secs, 1)
        dead = self.program.alive()
        if dead:
            raise Failed(f"the program died while create rebuilt its tree: {dead}")
        if rc == 2:
            self.decide("refused", first_error(err))
        if rc == 3:
            # Every object the patch rebuilt holds no code before or after it: the fixed
            # source is not compiled in this configuration (another flavour of the
            # package builds it). Nothing of the fix runs here; not a livesplice result.
            empty = (data or {}).get("objects_without_code") or []
            if empty and len(empty) == (data or {}).get("objects_rebuilt"):
                self.decide("not-applicable", "the fixed code is not compiled in this build (no code before or "
                                              f"after the patch in {', '.join(empty)})")
            raise Failed("create: the patch changes no code in this build" + (f" ({err})" if err else ""))
        if rc != 0 and "Text file busy" in err:
            raise NotRun("create: the build writes over a file the program runs from (Text file busy); name it "
                         f"in the recipe's `copy` (eval/README.md)\n{first_error(err)}")
        if rc != 0 or not data:
            raise Failed(f"create failed (exit {rc}): {first_error(err)}")
        rec["functions"] = [f["name"] for f in data.get("functions", []) if f.get("status") == "changed"]
        rec["new_functions"] = [f["name"] for f in data.get("functions", []) if f.get("status") == "new"]
        rec["targets"] = [t.get("path") for t in data.get("targets", [])]
        return update

    def _undo_all(self, applied):
        for p, _ in reversed(applied):
            livesplice(self.ctx, ["undo", "-q", "--pid", str(p)], self.logf)

    def apply(self, update):
        """Applies to every process while the smoke check runs against them."""
        rec = self.rec
        rec["stage"] = "apply"
        load = Load(self.program)
        load.start()
        time.sleep(0.3)
        pauses, applied = [], []
        try:
            for pid in self.program.pids:
                rc, data, err, _ = livesplice(self.ctx, ["apply", "--json", "-q", "--pid", str(pid), update],
                                              self.logf)
                if rc == 0 and data and data.get("applied"):
                    pauses.append(data.get("pause_us"))
                    applied.append((pid, data.get("id")))
                    continue
                reason = (data or {}).get("error") or first_error(err)
                if rc == 2 and "run-pre match" in reason:
                    # The program was built from the very tree create used: a mismatch
                    # between its code and the pre code is livesplice's, not the patch's.
                    raise Failed(f"apply to {pid}: {reason}")
                self._undo_all(applied)
                if rc == 2:
                    self.decide("refused", f"apply to {pid}: {reason}")
                raise Failed(f"apply to {pid} (exit {rc}): {reason}")
            time.sleep(0.5)
        finally:
            load.halt.set()
            load.join(timeout=60)
        rec["smoke_under_load"] = {"runs": load.runs, "failures": load.failures}
        rec["pause_us"] = round(max(pauses)) if pauses else None
        rec["pauses_us"] = [round(p) for p in pauses if p is not None]
        if load.failures:
            raise Failed(f"smoke check failed {load.failures} of {load.runs} times while applying: "
                         f"{load.first_failure}")
        return applied

    def check_after_apply(self):
        self.rec["stage"] = "after-apply"
        ok, detail = self.program.smoke()
        if not ok:
            raise Failed(f"smoke check fails after apply: {detail}")
        if not self.trig:
            return
        rc, detail = self.program.trigger(self.trig)
        self.rec["trigger_after"] = rc
        append(self.logf, f"trigger after the update: exit {rc}: {detail}\n")
        if rc != 0:
            raise Failed(f"the trigger still misbehaves after apply (exit {rc}): {detail}")
        self.rec["triggered"] = True
        ok, detail = self.program.smoke()
        if not ok:
            raise Failed(f"smoke check fails after the trigger: {detail}")

    def view(self, applied):
        self.rec["stage"] = "view"
        for pid, uid in applied:
            rc, data, err, _ = livesplice(self.ctx, ["view", "--json", "--pid", str(pid)], self.logf)
            if rc != 0 or uid not in json.dumps(data):
                raise Failed(f"view of {pid} (exit {rc}) does not list update {uid}: {first_error(err)}")

    def undo(self, applied):
        self.rec["stage"] = "undo"
        for pid, _ in reversed(applied):
            rc, data, err, _ = livesplice(self.ctx, ["undo", "--json", "-q", "--pid", str(pid)], self.logf)
            if rc != 0:
                raise Failed(f"undo of {pid} (exit {rc}): {first_error(err)}")
        ok, detail = self.program.smoke()
        if not ok:
            raise Failed(f"smoke check fails after undo: {detail}")


def run_case(ctx, case, recipe, tree, source):
    """The case in the recipe's main build, then, when its fix is not compiled there, in
    each other flavour the recipe describes (as Debian builds a package several ways:
    curl with OpenSSL and with GnuTLS), in a build tree of its own, until one compiles
    it. The result then says which flavour it ran in."""
    rec = CaseRun(ctx, case, recipe, tree).run()
    for name in recipe.get("flavours", {}):
        if rec["outcome"] != "not-applicable":
            break
        frecipe = flavoured(recipe, name)
        ftree = Tree(ctx, frecipe, source, flavour=name)
        with ftree.lock():
            ftree.ensure()
        ctx.log(f"{case['id']}: not compiled in the main build; trying flavour {name}")
        frec = CaseRun(ctx, case, frecipe, ftree).run()
        frec["flavour"] = name
        frec["main_flavour"] = rec.get("main_flavour") or rec["reason"]
        json.dump(frec, open(os.path.join(ctx.out, "cases", case["id"], "result.json"), "w"), indent=2)
        rec = frec
    return rec
