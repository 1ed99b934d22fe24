"""Cases files and recipes (the format is eval/README.md's).

What is hard: a recipe is written by someone who did not write the harness, so a key
the harness does not know is an error at load time (a typo would otherwise silently
change nothing), and what a case runs is decided in one place (`program_for`): the
recipe's program, the named program the case picks, then the case's own keys.
"""

import hashlib
import json
import os
import re
import string
import sys
import tomllib

from .context import NotRun

# The keys that describe the program under update and how to talk to it. A case may
# pick a named [programs.NAME] and override any of them in its [cases."PATCH"] table.
PROGRAM_KEYS = {"setup", "start", "ready", "start_timeout", "pids", "pids_exe", "smoke", "stop", "files", "copy"}
# The keys that decide what configure produced: when any changes, the tree is made anew.
CONFIGURE_KEYS = ("source", "hardening", "autoreconf", "configure", "env")
TOP_KEYS = {"package", "apt", "source", "hardening", "autoreconf", "configure", "build", "create_build",
            "env", "flavours", "programs", "cases"} | PROGRAM_KEYS
CASE_KEYS = {"trigger", "hook", "program"} | PROGRAM_KEYS


def read_cases(path):
    cases = []
    with open(path) as f:
        header = None
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            cols = line.split("\t")
            if header is None:
                header = cols
                continue
            row = dict(zip(header, cols))
            for need in ("package", "version", "patch"):
                if not row.get(need):
                    sys.exit(f"{path}: row without {need}: {line}")
            row["id"] = f"{row['package']}--{re.sub(r'[^A-Za-z0-9._-]', '_', row['patch'])}"
            cases.append(row)
    return cases


def _check_keys(path, where, table, allowed):
    unknown = sorted(set(table) - allowed)
    if unknown:
        sys.exit(f"{path}: {where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                 f"(eval/README.md lists the recipe keys)")


def _load(path):
    with open(path, "rb") as f:
        try:
            r = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            sys.exit(f"{path}: {e}")
    _check_keys(path, "top level", r, TOP_KEYS)
    for need in ("package", "build"):
        if need not in r:
            sys.exit(f"{path}: recipe without `{need}`")
    if not r.get("programs"):
        for need in ("start", "smoke"):
            if need not in r:
                sys.exit(f"{path}: recipe without `{need}` (nor [programs.NAME] tables)")
    for name, over in r.get("flavours", {}).items():
        if not isinstance(over, dict) or "flavours" in over or "package" in over:
            sys.exit(f"{path}: [flavours.{name}] must be a table of keys to override (not package or flavours)")
        _check_keys(path, f"[flavours.{name}]", over, TOP_KEYS - {"package", "flavours"})
    for name, prog in r.get("programs", {}).items():
        _check_keys(path, f"[programs.{name}]", prog, PROGRAM_KEYS)
    for patch, per in r.get("cases", {}).items():
        _check_keys(path, f'[cases."{patch}"]', per, CASE_KEYS)
        if per.get("program") and per["program"] not in r.get("programs", {}):
            sys.exit(f'{path}: [cases."{patch}"] names program {per["program"]}, which has no [programs.] table')
    r["_path"] = path
    r["_dir"] = os.path.dirname(os.path.abspath(path))
    return r


def read_recipes(dirs):
    """Every recipe of the directories, a later directory's replacing an earlier one's."""
    recipes = {}
    for d in dirs:
        for name in sorted(os.listdir(d)):
            if name.endswith(".toml"):
                r = _load(os.path.join(d, name))
                recipes[r["package"]] = r
    return recipes


def recipe_vars(recipe, eval_dir):
    """The variables every recipe string may use, whatever the step."""
    return {"EVAL": eval_dir, "RECIPE_DIR": recipe["_dir"]}


def local_source(recipe, eval_dir):
    """The local source tree the recipe names (`source`), absolute; None for a Debian
    source package."""
    if not recipe.get("source"):
        return None
    path = string.Template(recipe["source"]).safe_substitute(recipe_vars(recipe, eval_dir))
    return os.path.normpath(os.path.join(recipe["_dir"], path))


def flavoured(recipe, name):
    """The recipe as its flavour `name` overrides it."""
    over = recipe["flavours"][name]
    r = {k: v for k, v in recipe.items() if k != "flavours"}
    r.update(over)
    r["apt"] = recipe.get("apt", []) + over.get("apt", [])   # what the flavour needs besides
    r["flavour"] = name
    return r


def program_for(recipe, case):
    """What the case runs: the recipe's program keys, then those of the [programs.NAME]
    the case names (in its [cases."PATCH"] table, or the cases file's `program` column),
    then the case table's own."""
    per = recipe.get("cases", {}).get(case["patch"], {})
    spec = {k: recipe[k] for k in PROGRAM_KEYS if k in recipe}
    name = per.get("program") or case.get("program")
    if name:
        if name not in recipe.get("programs", {}):
            raise NotRun(f"the case names program {name}; {recipe['_path']} has no [programs.{name}]")
        spec.update(recipe["programs"][name])
        spec["name"] = name
    spec.update({k: per[k] for k in PROGRAM_KEYS if k in per})
    for need in ("start", "smoke"):
        if need not in spec:
            raise NotRun(f"{recipe['_path']}: no `{need}` for this case's program")
    return spec


def configure_key(recipe, eval_dir):
    """A digest of what configure produced the tree from: the recipe's configure keys
    and, for a local source, the tree's files. A tree built otherwise is made anew."""
    keys = {k: recipe.get(k) for k in CONFIGURE_KEYS}
    h = hashlib.sha256(json.dumps(keys, sort_keys=True).encode())
    src = local_source(recipe, eval_dir)
    if src:
        for top, dirs, files in os.walk(src):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(top, name)
                h.update(os.path.relpath(path, src).encode() + b"\0")
                if not os.path.islink(path):
                    with open(path, "rb") as f:
                        h.update(f.read())
    return h.hexdigest()[:16]
