"""The run's context, the two ways a case fails, and running commands.

What is hard: every command runs other people's code, and none of it may outlive the
case that started it. Each child gets a session (so a process group) of its own, which
the context knows while it runs; an interruption (Ctrl-C, SIGTERM) reaches only the
main thread, which sends SIGTERM to every group still known (so that `livesplice
create` puts its tree back and builds stop) and sets `stopping`, which every worker
thread checks after each command. Output is read as bytes and decoded with
errors="replace": a program's or a trigger's output is whatever bytes it printed.
"""

import datetime
import os
import signal
import socket
import subprocess
import threading


class NotRun(Exception):
    """The harness or a recipe could not get as far as livesplice (not livesplice's fault)."""


class Failed(Exception):
    """livesplice or the program under update misbehaved: an `error` outcome."""


class Interrupted(BaseException):
    """The run was interrupted: the case is left without a result, to be run again."""


def decode(data):
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else (data or "")


class Context:
    """What every step needs: where things are, which livesplice, and the interruption."""

    def __init__(self, eval_dir, cache, livesplice, out, redo=False):
        self.eval_dir = eval_dir        # the eval/ directory ($EVAL)
        self.cache = cache              # downloads and build trees
        self.livesplice = livesplice
        self.out = out                  # results directory
        self.redo = redo
        self.stopping = threading.Event()
        self._groups = set()
        self._lock = threading.Lock()
        self._apt_lock = threading.Lock()

    def log(self, msg):
        print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)

    def apt_lock(self):
        """apt and dpkg serve one caller at a time."""
        return self._apt_lock

    def adopt(self, pgid):
        with self._lock:
            self._groups.add(pgid)

    def release(self, pgid):
        with self._lock:
            self._groups.discard(pgid)

    def check(self):
        if self.stopping.is_set():
            raise Interrupted()

    def interrupt(self):
        """From the main thread: every worker's children get SIGTERM, and the workers stop
        at their next command; each then stops its program in its own `finally`."""
        self.stopping.set()
        with self._lock:
            groups = list(self._groups)
        for g in groups:
            try:
                os.killpg(g, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass


def stop_group(proc, first_wait=30):
    """SIGTERM to the child's whole process group, SIGKILL when it is still there later."""
    for sig, wait in ((signal.SIGTERM, first_wait), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            pass


def run_child(ctx, argv, cwd=None, env=None, stdout=None, stderr=None, timeout=None, input=None, cleanup=False):
    """subprocess.run in a session of its own, output decoded whatever its bytes. When
    interrupted or out of time the child's group gets SIGTERM first, so that `livesplice
    create` can put its tree back and builds stop; SIGKILL only 30 s later. After an
    interruption it raises Interrupted (its output is not a result), except for the
    commands that clean up (`cleanup`)."""
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr,
                         stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                         start_new_session=True)
    ctx.adopt(p.pid)
    try:
        out, err = p.communicate(input=input.encode() if input is not None else None, timeout=timeout)
    except BaseException:
        stop_group(p)
        raise
    finally:
        ctx.release(p.pid)
    if not cleanup:
        ctx.check()
    return subprocess.CompletedProcess(argv, p.returncode, decode(out), decode(err))


def sh(ctx, cmd, cwd=None, env=None, log_file=None, timeout=None, check=True, input=None, cleanup=False):
    """Runs a bash command; output goes to log_file (appended) or is returned."""
    if log_file:
        with open(log_file, "a") as f:
            f.write(f"\n$ {cmd}\n")
            f.flush()
            p = run_child(ctx, ["bash", "-c", cmd], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT,
                          timeout=timeout, input=input, cleanup=cleanup)
        out = ""
    else:
        p = run_child(ctx, ["bash", "-c", cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, timeout=timeout, input=input, cleanup=cleanup)
        out = p.stdout + p.stderr
    if check and p.returncode != 0:
        tail = tail_of(log_file) if log_file else out[-2000:]
        raise NotRun(f"`{cmd[:200]}` failed (exit {p.returncode}) in {cwd}:\n{tail}")
    return p.returncode, out


def append(log_file, text):
    with open(log_file, "a") as f:
        f.write(text)


def tail_of(path, n=25):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
