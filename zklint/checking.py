"""Checking many files: their projects, the worker processes, the cache.

The CLI hands over the files to check; this module finds each file's project, reads the
project's modules, and runs the engine in two rounds:

1. Every file that names kazoo and has no cached summary is parsed once, in a worker:
   the worker summarises it for the project layer and, for a file being checked, lints
   it with the facts it has alone (and says which facts those were).
2. The summaries are settled into project facts. A checked file whose facts turned out
   the same as its own keeps its first-round findings; any other is linted again with
   the project's facts (or its findings are taken from the cache, which keys them by the
   file's digest, its facts' fingerprint and the settings).

With --fix or --diff the first round only summarises, and every checked file is linted
(and fixed) with the project's facts in the second.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Sequence, Tuple

from zklint.facts import ModuleFacts
from zklint.files import Excluder, discover
from zklint.project import Project, mentions_kazoo, read_bytes, read_stamped
from zklint.project.cache import Cache, Stamp, cache_dir_for
from zklint.project.layout import Layout

if TYPE_CHECKING:
    from zklint.engine import FileReport

# The engine (the model, the summaries, the rules' machinery) is imported where a file is
# checked: the flake8 plugin asks `project_names_kazoo` of every file of a project without
# kazoo and needs none of it.


@dataclass
class Job:
    """One file to check, with everything a worker process needs (picklable)."""

    path: str
    codes: Tuple[str, ...]
    options: Dict[str, object]
    fix: bool
    unsafe_fixes: bool
    diff: bool
    edits: bool = False  # compute each remaining fix's edits (json and sarif output)
    facts: Optional[ModuleFacts] = None  # the project's facts for this module
    summarize_as: Optional[ModuleFacts] = None  # round 1: summarise (and lint alone)
    report: bool = True  # False: a project file read only for its summary

    def settings_key(self) -> str:
        return json.dumps([sorted(self.codes), sorted(self.options.items(), key=lambda kv: kv[0])], default=str)


def run_job(job: Job) -> FileReport:
    """Read, check and (for --fix) atomically rewrite one file. Never raises."""
    from zklint.engine import FileReport, internal_error
    from zklint.model import forget_latest_model

    try:
        return _run_job(job)
    except Exception as exc:  # a bug in a rule must not stop the other files
        report = FileReport(job.path)
        report.errors.append(internal_error(exc))
        return report
    finally:
        forget_latest_model()  # this file's tree and model are freed before the next parse


def _run_job(job: Job) -> FileReport:
    from zklint.engine import FileReport, check_bytes
    from zklint.fixer import write_fixed
    from zklint.rules import all_rules

    registry = all_rules()
    rules = [registry[code] for code in job.codes] if job.report else []
    try:
        with open(job.path, "rb", buffering=0) as handle:  # (no buffer: the file is read whole)
            raw = handle.readall()
    except IsADirectoryError:
        return FileReport(job.path, errors=["is a directory"])
    except OSError as exc:
        return FileReport(job.path, errors=[f"cannot read: {exc.strerror or exc}"])
    fixing = (job.fix or job.diff) and job.summarize_as is None
    report = check_bytes(
        raw, job.path, rules, job.options, fix=fixing, unsafe_fixes=job.unsafe_fixes,
        facts=job.facts, summarize_as=job.summarize_as,
    )
    if not job.report:
        report.errors = []  # a file only read for the project: its own check reports those
        return report
    if report.new_bytes is not None and job.fix and not job.diff:
        problem = write_fixed(job.path, raw, report.new_bytes)
        if problem is not None:
            report.errors.append(problem)
            report.findings = sorted(report.findings + report.fixed, key=lambda f: f.sort_key())
            report.fixed = []
    if not job.diff:
        from zklint.output import annotate

        annotate(report, report.new_bytes if report.new_bytes is not None and report.fixed else raw, job.edits)
        report.old_text = report.new_text = None
    report.new_bytes = None if not job.diff else report.new_bytes
    return report


def run_jobs(jobs: List[Job], processes: int) -> List[FileReport]:
    from zklint.engine import FileReport, internal_error

    if jobs:
        keep_freed_memory()
    if processes <= 1 or len(jobs) < 2 * processes:
        return [_detached(run_job(job)) for job in jobs]
    import multiprocessing

    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    # Largest files first, in small batches: the workers finish together instead of one
    # waiting for the other's last big batch (results go back in the jobs' order).
    order = sorted(range(len(jobs)), key=lambda i: -_size(jobs[i].path))
    chunk = max(1, min(16, len(jobs) // (processes * 24)))
    # Not multiprocessing.Pool: when a worker dies (killed for memory, a crash in C
    # code) Pool.map waits forever; the executor reports the lost files instead.
    from concurrent.futures import ProcessPoolExecutor

    batches = [[jobs[i] for i in order[start:start + chunk]] for start in range(0, len(order), chunk)]
    reports: List[FileReport] = []
    import gc

    # Forked workers share the parent's objects; kept out of the collector's reach, the
    # workers' collections neither scan them nor copy their pages (less memory, less CPU).
    gc.freeze()
    try:
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            futures = [pool.submit(_run_batch, batch) for batch in batches]
            for batch, future in zip(batches, futures):
                try:
                    reports.extend(future.result())
                except Exception as exc:  # BrokenProcessPool, or a report that cannot be sent back
                    died = type(exc).__name__ == "BrokenProcessPool"
                    reason = "a worker process died" if died else internal_error(exc)
                    reports.extend(FileReport(job.path, errors=[f"not checked: {reason}"]) for job in batch)
    finally:
        gc.unfreeze()
    by_position = dict(zip(order, reports))
    return [by_position[i] for i in range(len(jobs))]


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (glibc's malloc.h)
_KEPT = [False]


def keep_freed_memory() -> None:
    """Ask glibc's malloc to keep the memory a file's analysis frees for the next file.

    Each file's tree, model and summary are freed before the next file is parsed. By
    default glibc gives the top of its heap back to the system as soon as it is free (and
    serves large blocks from mappings of their own, unmapped when freed), so every file
    faulted the same memory in again: 77k page faults in a serial check of the bench's
    kazoo tree against 14k, and 6 to 9% of its time. Peak memory does not change, and the
    system takes the memory back when the run ends. Elsewhere (musl, macOS, Windows) this
    changes nothing. Once per process, for the rest of its life (forked workers inherit
    it): a program that calls `zklint.cli.main` in a process of its own gets it too. The
    flake8 plugin and the language server never come here.
    """
    if _KEPT[0] or not sys.platform.startswith("linux"):
        return
    _KEPT[0] = True
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):  # no ctypes, or a libc without mallopt
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # (the largest glibc takes on 64-bit systems)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _detached(report: FileReport, sent: bool = False) -> FileReport:
    """The report as a worker process sends it back, fixes without their `build`: kept,
    a serial run would hold every analysed tree in memory until it ends. A report `sent`
    to the main process keeps its summary's packed bytes: they cross instead of the
    summary (pickled once, see FileReport.__getstate__); one kept here drops them."""
    report.detach()
    if not sent:
        report.summary_packed = None
    return report


def _run_batch(batch: List[Job]) -> List[FileReport]:
    # Detached one by one: a batch's reports would otherwise hold all its trees until sent.
    return [_detached(run_job(job), sent=True) for job in batch]


# ---- projects -------------------------------------------------------------------------------


@dataclass
class CacheOptions:
    enabled: bool = True
    directory: Optional[str] = None  # --cache-dir (else ZKLINT_CACHE_DIR, else per project)
    write: bool = True


class Projects:
    """The projects of one run, by root; each read once."""

    def __init__(self, excluder: Excluder, cache: CacheOptions) -> None:
        self.layout = Layout()
        self.excluder = excluder
        self.cache = cache
        self.by_root: Dict[str, Project] = {}
        self._of_file: Dict[str, Project] = {}
        self._walked: set = set()  # roots walked to find the files being checked
        self._recursive: Dict[str, bool] = {}  # False: a root without a marker, its own files only
        self._absolute: Dict[str, str] = {}

    def absolute(self, path: str) -> str:
        """``os.path.abspath(path)``, worked out once per path in a run (a run never changes
        its directory): each file's path is asked for five times, and for a relative path
        each answer asks the system for the current directory."""
        found = self._absolute.get(path)
        if found is None:
            found = self._absolute[path] = os.path.abspath(path)
        return found

    def project_of(self, path: str, walked_from: Optional[str]) -> Project:
        """The project of a file to check. Without a root marker above it, the project is
        the directory that was walked to find it, or for a file named on its own its
        directory's files (never a walk of everything below an unmarked directory)."""
        # _of_file knows each file by its absolute path and by the path it was given as
        known = self._of_file.get(path)
        if known is not None:
            return known
        key = self.absolute(path)
        known = self._of_file.get(key)
        if known is not None:
            self._of_file[path] = known
            return known
        # a job's path is a file's (discovery sent directories to be walked)
        root = self.layout.marked_root_of_directory(os.path.dirname(key))
        recursive = True
        if root is None:
            if walked_from is not None:
                root = self.absolute(walked_from)
            else:
                root, recursive = os.path.dirname(key), False
        project = self.by_root.get(root)
        if project is None:
            cache = None
            if self.cache.enabled:
                cache = Cache(cache_dir_for(root, self.cache.directory), root)
            project = self.by_root[root] = Project(root, self.layout, cache)
            self._recursive[root] = recursive
        if walked_from is not None and root not in self._walked and self.absolute(walked_from) == root:
            self._walked.add(root)  # its files are the ones being checked: no second walk
        self._of_file[key] = self._of_file[path] = project
        return project

    def read_all(self, given: Sequence[Tuple[str, bytes]]) -> None:
        """Read every project's modules (the files given first, as they are now). A project
        none of whose files names kazoo is left empty: no client can reach its files."""
        files: Dict[str, List[Tuple[str, bytes]]] = {root: [] for root in self.by_root}
        for path, raw in given:
            files[self.project_of(path, None).root].append((path, raw))
        # the given files' absolute paths, for the projects whose files are read by a walk here
        seen = {self.absolute(path) for path, _ in given} if set(self.by_root) - self._walked else set()
        for root, project in self.by_root.items():
            if root not in self._walked:
                for path in self._project_files(project):
                    if self.absolute(path) not in seen:
                        raw = read_bytes(path)
                        if raw is not None:
                            files[root].append((path, raw))
            if any(mentions_kazoo(raw) for _, raw in files[root]):
                for path, raw in files[root]:
                    project.add(path, raw)

    def _project_files(self, project: Project) -> Iterator[str]:
        return project_files(project.root, self._recursive.get(project.root, True), self.excluder)

    def save(self) -> None:
        if self.cache.write:
            for project in self.by_root.values():
                project.save_cache()


