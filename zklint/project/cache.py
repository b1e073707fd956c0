"""The on-disk cache: module summaries by content digest, findings by digest and facts.

One JSON file per project root and zklint build, under ``.zklint_cache/`` at the project
root (or ``--cache-dir`` / ``ZKLINT_CACHE_DIR``), as ruff keeps ``.ruff_cache/``. A
module's summary depends only on its bytes; its findings on its bytes, the facts the
project gives it (their fingerprint) and the settings. An entry is used only when all
of its key matches, so the cache never changes a result, only the time it takes.
A cache that cannot be read is ignored; one that cannot be written is skipped silently
(a read-only checkout still gets its findings).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from zklint.facts import ModuleFacts

if TYPE_CHECKING:
    from zklint.findings import Finding
    from zklint.project.summary import ModuleSummary

CACHE_DIR_NAME = ".zklint_cache"
CACHE_ENV = "ZKLINT_CACHE_DIR"


@dataclass(frozen=True)
class Stamp:
    """What a file on disk was when last read: its size and modification time, and what
    its bytes were (their digest, whether they name kazoo). Same size and time: the same
    bytes, as ruff and git assume; a file changed in the two seconds before it was read is
    not stamped (its time could stay the same through a second change)."""

    size: int
    mtime_ns: int
    digest: str
    names_kazoo: bool


def digest(raw: bytes, size: int = 16) -> str:
    return _blake2b()(raw, digest_size=size).hexdigest()


def _blake2b():
    """hashlib's blake2b, imported where first needed, without hashlib when it can be:
    hashlib loads OpenSSL (about 3 ms), which a flake8 worker checking a project without
    kazoo would pay for nothing but the cache's names."""
    try:
        from _blake2 import blake2b  # what hashlib.blake2b is, in CPython
    except ImportError:  # another Python
        from hashlib import blake2b
    return blake2b


_BUILD_KEY: List[Optional[str]] = [None]


def build_key() -> str:
    """zklint's own code: a cache written by another build (another version, an edited
    rule) is not used."""
    if _BUILD_KEY[0] is None:
        from zklint import __version__

        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        hasher = _blake2b()(__version__.encode(), digest_size=8)
        for directory, dirnames, filenames in os.walk(package):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(".py"):
                    with open(os.path.join(directory, name), "rb") as handle:
                        hasher.update(name.encode() + b"\0" + handle.read())
        _BUILD_KEY[0] = hasher.hexdigest()
    return _BUILD_KEY[0]


def cache_dir_for(root: str, configured: Optional[str] = None) -> str:
    """Where the cache of the project at `root` lives: the option, the environment, or
    ``<root>/.zklint_cache``."""
    chosen = configured or os.environ.get(CACHE_ENV)
    return os.path.abspath(chosen) if chosen else os.path.join(root, CACHE_DIR_NAME)


