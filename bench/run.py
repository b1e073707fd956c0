"""zklint's performance benchmarks: one command, zklint against baselines, same run, same machine.

    python bench/run.py            # full: 200k-line kazoo tree, 5 runs each (several minutes)
    python bench/run.py --quick    # smaller kazoo tree, 3 runs each
    python bench/run.py --only stdlib,parallel --runs 7

Every timing is the wall time of a fresh process (startup included, output to /dev/null),
the median of several runs; zklint and its baseline are run alternately so a change in
machine load hits both. Memory is measured on the same runs (see `measure`). The trees
live under bench/.work/ (gitignored) and are rebuilt when missing or stale.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
WORK = os.path.join(BENCH, ".work")
sys.path.insert(0, BENCH)

import generate  # noqa: E402  (bench/generate.py)

PY = sys.executable
# Cold runs: no cache read or written (the cache has its own rows, 7 and 8).
ZKLINT = [PY, "-m", "zklint", "check", "--exit-zero", "-q", "--no-cache"]
DEVNULL = subprocess.DEVNULL

# A bare loop of the parser the rules sit on, in one process: the floor for a linter in Python.
AST_LOOP = """
import ast, sys
paths = open(sys.argv[1], encoding="utf-8").read().split("\\n")
for path in paths:
    with open(path, "rb") as handle:
        ast.parse(handle.read(), path)
"""
# Fixed CPU work split over N processes: how much faster two processes can be on this
# machine right now (other load, shared cores), the ceiling for zklint's -j speed-up.
BURN = """
import multiprocessing, sys
def burn(n):
    total = 0
    for i in range(n):
        total += i * i
    return total
jobs = int(sys.argv[1])
work = 24_000_000
with multiprocessing.get_context("fork").Pool(jobs) as pool:
    pool.map(burn, [work // 16] * 16, chunksize=1)
"""
CST_LOOP = """
import sys
import libcst
paths = open(sys.argv[1], encoding="utf-8").read().split("\\n")
for path in paths:
    with open(path, "rb") as handle:
        libcst.parse_module(handle.read())
"""


# ---- measuring one process tree -------------------------------------------------------------

@dataclass
class Run:
    wall: float  # seconds
    cpu: float  # user + sys of the process and every descendant it reaped
    max_rss_mb: float  # the largest single process of the tree (kernel's ru_maxrss)
    tree_rss_mb: float  # peak of the sampled sum of RSS over the live tree (shared pages counted twice)
    tree_pss_mb: float  # peak of the sampled sum of PSS (shared pages split): the tree's real footprint
    returncode: int
    faults: int = 0  # minor page faults of the process and every descendant it reaped


def _children(pid: int) -> List[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def _tree(pid: int) -> List[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(_children(current))
    return found


def _rollup(pid: int) -> Tuple[int, int]:
    """(RSS, PSS) in kB of one process, 0s when it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    except OSError:
        pass
    return rss, pss


def measure(argv: Sequence[str], cwd: str = ROOT, sample: bool = True, interval: float = 0.02) -> Run:
    """Run `argv` to completion; wall time, CPU time and memory of its whole process tree.

    ``max_rss_mb`` comes from ``wait4``: Linux reports the maximum over the child and all
    descendants it waited for (``-j`` pool workers included), i.e. the biggest single
    process. The tree sums are sampled from /proc every `interval` seconds while it runs.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=cwd, stdout=DEVNULL, stderr=DEVNULL, stdin=DEVNULL)
    peak_rss = peak_pss = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if sample:
            rss = pss = 0
            for member in _tree(proc.pid):
                r, p = _rollup(member)
                rss += r
                pss += p
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(interval)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, peak_rss / 1024, peak_pss / 1024,
               proc.returncode, usage.ru_minflt)


# ---- trees ----------------------------------------------------------------------------------

def stdlib_tree() -> str:
    """A copy of the running Python's standard library: its .py files, no site-packages."""
    target = os.path.join(WORK, "stdlib")
    stamp = os.path.join(target, ".stamp")
    source = sysconfig.get_paths()["stdlib"]
    if os.path.exists(stamp) and open(stamp).read() == source:
        mark_project_root(target)
        return target
    shutil.rmtree(target, ignore_errors=True)
    for directory, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "__pycache__", "dist-packages"))
        for name in filenames:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(directory, name), source)
                os.makedirs(os.path.join(target, os.path.dirname(rel)), exist_ok=True)
                shutil.copyfile(os.path.join(source, rel), os.path.join(target, rel))
    with open(stamp, "w") as handle:
        handle.write(source)
    mark_project_root(target)
    return target