def check_files(
    jobs: List[Job],
    walked_from: Dict[str, Optional[str]],
    excluder: Excluder,
    processes: int,
    cache: CacheOptions,
) -> List[FileReport]:
    """Check `jobs` with the facts of their projects; one report per job, in job order."""
    from zklint.engine import FileReport

    projects = Projects(excluder, cache)
    given: List[Tuple[str, bytes]] = []
    unread: Dict[str, FileReport] = {}
    for job in jobs:
        projects.project_of(job.path, walked_from.get(job.path))
        raw = read_bytes(job.path)
        if raw is None:
            unread[job.path] = run_job(job)  # the reading error, as a report
        else:
            given.append((job.path, raw))
    projects.read_all(given)
    checking = (lambda job: not (job.fix or job.diff))
    by_path = {projects.absolute(job.path): job for job in jobs if job.path not in unread}

    # Round 1: summaries (and, when checking only, a first lint with the module's own facts).
    first_reports: Dict[str, FileReport] = {}
    todo = list(projects.by_root.values())
    while todo:
        first: List[Job] = []
        owners: List[Tuple[Project, object]] = []
        for project in todo:
            for entry in project.missing():
                job = by_path.get(entry.path)
                if job is not None and entry.names_kazoo:
                    first.append(
                        dataclasses.replace(job, summarize_as=entry.identity, facts=None, report=checking(job))
                    )
                else:
                    first.append(Job(entry.path, (), {}, False, False, False, summarize_as=entry.identity,
                                     report=False))
                owners.append((project, entry))
        for job, (project, entry), report in zip(first, owners, run_jobs(first, processes)):
            project.set_summary(entry, report.summary, report.summary_digest)
            report.summary = None
            if job.report:
                first_reports[entry.path] = report
        # files that wrap or re-export the kazoo modules without naming kazoo: next round
        todo = [project for project in todo if project.pull_in_wrappers()]

    # Round 2: the project's facts.
    reports: Dict[str, FileReport] = {}
    second: List[Job] = []
    pending: List[Tuple[Job, Project, Optional[str]]] = []
    # root -> the facts' key, the fingerprints cached for it, the views settled in this run
    known: Dict[str, Tuple[str, Optional[Dict[str, str]], Dict[str, ModuleFacts]]] = {}
    for root, project in projects.by_root.items():
        if project.cache is not None and project.files:
            key = project.facts_key()
            known[root] = (key, project.cache.view_fingerprints(key), {})
    for job in jobs:
        if job.path in unread:
            continue
        key = projects.absolute(job.path)
        project = projects.project_of(job.path, None)
        entry = project.files.get(key)
        if entry is None or (not entry.summarized and not entry.names_kazoo):
            reports[job.path] = first_reports.get(key) or FileReport(job.path)
            continue  # never names kazoo and nothing passes through it: nothing to find
        facts = None
        remembered = known.get(project.root)
        fingerprint = remembered[1].get(entry.path) if remembered and remembered[1] else None
        if fingerprint is None:  # settle the project's facts (once, on the first file that needs them)
            facts = project.facts_for(key)
            if project.cache is not None:  # the cache's key (without a cache, facts compare as they are)
                fingerprint = facts.fingerprint()
            if remembered:
                remembered[2][entry.path] = facts
        early = first_reports.get(key)
        if early is not None and (early.errors or _linted_with(early, facts, fingerprint)):
            reports[job.path] = early
            _remember(project, entry.digest, fingerprint, job, early)
            continue
        cached = _cached(project, entry.digest, fingerprint, job)
        if cached is not None:
            reports[job.path] = cached
            continue
        if facts is None:  # the view was settled by an earlier run: kept beside its fingerprint
            facts = project.cache.view_facts(fingerprint) if project.cache is not None else None
        if facts is None:
            facts = project.facts_for(key)
        second.append(dataclasses.replace(job, facts=facts, summarize_as=None))
        pending.append((job, project, fingerprint))
    for (job, project, fingerprint), report in zip(pending, run_jobs(second, processes)):
        reports[job.path] = report
        entry = project.module_file(job.path)
        if entry is not None:
            _remember(project, entry.digest, fingerprint, job, report)
    for root, (key, _, views) in known.items():
        if views:
            projects.by_root[root].cache.put_views(key, views)
    projects.save()
    reports.update(unread)
    return [reports[job.path] for job in jobs]