class Cache:
    """One project's cache: ``<dir>/<build>/<project>/``, holding each summary in a file of
    its own named by the digest of the file it summarises (written once, never changed)
    and ``index.json`` with the findings and the facts' fingerprints. A run that changes
    one file writes one summary and the index, and reads only the summaries it needs."""

    def __init__(self, directory: str, root: str) -> None:
        self.directory = directory
        root_key = digest(os.path.abspath(root).encode(), size=8)
        self.folder = os.path.join(directory, build_key(), root_key)
        self.path = os.path.join(self.folder, "index.json")
        self._new_summaries: Dict[str, dict] = {}
        # file digest -> the digest of its summary (the summary itself in its own file,
        # read only when the project's facts are settled again)
        self.summaries: Dict[str, str] = {}
        self.findings: Dict[str, list] = {}
        # the facts' fingerprint of each checked file, for the summaries they were settled
        # from: a run whose summaries are all the same (nothing changed, or only what no
        # summary shows, like a comment) skips settling the project again
        self.views: dict = {}
        # the files that wrap the kazoo modules without naming kazoo, for one facts' key
        self.wrapper_files: dict = {}
        # path -> [size, mtime_ns, digest, names kazoo] of every file of the project when
        # the flake8 plugin or the language server last read it (see project.Stamp)
        self.file_stamps: dict = {}
        # the project's files as the last walk found them, for the same excludes: key, files
        # and what the walk depended on (see zklint.files.Listing)
        self.walked: dict = {}
        self._dirty = False
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            findings, views, summaries = data["findings"], data["views"], data["summaries"]
            wrappers, stamps = data["wrappers"], data["stamps"]
            if all(isinstance(x, dict) for x in (findings, views, summaries, wrappers, stamps)):
                self.findings, self.views, self.summaries = findings, views, summaries
                self.wrapper_files, self.file_stamps = wrappers, stamps
                walked = data.get("walked")
                self.walked = walked if isinstance(walked, dict) else {}
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no cache, or an unreadable one: start afresh

    def _summary_path(self, file_digest: str) -> str:
        return os.path.join(self.folder, "summaries", file_digest + ".json")

    # -- summaries

    def summary(self, file_digest: str) -> Optional[Tuple[ModuleSummary, str]]:
        """The summary of a file's bytes and the digest of the summary itself."""
        from zklint.project.summary import ModuleSummary

        data = self._new_summaries.get(file_digest)
        try:
            if data is None:
                with open(self._summary_path(file_digest), encoding="utf-8") as handle:
                    data = json.load(handle)
            return ModuleSummary.from_json(data["summary"]), data["digest"]
        except (OSError, KeyError, TypeError, ValueError):
            return None

    def summary_digest(self, file_digest: str) -> Optional[str]:
        """The digest of a file's summary, when the cache holds that summary."""
        found = self.summaries.get(file_digest)
        return found if isinstance(found, str) else None

    def put_summary(self, file_digest: str, summary: ModuleSummary, summary_digest: str) -> None:
        self._new_summaries[file_digest] = {"summary": summary.to_json(), "digest": summary_digest}
        self.summaries[file_digest] = summary_digest

    # -- findings

    @staticmethod
    def findings_key(file_digest: str, facts_fingerprint: str, settings_key: str) -> str:
        return f"{file_digest}:{facts_fingerprint}:{settings_key}"

    def get_findings(self, key: str) -> Optional[Tuple[List[Finding], Dict[int, str]]]:
        data = self.findings.get(key)
        if data is None:
            return None
        try:
            findings = [_finding_in(item) for item in data[0]]
            lines = {int(k): v for k, v in data[1].items()}
        except (KeyError, TypeError, ValueError, IndexError):
            return None
        return findings, lines

    def put_findings(self, key: str, findings: List[Finding], lines: Dict[int, str]) -> None:
        self.findings[key] = [[_finding_out(f) for f in findings], {str(k): v for k, v in lines.items()}]
        self._dirty = True

    def view_fingerprints(self, key: str) -> Optional[Dict[str, str]]:
        if self.views.get("key") != key:
            return None
        fingerprints = self.views.get("fingerprints")
        return fingerprints if isinstance(fingerprints, dict) else None

    def view_facts(self, fingerprint: str) -> Optional[ModuleFacts]:
        """The facts of a fingerprint `put_views` kept: a changed file whose summary is the
        same is linted with them without settling the project again."""
        data = self.views.get("facts", {}).get(fingerprint)
        try:
            return ModuleFacts.from_json(data) if data is not None else None
        except (KeyError, TypeError, ValueError):
            return None

    def put_views(self, key: str, views: Dict[str, ModuleFacts]) -> None:
        """Each file's facts, for the summaries of the facts' `key` (another key: a new set)."""
        same_key = self.views.get("key") == key
        fingerprints = dict(self.views.get("fingerprints", {})) if same_key else {}
        facts = dict(self.views.get("facts", {})) if same_key else {}
        for path, view in views.items():
            fingerprint = fingerprints[path] = view.fingerprint()
            facts.setdefault(fingerprint, view.to_json())
        updated = {"key": key, "fingerprints": fingerprints, "facts": facts}
        if self.views != updated:
            self.views = updated
            self._dirty = True

    def wrappers(self, key: str) -> Optional[List[str]]:
        if self.wrapper_files.get("key") != key:
            return None
        paths = self.wrapper_files.get("paths")
        return paths if isinstance(paths, list) and all(isinstance(p, str) for p in paths) else None

    def put_wrappers(self, key: str, paths: List[str]) -> None:
        if self.wrapper_files != {"key": key, "paths": paths}:
            self.wrapper_files = {"key": key, "paths": paths}
            self._dirty = True

    def walked_files(self, key: str) -> Optional[Tuple[List[str], Dict[str, List[int]]]]:
        """(files, what the walk depended on) of the last walk with the excludes `key`."""
        if self.walked.get("key") != key:
            return None
        files, depends_on = self.walked.get("files"), self.walked.get("depends_on")
        if not isinstance(files, list) or not isinstance(depends_on, dict) or not depends_on:
            return None
        return files, depends_on

    def put_walked_files(self, key: str, files: List[str], depends_on: Dict[str, List[int]]) -> None:
        updated = {"key": key, "files": files, "depends_on": depends_on}
        if self.walked != updated:
            self.walked = updated
            self._dirty = True

    def stamps(self) -> Dict[str, Stamp]:
        found = {}
        for path, item in self.file_stamps.items():
            try:
                found[path] = Stamp(int(item[0]), int(item[1]), str(item[2]), bool(item[3]))
            except (TypeError, ValueError, IndexError):
                pass
        return found

    def put_stamps(self, stamps: Dict[str, Stamp]) -> None:
        """The stamps of every file the project has now (files gone are dropped)."""
        table = {p: [s.size, s.mtime_ns, s.digest, s.names_kazoo] for p, s in stamps.items()}
        if table != self.file_stamps:
            self.file_stamps = table
            self._dirty = True

    # -- writing

    def save(self, live_digests: set) -> None:
        """Write what changed (atomically), keeping only entries of files as they are now."""
        findings = {k: v for k, v in self.findings.items() if k.split(":", 1)[0] in live_digests}
        summaries = {k: v for k, v in self.summaries.items() if k in live_digests}
        unchanged = len(findings) == len(self.findings) and len(summaries) == len(self.summaries)
        if not self._dirty and not self._new_summaries and unchanged:
            return
        try:
            os.makedirs(os.path.join(self.folder, "summaries"), exist_ok=True)
            ignore = os.path.join(self.directory, ".gitignore")
            if not os.path.exists(ignore):
                with open(ignore, "w", encoding="utf-8") as handle:
                    handle.write("# Automatically created by zklint.\n*\n")
            for file_digest, data in self._new_summaries.items():
                _write_atomically(self._summary_path(file_digest), data)
            self._new_summaries = {}
            _write_atomically(self.path, {
                "findings": findings, "views": self.views, "summaries": summaries, "wrappers": self.wrapper_files,
                "stamps": self.file_stamps, "walked": self.walked,
            })
            for name in os.listdir(os.path.join(self.folder, "summaries")):
                if name.endswith(".json") and name[:-5] not in live_digests:
                    os.unlink(os.path.join(self.folder, "summaries", name))  # a file as it no longer is
        except OSError:
            pass  # a read-only tree: the run works, only the next one is not faster


def _write_atomically(path: str, data) -> None:
    import tempfile

    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, separators=(",", ":"))
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _finding_out(finding: Finding) -> list:
    fix = None
    if finding.fix is not None:
        fix = [finding.fix.title, finding.fix.safety.value, [[i.module, i.name] for i in finding.fix.imports]]
    return [finding.code, finding.message, finding.line, finding.col, finding.end_line, finding.end_col, fix]


def _finding_in(item: list) -> Finding:
    from zklint.findings import Finding, Fix, Import, Safety, built_elsewhere

    fix = None
    if item[6] is not None:
        title, safety, imports = item[6]
        fix = Fix(title, Safety(safety), built_elsewhere, tuple(Import(m, n) for m, n in imports))
    return Finding(item[0], item[1], item[2], item[3], item[4], item[5], fix)
