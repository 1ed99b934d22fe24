"""eval/run's own tests: the real harness, with the real livesplice, on a small local
package (eval/tests/greeter: two programs, two fixes in debian/patches; its recipe is
eval/tests/recipes/greeter.toml). Nothing is downloaded; each test has its own cache and
results directory. Each test names the harness defect it keeps fixed.

Needs root (ptrace) and LIVESPLICE (with livesplice-cc beside it); run by
`ctest -L evalharness`.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
EVAL = os.path.dirname(HERE)
LIVESPLICE = os.environ.get("LIVESPLICE") or os.path.join(os.path.dirname(EVAL), "build", "livesplice")
GREET, HELPER = "greet-refuse-semicolon.patch", "helper-value.patch"


def read(path):
    with open(path, encoding="utf-8", errors="strict") as f:
        return f.read()


def case_id(patch):
    return f"greeter--{patch}"


def stat_of(pid):
    """(state, command line) of a live process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return state, f.read()
    except OSError:
        return None


def running(pid, cmdline):
    st = stat_of(pid)
    return st is not None and st[0] not in ("Z", "X") and st[1] == cmdline


def pids_of_exe(path):
    found = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                if os.readlink(f"/proc/{e}/exe") == path:
                    found.append(int(e))
            except OSError:
                pass
    return found


