"""The program under update, the processes its recipe's `setup` leaves running (an origin
server), and stopping all of them.

What is hard: nothing may outlive its case, whether the program dies, never becomes
ready, or the run is interrupted; and nothing else may be killed. Each setup command and
the program run in a session (so a process group) of their own, and every group is sent
SIGTERM, then SIGKILL, by `stop`, which the case calls on every path. A group is only
signalled while the harness has not reaped its leader (running, or a zombie: exits are
observed with WNOWAIT), so its number cannot have been reused by a stranger: PIDs wrap
quickly on a busy machine. The processes updated are checked by PID and kernel start
time, and stopped too. Any other process that leaves its group (setsid, a daemon's
double fork) is not stopped: recipes run their servers in the foreground.
"""

import glob
import os
import shutil
import signal
import string
import subprocess
import threading
import time

from .context import Interrupted, NotRun, append, sh, tail_of


def _stat(pid):
    """(state, ppid, pgrp, start time) from /proc/PID/stat, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[2]), fields[19]
    except (OSError, IndexError, ValueError):
        return None


def _all_pids():
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def start_time(pid):
    st = _stat(pid)
    return st[3] if st else None


def descendants(pid):
    parent = {p: st[1] for p in _all_pids() if (st := _stat(p))}
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def pids_of_exe(paths):
    """Every process whose executable is one of `paths` (absolute)."""
    want = {os.path.realpath(p) for p in paths}
    found = []
    for p in _all_pids():
        try:
            if os.readlink(f"/proc/{p}/exe") in want:
                found.append(p)
        except OSError:
            pass
    return sorted(found)


def exit_status(proc):
    """The child's exit status (a negative signal number when killed), or None while it
    runs. The child is not reaped, so its PID, and the group it leads, stay its own."""
    info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


class Program:
    """The program a case runs (recipes.program_for), its setup processes and its PIDs."""

    def __init__(self, ctx, spec, env, rundir, logf):
        self.ctx, self.spec, self.env, self.run, self.logf = ctx, spec, env, rundir, logf
        self.proc = None
        self.groups = []        # Popen of every session leader: setup commands, the program
        self.stdin_fd = None
        self.pids = []
        self.started = {}

    # ---- starting

    def start(self):
        os.makedirs(self.run, exist_ok=True)
        fifo = os.path.join(self.run, "stdin")
        if not os.path.exists(fifo):
            os.mkfifo(fifo)
        # Held open read-write by us so the program never sees end of input.
        self.stdin_fd = os.open(fifo, os.O_RDWR)
        self._copy()
        for name, text in self.spec.get("files", {}).items():
            path = os.path.join(self.run, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(string.Template(text).safe_substitute(self.env))
        for cmd in self.spec.get("setup", []):
            self._setup(cmd)
        self._launch()
        self._wait_ready()
        self.pids = self._find_pids()
        self.started = {p: start_time(p) for p in self.pids}

    def _copy(self):
        """`copy`: files and directories of the build tree the program runs from copies of
        (in $RUN/copy, same relative paths, symlinks as symlinks), so that a build that
        writes over a binary in place never meets it running ("Text file busy")."""
        src = self.env["SRC"]
        if not self.spec.get("copy"):
            self.env["COPY"] = src
            return
        dest_root = os.path.join(self.run, "copy")
        for pattern in self.spec["copy"]:
            matches = glob.glob(os.path.join(src, pattern))
            if not matches:
                raise NotRun(f"copy: nothing in the build tree matches {pattern}")
            for m in matches:
                dest = os.path.join(dest_root, os.path.relpath(m, src))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                if os.path.isdir(m) and not os.path.islink(m):
                    shutil.copytree(m, dest, symlinks=True, dirs_exist_ok=True)
                else:
                    shutil.copy2(m, dest, follow_symlinks=False)
        self.env["COPY"] = dest_root

    def _session(self, argv, stdin, stdout):
        p = subprocess.Popen(argv, cwd=self.run, env=self.env, stdin=stdin, stdout=stdout,
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.groups.append(p)
        self.ctx.adopt(p.pid)
        return p

    def _setup(self, cmd):
        """Runs a setup command to its end; what it leaves running stays in its group."""
        append(self.logf, f"\n$ {cmd}\n")
        with open(self.logf, "a") as f:
            p = self._session(["bash", "-c", cmd], subprocess.DEVNULL, f)
        deadline = time.monotonic() + 300
        while (rc := exit_status(p)) is None:
            self.ctx.check()
            if time.monotonic() > deadline:
                raise NotRun(f"setup `{cmd[:200]}` did not finish within 300 s")
            time.sleep(0.05)
        self.ctx.check()
        if rc != 0:
            raise NotRun(f"setup `{cmd[:200]}` failed (exit {rc}):\n{tail_of(self.logf)}")

    def _launch(self):
        with open(os.path.join(self.run, "program.log"), "ab") as out:
            self.proc = self._session(["bash", "-c", "exec " + self.spec["start"]], self.stdin_fd, out)
        self.env["PID"] = str(self.proc.pid)

    def _wait_ready(self):
        deadline = time.monotonic() + self.spec.get("start_timeout", 30)
        ready = self.spec.get("ready", self.spec["smoke"])
        while True:
            self.ctx.check()
            rc = exit_status(self.proc)
            if rc is not None:
                raise NotRun(f"the program exited ({rc}) at start:\n"
                             + tail_of(os.path.join(self.run, "program.log")))
            rc, out = sh(self.ctx, ready, cwd=self.run, env=self.env, check=False, timeout=30)
            if rc == 0:
                return
            if time.monotonic() > deadline:
                raise NotRun(f"the program did not become ready: {out.strip()[-500:]}\n"
                             + tail_of(os.path.join(self.run, "program.log")))
            time.sleep(0.2)

    def _find_pids(self):
        """The processes to update: `pids` prints them; `pids_exe` names their
        executables; by default the started process and all its descendants."""
        if "pids" in self.spec:
            _, out = sh(self.ctx, self.spec["pids"], cwd=self.run, env=self.env)
            return [int(x) for x in out.split()]
        if "pids_exe" in self.spec:
            names = self.spec["pids_exe"]
            paths = [string.Template(p).safe_substitute(self.env) for p in
                     ([names] if isinstance(names, str) else names)]
            relative = [p for p in paths if not os.path.isabs(p)]
            if relative:
                raise NotRun(f"pids_exe: not an absolute path: {', '.join(relative)}")
            pids = pids_of_exe(paths)
            if not pids:
                raise NotRun(f"pids_exe: no process runs {', '.join(paths)}")
            return pids
        return [self.proc.pid] + descendants(self.proc.pid)

    # ---- while it runs

    def alive(self):
        """None when every process is the one started, else what is wrong."""
        for p, t in self.started.items():
            st = _stat(p)
            if st is None or st[3] != t:
                return f"process {p} is gone"
            if st[0] in ("Z", "X"):
                return f"process {p} died"
        return None

    def smoke(self, what="smoke"):
        """(ok, detail)."""
        dead = self.alive()
        if dead:
            return False, dead
        try:
            rc, out = sh(self.ctx, self.spec["smoke"], cwd=self.run, env=self.env, check=False, timeout=30)
        except subprocess.TimeoutExpired:
            return False, f"{what}: timed out"
        dead = self.alive()
        if dead:
            return False, dead
        return rc == 0, out.strip()[-500:]

    def trigger(self, cmd):
        """0: handled (fixed behaviour), 1: misbehaves (vulnerable), other: broken."""
        try:
            rc, out = sh(self.ctx, cmd, cwd=self.run, env=self.env, check=False, timeout=60)
        except subprocess.TimeoutExpired:
            return 124, "timed out"
        return rc, out.strip()[-500:]

    # ---- stopping

    def _left(self):
        """Whether anything of ours still runs: an updated process, or a member of a group."""
        for p, t in self.started.items():
            st = _stat(p)
            if st and st[3] == t and st[0] not in ("Z", "X"):
                return True
        groups = {g.pid for g in self.groups}
        return any(st and st[2] in groups and st[0] not in ("Z", "X")
                   for st in map(_stat, _all_pids()))

    def _signal(self, sig):
        for p, t in self.started.items():
            if start_time(p) == t:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
        for g in self.groups:   # their leaders are not reaped yet: the groups are ours
            try:
                os.killpg(g.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self):
        """Stops the program (its `stop` command first), every process updated and every
        process left in a group the program or a setup command started. Never raises."""
        if self.spec.get("stop") and self.proc and exit_status(self.proc) is None:
            sh(self.ctx, self.spec["stop"], cwd=self.run, env=self.env, check=False, timeout=30, cleanup=True)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            self._signal(sig)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._left():
                time.sleep(0.05)
            if not self._left():
                break
        for g in self.groups:
            try:
                g.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.ctx.release(g.pid)
        self.groups = []
        if self.stdin_fd is not None:
            os.close(self.stdin_fd)
            self.stdin_fd = None


class Load(threading.Thread):
    """The smoke check, over and over, until stopped; counts runs and failures."""

    def __init__(self, program):
        super().__init__(daemon=True)
        self.program, self.runs, self.failures, self.first_failure = program, 0, 0, None
        self.halt = threading.Event()

    def run(self):
        try:
            while not self.halt.is_set():
                ok, detail = self.program.smoke("smoke under load")
                self.runs += 1
                if not ok:
                    self.failures += 1
                    self.first_failure = self.first_failure or detail
                time.sleep(0.02)
        except Interrupted:
            pass