def mark_project_root(tree: str) -> None:
    """Each tree is a project of its own (zklint's project layer stops at the nearest
    pyproject.toml; without one it would take this repository as the project)."""
    marker = os.path.join(tree, "pyproject.toml")
    if not os.path.exists(marker):
        with open(marker, "w", encoding="utf-8") as handle:
            handle.write("[project]\nname = \"bench-tree\"\n")


def kazoo_tree(name: str, lines: int, seed: int) -> str:
    target = os.path.join(WORK, name)
    stamp = os.path.join(WORK, name + ".stamp")
    key = f"{lines} {seed} {_digest(generate.__file__)}"
    if not (os.path.isdir(target) and os.path.exists(stamp) and open(stamp).read() == key):
        generate.generate(target, lines, seed)
        with open(stamp, "w") as handle:
            handle.write(key)
    mark_project_root(target)
    return target


def _digest(path: str) -> str:
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:16]


def python_files(top: str) -> List[str]:
    found = []
    for directory, dirnames, filenames in os.walk(top):
        dirnames.sort()
        found.extend(os.path.join(directory, n) for n in sorted(filenames) if n.endswith(".py"))
    return found


def count_lines(paths: Sequence[str]) -> int:
    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            total += handle.read().count(b"\n")
    return total


def write_list(name: str, paths: Sequence[str]) -> str:
    target = os.path.join(WORK, name)
    with open(target, "w", encoding="utf-8") as handle:
        handle.write("\n".join(paths))
    return target


def ruff_binary() -> str:
    try:
        from ruff.__main__ import find_ruff_bin

        return os.fsdecode(find_ruff_bin())
    except Exception:
        found = shutil.which("ruff")
        if not found:
            raise SystemExit("ruff is not installed (pip install ruff)")
        return found


# ---- the report -----------------------------------------------------------------------------

@dataclass
class Row:
    name: str
    zklint: str
    baseline: str
    ratio: str
    target: str
    ok: Optional[bool]
    note: str = ""


@dataclass
class Report:
    rows: List[Row] = field(default_factory=list)
    data: Dict[str, object] = field(default_factory=dict)

    def add(self, *args, **kwargs) -> None:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        verdict = "" if row.ok is None else ("PASS" if row.ok else "FAIL")
        print(f"  -> {row.name}: {row.zklint} vs {row.baseline}: {row.ratio} (target {row.target}) {verdict}", flush=True)

    def table(self) -> str:
        header = ("benchmark", "zklint", "baseline", "ratio", "target", "result")
        body = [(r.name, r.zklint, r.baseline, r.ratio, r.target, "" if r.ok is None else ("PASS" if r.ok else "FAIL"))
                for r in self.rows]
        widths = [max(len(str(line[i])) for line in [header] + body) for i in range(len(header))]
        out = [" | ".join(h.ljust(w) for h, w in zip(header, widths)),
               "-|-".join("-" * w for w in widths)]
        out += [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in body]
        notes = [f"  {r.name}: {r.note}" for r in self.rows if r.note]
        return "\n".join(out + (["", "notes:"] + notes if notes else []))


def median(runs: Sequence[Run], attr: str = "wall") -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def alternate(commands: Dict[str, Sequence[str]], runs: int, prepare=None, sample=True) -> Dict[str, List[Run]]:
    """Run each command `runs` times, interleaved (a, b, a, b, ...), after one warm-up each."""
    results: Dict[str, List[Run]] = {name: [] for name in commands}
    for name, argv in commands.items():  # warm the page cache and .pyc files; not counted
        if prepare:
            prepare(name)
        measure(argv, sample=False)
    for _ in range(runs):
        for name, argv in commands.items():
            if prepare:
                prepare(name)
            run = measure(argv, sample=sample)
            results[name].append(run)
    for name, got in results.items():
        walls = ", ".join(f"{r.wall:.2f}" for r in got)
        print(f"    {name:<28} wall [{walls}] s  median {median(got):.2f}s  cpu {median(got, 'cpu'):.2f}s  "
              f"maxrss {max(r.max_rss_mb for r in got):.0f}MB  tree pss {max(r.tree_pss_mb for r in got):.0f}MB  "
              f"page faults {median(got, 'faults'):.0f}",
              flush=True)
    return results