def _linted_with(early: FileReport, facts: Optional[ModuleFacts], fingerprint: Optional[str]) -> bool:
    """Were the facts a first lint used (the module's own) these: the project's `facts`
    when settled in this run, else the view of `fingerprint` an earlier run settled?"""
    if early.own_facts is None:
        return False
    if facts is not None:
        return early.own_facts == facts
    return early.own_facts.fingerprint() == fingerprint


def _cacheable(job: Job) -> bool:
    return not (job.fix or job.diff or job.edits)


def _cached(project: Project, file_digest: str, fingerprint: Optional[str], job: Job) -> Optional[FileReport]:
    from zklint.engine import FileReport

    if project.cache is None or not _cacheable(job):
        return None
    found = project.cache.get_findings(Cache.findings_key(file_digest, fingerprint, job.settings_key()))
    if found is None:
        return None
    report = FileReport(job.path, findings=found[0])
    report.lines = found[1]
    return report


def _remember(project: Project, file_digest: str, fingerprint: Optional[str], job: Job, report: FileReport) -> None:
    if project.cache is None or fingerprint is None or not _cacheable(job) or report.errors:
        return
    project.cache.put_findings(
        Cache.findings_key(file_digest, fingerprint, job.settings_key()), report.findings, report.lines
    )


def project_files(root: str, recursive: bool, excluder: Excluder) -> Iterator[str]:
    """The Python files of the project at `root` (without a root marker, `recursive` is
    False: the directory's own files, never a walk of everything below it)."""
    if recursive:
        for path, problem in discover([root], excluder):
            if problem is None:
                yield path
        return
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return
    for name in names:
        if name.endswith(".py"):
            path = os.path.join(root, name)
            if os.path.isfile(path) and not excluder.excluded(path, False):
                yield path