class Harness(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.fail("eval/run's tests need root (ptrace into the programs they start)")
        if not os.access(LIVESPLICE, os.X_OK):
            self.fail(f"no livesplice at {LIVESPLICE} (set LIVESPLICE)")
        self.tmp = tempfile.mkdtemp(prefix="evalharness-")
        self.recipes = os.path.join(self.tmp, "recipes")
        self.out = os.path.join(self.tmp, "out")
        self.write_recipe()

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write_recipe(self, greeting="hello", make_args=""):
        """The test recipe, beside its own copy of the local source tree and of `poke`."""
        if not os.path.isdir(self.recipes):
            shutil.copytree(os.path.join(HERE, "greeter"), os.path.join(self.recipes, "greeter"))
            shutil.copy2(os.path.join(HERE, "recipes", "poke"), self.recipes)
        text = read(os.path.join(HERE, "recipes", "greeter.toml"))
        with open(os.path.join(self.recipes, "greeter.toml"), "w") as f:
            f.write(text.replace("@GREETING@", greeting).replace("@MAKE_ARGS@", make_args))

    def cases(self, *rows):
        """A cases file of (patch, program) rows; returns its path."""
        path = tempfile.mktemp(suffix=".tsv", dir=self.tmp)
        with open(path, "w") as f:
            f.write("package\tversion\tpatch\tcves\tprogram\n")
            for n, (patch, program) in enumerate(rows):
                f.write(f"greeter\t1.0\t{patch}\tCVE-0000-000{n}\t{program}\n")
        return path

    def argv(self, cases, *args, out=None):
        return [sys.executable, os.path.join(EVAL, "run"), "--cases", cases, "--recipes", self.recipes,
                "--livesplice", LIVESPLICE, "--out", out or self.out, *args]

    def env(self):
        return dict(os.environ, XDG_CACHE_HOME=os.path.join(self.tmp, "cache"))

    def eval_run(self, cases, *args, out=None):
        p = subprocess.run(self.argv(cases, *args, out=out), env=self.env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=600)
        return p.returncode, p.stdout.decode(errors="replace")

    def result(self, patch, out=None):
        return json.loads(read(self.case_file(patch, "result.json", out=out)))

    def case_file(self, patch, name, out=None):
        return os.path.join(out or self.out, "cases", case_id(patch), name)

    # ---- the tests

    def test_local_package_applied(self):
        """A recipe with a local source tree, `${RECIPE_DIR}` (its trigger script lives
        beside it), a bash-only `build` (create runs it too), the program run from
        copies, and a trigger printing bytes that are not UTF-8 (they once killed the
        whole run with a UnicodeDecodeError)."""
        rc, out = self.eval_run(self.cases((GREET, "")), "--expect", "applied")
        self.assertEqual(rc, 0, out)
        r = self.result(GREET)
        self.assertEqual(r["outcome"], "applied", r["reason"])
        self.assertTrue(r["triggered"])
        self.assertEqual(r["functions"], ["name_ok"])
        log = read(self.case_file(GREET, "log.txt"))
        self.assertIn("\ufffd\ufffd refused a;b", log)   # the trigger's bytes, replaced
        self.assertTrue(os.path.isfile(self.case_file(GREET, "run/copy/greeter")))

    def test_per_case_program(self):
        """The case names another program of the package ([programs.helpers]), whose
        processes are chosen by executable (`pids_exe`), not the shell that starts them."""
        rc, out = self.eval_run(self.cases((HELPER, "")), "--expect", "applied")
        self.assertEqual(rc, 0, out)
        r = self.result(HELPER)
        self.assertEqual(r["program"], "helpers")
        self.assertEqual(r["functions"], ["helper_value"])
        self.assertEqual(len(r["pids"]), 2, r["pids"])

    def test_setup_stopped_when_program_fails_to_start(self):
        """The program the cases file's `program` column names cannot start: the origin
        server its setup started is stopped too."""
        rc, out = self.eval_run(self.cases((GREET, "broken")))
        self.assertEqual(rc, 0, out)
        r = self.result(GREET)
        self.assertEqual(r["outcome"], "not-run")
        self.assertIn("exited (1) at start", r["reason"])
        origin = int(read(self.case_file(GREET, "run/origin.pid")))
        self.assertFalse(running(origin, b"sleep\x00600\x00"), "the setup's origin server is still running")

    def test_interrupt_stops_program_and_setup(self):
        """SIGTERM while the program is starting: eval/run stops it and its setup's origin
        server, saves no result for the case, and exits."""
        p = subprocess.Popen(self.argv(self.cases((GREET, "stuck"))), env=self.env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        try:
            copy = os.path.realpath(self.case_file(GREET, "run/copy/greeter"))
            origin_file = self.case_file(GREET, "run/origin.pid")

            def started():
                return (pids_of_exe(copy) and os.path.exists(origin_file)
                        and running(int(read(origin_file) or 0), b"sleep\x00600\x00"))

            deadline = time.monotonic() + 120
            while not started():
                self.assertIsNone(p.poll(), "eval/run ended before the program started")
                self.assertLess(time.monotonic(), deadline, "the program did not start")
                time.sleep(0.1)
            program = pids_of_exe(copy)
            origin = int(read(origin_file))
            p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=120)
        finally:
            if p.poll() is None:   # the test failed before its SIGTERM: let eval/run clean up
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.assertEqual(p.returncode, 130, out.decode(errors="replace"))
        self.assertFalse(running(origin, b"sleep\x00600\x00"), "the setup's origin server is still running")
        self.assertEqual([q for q in program if stat_of(q) and stat_of(q)[0] not in ("Z", "X")], [])
        if os.path.exists(self.case_file(GREET, "result.json")):
            self.assertIsNone(self.result(GREET)["outcome"])

    def test_reconfigure_after_recipe_change(self):
        """The recipe's configure line changes between runs: --redo configures anew (the
        tree's state once kept the old configuration for ever)."""
        cases = self.cases((GREET, ""))
        rc, out = self.eval_run(cases, "--expect", "applied")
        self.assertEqual(rc, 0, out)
        self.write_recipe(greeting="howdy")
        rc, out = self.eval_run(cases, "--redo", "--expect", "applied")
        self.assertEqual(rc, 0, out)
        self.assertIn("configuration changed", out)

    def test_two_runs_share_results(self):
        """Two eval/run at once on one results directory: both finish, and the report
        has both cases (each run once rewrote it with only its own)."""
        cases = self.cases((GREET, ""), (HELPER, ""))
        runs = [subprocess.Popen(self.argv(cases, "--only", patch), env=self.env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT) for patch in (GREET, HELPER)]
        outs = [p.communicate(timeout=600)[0].decode(errors="replace") for p in runs]
        for p, out in zip(runs, outs):
            self.assertEqual(p.returncode, 0, out)
        report = json.loads(read(os.path.join(self.out, "report.json")))
        self.assertEqual({r["id"]: r["outcome"] for r in report["cases"]},
                         {case_id(GREET): "applied", case_id(HELPER): "applied"})
        md = read(os.path.join(self.out, "report.md"))
        self.assertIn("CVE-0000-0000", md)
        self.assertIn("CVE-0000-0001", md)

    def test_unknown_recipe_key(self):
        """A misspelt key is an error naming it, not a setting silently ignored."""
        with open(os.path.join(self.recipes, "greeter.toml"), "a") as f:
            f.write('\n[programs.typo]\nstrat = "true"\n')
        rc, out = self.eval_run(self.cases((GREET, "")))
        self.assertNotEqual(rc, 0, out)
        self.assertIn("[programs.typo]: unknown key strat", out)

    def test_text_file_busy(self):
        """A build that copies over its binaries in place, with the program running from
        the tree: create's builds write to an overlay (a copy of the file, never the
        running inode), so they never meet "Text file busy"; run from copies (`copy`),
        the same."""
        self.write_recipe(make_args="CP=cp")
        rc, out = self.eval_run(self.cases((GREET, "intree")))
        r = self.result(GREET)
        self.assertEqual(r["outcome"], "applied", r["reason"])
        self.assertNotIn("Text file busy", read(self.case_file(GREET, "log.txt")))
        other = os.path.join(self.tmp, "out-copy")
        rc, out = self.eval_run(self.cases((GREET, "")), out=other)
        self.assertEqual(rc, 0, out)
        self.assertNotIn("Text file busy", read(self.case_file(GREET, "log.txt", out=other)))

if __name__ == "__main__":
    unittest.main()
