"""Saved results (OUT/cases/ID/result.json) and the report (OUT/report.md, report.json).

What is hard: several eval/run may share one results directory at once. A case is run
by one of them at a time (a lock per case: the other waits, then takes the saved result
unless --redo), and the report is rewritten under a lock from the newest result of
every case, whichever run saved it, so no run's report drops another's results.
"""

import contextlib
import datetime
import fcntl
import json
import os
import re

KSPLICE_SHARE = 56 / 64  # Ksplice: 56 of 64 kernel CVE fixes with no new code
OUTCOMES = ["applied", "refused", "needs-hook", "error", "not-applicable", "not-run"]


@contextlib.contextmanager
def _flock(path, ctx=None, waiting=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if ctx and waiting:
                ctx.log(waiting)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def case_lock(ctx, case):
    return _flock(os.path.join(ctx.out, "locks", case["id"]), ctx,
                  f"{case['id']}: another eval/run is running this case in {ctx.out}; waiting for it")


def saved(out, case):
    try:
        r = json.load(open(os.path.join(out, "cases", case["id"], "result.json")))
        return r if r.get("outcome") and r.get("finished") else None
    except (OSError, ValueError):
        return None


def placeholder(case, reason, finished=None):
    """A result for a case that did not get as far as a case directory (`finished`: when
    this run found so; None when it only shows that nothing is saved)."""
    r = {**{k: case.get(k, "") for k in ("package", "version", "patch", "cves", "class")},
         "id": case["id"], "outcome": "not-run", "reason": reason, "functions": [], "create_s": None,
         "pause_us": None}
    if finished:
        r["finished"] = finished
    return r


def newest(results, all_cases, out):
    """Every case's newest result: this run's, or one another run saved since."""
    merged = []
    for c in all_cases:
        mine, disk = results.get(c["id"]), saved(out, c)
        if disk and (not mine or disk["finished"] > mine.get("finished", "")):
            mine = disk
        if mine:
            merged.append(mine)
    return merged


def annotate(results, recipes):
    """A refusal the recipe says a short hook would fix is `needs-hook` (with what the hook
    would do), decided when the report is written, so annotating needs no re-run."""
    for r in results:
        if r["outcome"] in ("refused", "needs-hook") and not r.get("reason", "").startswith("applied, then:"):
            hook = recipes.get(r["package"], {}).get("cases", {}).get(r.get("patch"), {}).get("hook")
            r["outcome"] = "needs-hook" if hook else "refused"
            if hook:
                r["hook"] = hook
            else:
                r.pop("hook", None)
    return results


def summary(results):
    counts = {o: sum(1 for r in results if r["outcome"] == o) for o in OUTCOMES}
    evaluated = sum(counts[o] for o in ("applied", "refused", "needs-hook", "error"))
    share = counts["applied"] / evaluated if evaluated else 0.0
    return {"cases": len(results), "evaluated": evaluated, **counts, "share_applied": round(share, 3),
            "ksplice_share": round(KSPLICE_SHARE, 3),
            "class_a": {"cases": sum(1 for r in results
                                     if r.get("class") == "a" and r["outcome"] not in ("not-run", "not-applicable")),
                        "applied": sum(1 for r in results if r.get("class") == "a" and r["outcome"] == "applied")}}


def _md_escape(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def _reason_cell(r, redact):
    reason = redact(r.get("reason") or "")
    if r["outcome"] == "applied" and r.get("triggered"):
        reason = "trigger misbehaves before, handled after"
    if r.get("hook"):
        reason = f"{reason}; hook: {r['hook']}"
    # A message whose first line only announces the details ("...safely:") is shown by
    # its details.
    rl = [l.strip() for l in reason.splitlines() if l.strip()]
    if len(rl) > 1 and rl[0].endswith(":"):
        rl = rl[1:]
    return "; ".join(rl[:3])


def _error_causes(results, redact):
    """Errors grouped by their message with numbers, addresses and names taken out, so
    that one defect hitting many cases reads as one line."""
    causes = {}
    for r in results:
        if r["outcome"] == "error":
            rl = [l.strip() for l in redact(r.get("reason") or "").splitlines() if l.strip()]
            first = rl[0] if rl else ""
            if first.endswith(":") and len(rl) > 1:
                first += " " + rl[1]
            key = re.sub(r"0x[0-9a-f]+", "ADDR", first)
            key = re.sub(r"\b\d+\b", "N", key)
            key = re.sub(r"'[^']*'", "'...'", key)
            key = re.sub(r"[\w.-]+\.o:[\w.]+", "OBJ:FUNC", key)
            causes.setdefault(key[:200], []).append(f"{r['package']} {r.get('cves', '')}")
    return causes


def _write(path, text):
    """Readers never see half a report."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_report(ctx, results, all_cases, recipes, cases_file):
    """Rewrites the report from the newest result of every case; returns (summary, rows)."""
    with _flock(os.path.join(ctx.out, "locks", "report")):
        rows = annotate(newest(results, all_cases, ctx.out), recipes)
        s = summary(rows)

        def redact(text):  # reports are published: no machine's own paths in them
            return text.replace(ctx.cache, "<eval cache>").replace(os.path.expanduser("~"), "~")

        gen = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        _write(os.path.join(ctx.out, "report.json"),
               json.dumps({"generated": gen, "cases_file": os.path.basename(cases_file), "summary": s,
                           "cases": rows}, indent=2))
        lines = [
            f"Applied with no new code: **{s['applied']} of {s['evaluated']} "
            f"({100 * s['share_applied']:.0f}%)** — Ksplice: 56 of 64 (88%).",
            "",
            f"applied {s['applied']} · refused {s['refused']} · needs-hook {s['needs-hook']} · "
            f"error {s['error']} · not applicable {s['not-applicable']} · not run {s['not-run']} "
            f"(of {s['cases']} cases; class a: "
            f"{s['class_a']['applied']} of {s['class_a']['cases']} applied). Generated {gen}; livesplice "
            + ", ".join(sorted({r.get("livesplice", "?") for r in rows if r.get("livesplice")})) + ".",
            "",
            "| package | CVE | class | functions changed (new) | outcome | reason | create s | pause µs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            # The same function from two objects (a library's PIC and static builds) once.
            fn = ", ".join(dict.fromkeys(r.get("functions") or [])) or "—"
            if r.get("new_functions"):
                fn += f" ({', '.join(dict.fromkeys(r['new_functions']))})"
            lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
                r["package"] + (f" ({r['flavour']})" if r.get("flavour") else ""), r.get("cves", ""),
                r.get("class", ""), _md_escape(fn), r["outcome"], _md_escape(_reason_cell(r, redact)[:300]),
                r["create_s"] if r.get("create_s") is not None else "—",
                r["pause_us"] if r.get("pause_us") is not None else "—"))
        causes = _error_causes(rows, redact)
        if causes:
            lines += ["", "Errors by cause:", ""]
            for key, who in sorted(causes.items(), key=lambda kv: -len(kv[1])):
                lines.append(f"- {len(who)} × `{key}` ({', '.join(who)})")
        _write(os.path.join(ctx.out, "report.md"), "\n".join(lines) + "\n")
        return s, rows