# ---- one file at a time: the flake8 plugin and the language server ----------------------------

# project root -> the project, and whether its files are walked recursively (see
# Projects.project_of)
_OPEN_PROJECTS: Dict[str, Tuple[Project, bool]] = {}


def project_names_kazoo(path: str, use_cache: bool = True) -> bool:
    """Does any file of `path`'s project (read as `facts_for_file` reads it) name kazoo?"""
    return bool(_open_project(os.path.abspath(path), use_cache)[0].files)


def facts_for_file(path: str, text: Optional[bytes] = None, use_cache: bool = True) -> Optional[ModuleFacts]:
    """The project facts for one file, from a project read once per process.

    `text` is the file's current content when it differs from the disk (an editor's
    buffer). The project is found as the CLI finds it (the nearest root marker; without
    one, the current directory when the file is below it, else the file's directory),
    read with the excludes of the root's configuration, and summarised in process. A
    project none of whose files names kazoo is read once and left empty (no client can
    reach its files) until a text that names kazoo comes in.
    """
    key = os.path.abspath(path)
    project, recursive = _open_project(key, use_cache)
    if not project.files:
        if text is None or not mentions_kazoo(text):
            return None
        _index(project, recursive, force=True)
    if text is not None:
        project.add(key, text, unsaved=True)
    elif key not in project.files:
        raw = read_bytes(key)
        if raw is None:
            return None
        project.add(key, raw)
    project.summarize_missing()
    entry = project.module_file(key)
    if entry is None or not entry.summarized:
        return None  # never names kazoo, and nothing of the project passes through it
    return _project_facts(project, key)