def seconds(value: float) -> str:
    return f"{value:.2f}s"


# ---- the benchmarks -------------------------------------------------------------------------

def bench_stdlib(report: Report, runs: int) -> Dict[str, List[Run]]:
    tree = stdlib_tree()
    files = python_files(tree)
    print(f"[stdlib] {len(files)} files, {count_lines(files)} lines in {tree}", flush=True)
    ruff = [ruff_binary(), "check", "--isolated", "--select", "F", "--no-cache", "--exit-zero",
            "--output-format", "concise", tree]
    results = alternate({"zklint check": ZKLINT + [tree], "ruff --select F": ruff}, runs)
    z, b = median(results["zklint check"]), median(results["ruff --select F"])
    zc, bc = median(results["zklint check"], "cpu"), median(results["ruff --select F"], "cpu")
    report.add("1. stdlib: check vs ruff F", seconds(z), seconds(b), f"{z / b:.2f}x", "<= 0.5x", z / b <= 0.5,
               f"{len(files)} files; ruff --isolated --no-cache, concise output; both use all cores; "
               f"cpu time ratio {zc / bc:.2f}x")
    report.data["stdlib"] = {k: [r.__dict__ for r in v] for k, v in results.items()}
    return results


def bench_kazoo(report: Report, runs: int, tree: str, files: List[str]) -> Dict[str, List[Run]]:
    listing = write_list("kazoo-files.txt", files)
    jobs = os.cpu_count() or 1
    commands = {
        f"zklint check (-j {jobs})": ZKLINT + [tree],
        "zklint check (-j 1)": ZKLINT + ["-j", "1", tree],
        "ast.parse loop": [PY, "-c", AST_LOOP, listing],
        f"cpu burn (-j {jobs})": [PY, "-c", BURN, str(jobs)],
        "cpu burn (-j 1)": [PY, "-c", BURN, "1"],
    }
    results = alternate(commands, runs)
    zj, z1, b, burn_j, burn_1 = (median(results[k]) for k in commands)
    bcpu = median(results["ast.parse loop"], "cpu")
    report.add(f"2. kazoo tree: check (-j {jobs}) vs ast.parse", seconds(zj), seconds(b), f"{zj / b:.2f}x",
               "<= 2.0x", zj / b <= 2.0, "cold (--no-cache), project layer included; baseline: one process")
    report.add("2b. kazoo tree: check (-j 1) vs ast.parse", seconds(z1), seconds(b), f"{z1 / b:.2f}x", "(info)", None,
               f"cpu time ratio {median(results['zklint check (-j 1)'], 'cpu') / bcpu:.2f}x; minor page faults "
               f"{median(results['zklint check (-j 1)'], 'faults'):.0f} against the loop's "
               f"{median(results['ast.parse loop'], 'faults'):.0f}")
    cj, c1 = median(results[f"zklint check (-j {jobs})"], "cpu"), median(results["zklint check (-j 1)"], "cpu")
    report.add(f"6. parallel: -j {jobs} vs -j 1 (kazoo tree)", seconds(zj), seconds(z1), f"{z1 / zj:.2f}x faster",
               ">= 1.6x", z1 / zj >= 1.6,
               f"{jobs} cores, load average {os.getloadavg()[0]:.2f}; this machine's ceiling right now (pure-CPU "
               f"burn, -j {jobs} vs -j 1): {burn_1 / burn_j:.2f}x, so zklint reaches {(z1 / zj) / (burn_1 / burn_j):.0%}"
               f" of it; cpu time -j {jobs} / -j 1 = {cj / c1:.2f}")
    report.data["kazoo"] = {k: [r.__dict__ for r in v] for k, v in results.items()}
    return results


def bench_cache(report: Report, runs: int, tree: str, files: List[str]) -> None:
    """A warm run (nothing changed) and a run after one file changed, against a cold run."""
    cache = os.path.join(WORK, "cache")
    warm = [PY, "-m", "zklint", "check", "--exit-zero", "-q", "--cache-dir", cache]
    edited = sorted(files)[len(files) // 2]
    with open(edited, "rb") as handle:
        original = handle.read()
    counter = [0]

    def prepare(name: str) -> None:
        if name.startswith("one file changed"):
            counter[0] += 1  # a new digest every run: that file (and its dependents) re-checked
            with open(edited, "wb") as handle:
                handle.write(original + f"\n# edited {counter[0]}\n".encode())

    commands = {
        "cold (--no-cache)": ZKLINT + [tree],
        "warm (nothing changed)": warm + [tree],
        "one file changed": warm + [tree],
    }
    try:
        measure(warm + [tree], sample=False)  # prime the cache
        results = alternate(commands, runs, prepare=prepare)
    finally:
        with open(edited, "wb") as handle:
            handle.write(original)
    cold, hot, one = (median(results[k]) for k in commands)
    report.add("7. cache: warm run vs cold", seconds(hot), seconds(cold), f"{hot / cold:.2f}x", "<= 0.2x",
               hot / cold <= 0.2, "nothing changed: summaries and findings read from the cache")
    report.add("8. cache: one file changed vs cold", seconds(one), seconds(cold), f"{one / cold:.2f}x", "<= 0.1x",
               one / cold <= 0.1, f"{os.path.relpath(edited, tree)} edited before each run (a comment appended)")
    report.data["cache"] = {k: [r.__dict__ for r in v] for k, v in results.items()}


def bench_fix(report: Report, runs: int, tree: str, files: List[str]) -> None:
    scratch = os.path.join(WORK, "fix-copy")

    def fresh(name: str) -> None:
        if name.startswith("zklint"):
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.copytree(tree, scratch)

    # Which files have fixes: fix a copy once and compare (the baseline parses only those).
    fresh("zklint")
    first = measure(ZKLINT + ["--fix", scratch], sample=False)
    changed = []
    for path in files:
        rel = os.path.relpath(path, tree)
        with open(path, "rb") as a, open(os.path.join(scratch, rel), "rb") as b:
            if a.read() != b.read():
                changed.append(path)
    if not changed:
        report.add("3. --fix vs libcst.parse_module", "-", "-", "-", "<= 1.5x", False, "no file had a fix to apply")
        return
    listing = write_list("fixed-files.txt", changed)
    print(f"[fix] {len(changed)} of {len(files)} files have fixes ({count_lines(changed)} lines); "
          f"first --fix run {first.wall:.2f}s", flush=True)
    results = alternate({"zklint check --fix": ZKLINT + ["--fix", scratch],
                         "libcst.parse_module loop": [PY, "-c", CST_LOOP, listing]}, runs, prepare=fresh)
    z, b = median(results["zklint check --fix"]), median(results["libcst.parse_module loop"])
    zc, bc = median(results["zklint check --fix"], "cpu"), median(results["libcst.parse_module loop"], "cpu")
    report.add("3. --fix (whole tree) vs libcst on fixed files", seconds(z), seconds(b), f"{z / b:.2f}x", "<= 1.5x",
               z / b <= 1.5, f"{len(changed)}/{len(files)} files fixed; each run on a fresh copy; zklint uses all "
               f"cores, the baseline one: cpu time ratio {zc / bc:.2f}x")
    report.data["fix"] = {k: [r.__dict__ for r in v] for k, v in results.items()}


# In one process, files parsed beforehand (flake8 hands plugins its tree): the CPU time of
# a bare ast.walk over every tree, the least any plugin that looks at every node pays, and
# of zklint's plugin itself. Best of 5 (a floor, not a typical run).
PLUGIN_FLOOR = """
import ast, sys, time
from zklint.flake8_plugin import ZkLintChecker
paths = open(sys.argv[1], encoding="utf-8").read().split("\\n")
files = []
for path in paths:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    files.append((ast.parse(text, path), text.splitlines(True), path))

def best(work):
    times = []
    for _ in range(5):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return min(times)

def walk_all():
    for tree, _, _ in files:
        for _ in ast.walk(tree):
            pass

def zklint_all():
    for tree, lines, path in files:
        list(ZkLintChecker(tree, lines, path).run())

print(best(walk_all), best(zklint_all))
"""


def bench_flake8(report: Report, runs: int, lines: int) -> None:
    tree = kazoo_tree(f"kazoo{lines // 1000}k-flake8", lines, seed=11)
    files = python_files(tree)
    nlines = count_lines(files)
    print(f"[flake8] {len(files)} files, {nlines} lines in {tree}", flush=True)
    runner = os.path.join(BENCH, "flake8_run.py")
    base = ["--isolated", "--exit-zero", tree]
    commands = {
        "flake8 E9,ZK (plugin)": [PY, runner, "--plugins", "zklint", "--select=E9,ZK"] + base,
        "flake8 E9 (no plugin)": [PY, runner, "--plugins", "", "--select=E9"] + base,
    }
    # The bar named by the brief: flake8-bugbear's cost on the same tree, when installed.
    reference = importlib.util.find_spec("bugbear") is not None
    if reference:
        commands["flake8 E9 + bugbear"] = [PY, runner, "--plugins", "flake8-bugbear", "--select=E9,B"] + base
    results = alternate(commands, runs)
    z, b = median(results["flake8 E9,ZK (plugin)"]), median(results["flake8 E9 (no plugin)"])
    zc, bc = median(results["flake8 E9,ZK (plugin)"], "cpu"), median(results["flake8 E9 (no plugin)"], "cpu")
    bugbear = median(results["flake8 E9 + bugbear"]) / b if reference else None
    report.add("4. flake8 + plugin vs flake8", seconds(z), seconds(b), f"{(z / b - 1) * 100:+.1f}%",
               "<= bugbear's" if reference else "(bugbear not installed)",
               (z / b <= bugbear) if reference else None,
               f"{nlines} lines; cpu time {(zc / bc - 1) * 100:+.1f}%; the baseline loads no plugin "
               "but flake8's own (flake8 runs every installed plugin whatever --select says)")
    listing = write_list("flake8-files.txt", files)
    done = subprocess.run([PY, "-c", PLUGIN_FLOOR, listing], cwd=ROOT, capture_output=True, text=True, check=True)
    walk_cpu, plugin_cpu = (float(x) for x in done.stdout.split())
    report.add("4a. floor: one ast.walk per tree vs flake8", seconds(walk_cpu), seconds(bc),
               f"{walk_cpu / bc * 100:+.1f}%", "(info)", None,
               "cpu, in-process, trees parsed beforehand: the least a plugin that visits every node once adds")
    report.add("4b. zklint plugin's own work vs flake8", seconds(plugin_cpu), seconds(bc),
               f"{plugin_cpu / bc * 100:+.1f}%", "(info)", None,
               f"cpu, in-process as 4a: {plugin_cpu / walk_cpu:.1f}x one ast.walk")
    if reference:
        r, rc = median(results["flake8 E9 + bugbear"]), median(results["flake8 E9 + bugbear"], "cpu")
        report.add("4c. reference: flake8 + bugbear vs flake8", seconds(r), seconds(b), f"{(r / b - 1) * 100:+.1f}%",
                   "(info)", None, f"cpu time {(rc / bc - 1) * 100:+.1f}%; same wrapper, bugbear instead of zklint")
    report.data["flake8"] = {k: [r.__dict__ for r in v] for k, v in results.items()}


def bench_flake8_stdlib(report: Report, runs: int, limit: int) -> None:
    """The plugin on code that never names kazoo (a slice of the standard library)."""
    files = sorted(python_files(stdlib_tree()))[:limit]
    runner = os.path.join(BENCH, "flake8_run.py")
    base = ["--isolated", "--exit-zero"] + files
    commands = {
        "flake8 E9,ZK (plugin)": [PY, runner, "--plugins", "zklint", "--select=E9,ZK"] + base,
        "flake8 E9 (no plugin)": [PY, runner, "--plugins", "", "--select=E9"] + base,
    }
    results = alternate(commands, runs)
    z, b = median(results["flake8 E9,ZK (plugin)"]), median(results["flake8 E9 (no plugin)"])
    report.add("4d. flake8 + plugin vs flake8 (stdlib, no kazoo)", seconds(z), seconds(b),
               f"{(z / b - 1) * 100:+.1f}%", "<= +1%", z / b <= 1.01, f"{len(files)} files of the standard library")


def memory_rows(report: Report, name: str, results: Dict[str, List[Run]]) -> None:
    for key, runs in results.items():
        if not key.startswith("zklint"):
            continue
        biggest = max(r.max_rss_mb for r in runs)
        pss = max(r.tree_pss_mb for r in runs)
        rss_sum = max(r.tree_rss_mb for r in runs)
        report.add(f"5. peak memory: {name}, {key[len('zklint '):]}", f"{biggest:.0f} MB", "-", "-", "<= 100 MB",
                   biggest <= 100 and pss <= 100,
                   f"largest process (ru_maxrss) {biggest:.0f} MB; whole tree sampled: PSS {pss:.0f} MB, "
                   f"RSS sum {rss_sum:.0f} MB")


def check_lazy_libcst(report: Report, files: List[str]) -> None:
    """A check-only run must not import libcst (about 0.14 s of startup)."""
    sample = files[:20]
    code = ("import sys; from zklint.cli import main; main(['check', '-q', '--exit-zero', '-j', '1'] + sys.argv[1:]);"
            "print(any(m.startswith('libcst.') for m in sys.modules), file=sys.stderr)")
    done = subprocess.run([PY, "-c", code] + sample, cwd=ROOT, stdout=DEVNULL, stderr=subprocess.PIPE, text=True)
    imported = done.stderr.strip().splitlines()[-1:] == ["True"]
    report.add("startup: libcst loaded by check-only run", "yes" if imported else "no", "-", "-", "no",
               not imported, "20 kazoo files with fixable findings, -j 1: any libcst.* in sys.modules after main()")


def compile_bytecode() -> None:
    """Measure zklint as installed: pip compiles an installed package's modules to bytecode,
    an editable checkout run under PYTHONDONTWRITEBYTECODE would compile them at every start
    (about 80 ms per process). Written to zklint's own __pycache__ folders (gitignored)."""
    import compileall

    compileall.compile_dir(os.path.join(ROOT, "zklint"), quiet=1)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 50k-line kazoo tree and 3 runs each")
    parser.add_argument("--runs", type=int, help="runs per command (default 5, 3 with --quick)")
    parser.add_argument("--lines", type=int, help="lines of the kazoo tree (default 200000, 50000 with --quick)")
    parser.add_argument("--only", help="comma-separated: stdlib,kazoo,cache,fix,flake8 (default: all)")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    lines = args.lines or (50_000 if args.quick else 200_000)
    only = set((args.only or "stdlib,kazoo,cache,fix,flake8").split(","))
    os.makedirs(WORK, exist_ok=True)
    compile_bytecode()
    report = Report()
    load = os.getloadavg()[0]
    print(f"zklint benchmarks: Python {platform.python_version()}, {os.cpu_count()} cores, {runs} runs each, "
          f"load average {load:.2f}", flush=True)
    if load > 0.5:
        print(f"  warning: the machine is busy (load {load:.2f}): other work competes for the cores", flush=True)
    started = time.time()
    tree = files = None
    if only & {"kazoo", "cache", "fix"}:
        tree = kazoo_tree(f"kazoo{lines // 1000}k", lines, seed=7)
        files = python_files(tree)
        print(f"[kazoo] {len(files)} files, {count_lines(files)} lines in {tree}", flush=True)
    if "stdlib" in only:
        memory = bench_stdlib(report, runs)
        memory_rows(report, "stdlib", memory)
    if "kazoo" in only:
        memory = bench_kazoo(report, runs, tree, files)
        memory_rows(report, f"{lines // 1000}k kazoo", memory)
        check_lazy_libcst(report, files)
    if "cache" in only:
        bench_cache(report, runs, tree, files)
    if "fix" in only:
        bench_fix(report, runs, tree, files)
    if "flake8" in only:
        bench_flake8(report, runs, 5_000 if args.quick else 20_000)
        bench_flake8_stdlib(report, runs, 100 if args.quick else 400)
    print()
    print(report.table())
    print(f"\n{time.time() - started:.0f}s; load average now {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": [r.__dict__ for r in report.rows], "runs": report.data}, handle, indent=1)
    return 0 if all(r.ok is not False for r in report.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