def _open_project(key: str, use_cache: bool) -> Tuple[Project, bool]:
    """The project of the file at absolute path `key`, read once per process, and whether
    its files are walked recursively."""
    layout = _LAYOUT[0]
    root = layout.marked_root(key)
    recursive = True
    if root is None:
        cwd = os.path.abspath(".")
        root, recursive = (cwd, True) if key.startswith(cwd + os.sep) else (os.path.dirname(key), False)
    found = _OPEN_PROJECTS.get(root)
    if found is None:
        project = Project(root, layout, Cache(cache_dir_for(root), root) if use_cache else None)
        found = _OPEN_PROJECTS[root] = (project, recursive)
        _index(project, recursive, force=False)
    return found


def _index(project: Project, recursive: bool, force: bool) -> None:
    """Read the project's files with its root's excludes; index them when one names kazoo."""
    from zklint.config import Settings, find_pyproject, load_settings

    try:
        settings = load_settings(find_pyproject(project.root), start=project.root)
    except Exception:  # a broken configuration is the CLI's to report; use defaults here
        settings = Settings(root=project.root)
    excluder = Excluder(settings.root, settings.exclude + settings.extend_exclude, settings.respect_gitignore)
    # Files unchanged since an earlier process read them are not read again, and a walk
    # whose directories are unchanged is not walked again: a project without kazoo costs
    # a stat per file and per directory.
    stamps = project.cache.stamps() if project.cache is not None else {}
    fresh: Dict[str, Stamp] = {}
    files: List[Tuple[str, Optional[bytes], Stamp]] = []
    for file_path in _project_listing(project, recursive, settings, excluder):
        raw, stamp = read_stamped(file_path, stamps, fresh)
        if stamp is not None:
            files.append((file_path, raw, stamp))
    if force or any(stamp.names_kazoo for _, _, stamp in files):
        for file_path, raw, stamp in files:
            project.add(file_path, raw, known=stamp)
        project.summarize_missing()
        _remember_views(project)
    if project.cache is not None:
        project.cache.put_stamps(fresh)
        project.save_cache()


def _project_listing(project: Project, recursive: bool, settings, excluder: Excluder) -> List[str]:
    """`project_files`, from the cache while the walk it keeps would find the same files."""
    if not recursive or project.cache is None:
        return list(project_files(project.root, recursive, excluder))
    from zklint.files import list_files, unchanged

    key = json.dumps([settings.root, settings.exclude, settings.extend_exclude, settings.respect_gitignore])
    kept = project.cache.walked_files(key)
    if kept is not None and unchanged(kept[1]):
        return kept[0]
    listing = list_files(project.root, excluder)
    if listing.reusable:
        project.cache.put_walked_files(key, listing.files, listing.depends_on)
    return listing.files


def _remember_views(project: Project) -> None:
    """Every summarised file's facts, kept in the cache for the next process that reads
    the same summaries (each flake8 worker, the next flake8 run): they settle nothing."""
    if project.cache is None or project.cache.view_fingerprints(project.facts_key()) is not None:
        return
    views = {}
    for path, entry in project.files.items():
        if entry.summarized:
            facts = project.facts_for(path)
            if facts is not None:
                views[path] = facts
    project.cache.put_views(project.facts_key(), views)


def _project_facts(project: Project, path: str) -> Optional[ModuleFacts]:
    """`project.facts_for(path)`, from the cache when it holds the view of these summaries."""
    if project.cache is not None:
        fingerprint = (project.cache.view_fingerprints(project.facts_key()) or {}).get(path)
        facts = project.cache.view_facts(fingerprint) if fingerprint is not None else None
        if facts is not None:
            return facts
    return project.facts_for(path)


def refresh_file(path: str) -> None:
    """Take a file in again as it is on disk (an editor closed it, or it changed there)."""
    key = os.path.abspath(path)
    raw = read_bytes(key)
    for project, _ in _OPEN_PROJECTS.values():
        if key in project.files and raw is not None:
            project.add(key, raw)


def forget_projects() -> None:
    """Drop the projects read so far (a long-lived process whose files changed on disk)."""
    _OPEN_PROJECTS.clear()


_LAYOUT = [Layout()]
