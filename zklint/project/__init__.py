"""The project layer: follow a client across calls, attributes and modules.

A `Project` is the set of Python files under one project root (the nearest directory
above a file holding pyproject.toml, setup.cfg, setup.py or .git). Each file that names
kazoo gets a summary (`summary.py`: what it defines and exports about clients); the
summaries are settled together into project-wide facts (`solve.py`), and each module is
linted with the facts it can ask about (`Solution.view`). Files that never name kazoo
are not parsed; their text only tells which function names they mention (their calls
are out of sight, so those functions' parameters are not inferred).

The CLI computes summaries in its worker processes (the same parse as the lint); the
flake8 plugin and the language server call `Project.summarize_missing`, which does it in
process. Summaries and findings are cached on disk (`cache.py`).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, FrozenSet, List, Optional, Set, Tuple, Union

from zklint.facts import ModuleFacts
from zklint.files import RACY_NS
from zklint.project.cache import Cache, Stamp, digest
from zklint.project.layout import Layout

if TYPE_CHECKING:
    from zklint.project.solve import Solution
    from zklint.project.summary import ModuleSummary

# The model, the summariser and the solver are imported where a file is summarised or the
# project settled: reading a project none of whose files names kazoo needs none of them.

# Outside a project every rule needs a kazoo client, and a client needs the text "kazoo"
# or "Kazoo" in the file (an import, an annotation): files without it get no AST at all.
KAZOO_MARKER = b"azoo"
_MARKER_PROBES = 128


def mentions_kazoo(data: Union[bytes, str]) -> bool:
    """``KAZOO_MARKER in data``, for bytes or text, in about half the time on code that
    does not name kazoo (the standard library: 12 ms instead of 25 for 31 MB).

    A substring search tests nearly every position of a text that lacks "azoo", because
    its last letter is common. Here the scan jumps from one "z" to the next (a memchr),
    a letter code rarely holds, and tests the marker around each. A text with more than
    `_MARKER_PROBES` of them is searched the usual way from there on.
    """
    if isinstance(data, bytes):
        letter, rest, before, marker = b"z", b"zoo", b"a", KAZOO_MARKER
    else:
        letter, rest, before, marker = "z", "zoo", "a", "azoo"
    find, startswith = data.find, data.startswith
    at = find(letter, 1)  # (a "z" at 0 has no "a" before it)
    for _ in range(_MARKER_PROBES):
        if at < 0:
            return False
        if startswith(rest, at) and startswith(before, at - 1):
            return True
        at = find(letter, at + 1)
    # every "z" before `at` was tested: a marker left starts at `at - 1` or later
    return at >= 0 and find(marker, at - 1) >= 0


_IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class ModuleFile:
    path: str
    module: str
    is_package: bool
    digest: str
    names_kazoo: bool
    # Of the file's summary: what the project's facts depend on. Set: the file is
    # summarised; the summary itself is read from the cache only when asked for (a run in
    # which nothing changed settles nothing and reads none).
    summary_digest: Optional[str] = None
    unreadable: bool = False  # could not be summarised (syntax error...): no facts from it
    # For a file that never names kazoo: the identifiers it uses, read when the project
    # needs them; and whether it is summarised anyway (it wraps or re-exports what the
    # project's kazoo modules define).
    identifiers: Optional[FrozenSet[bytes]] = None
    wanted: bool = False
    text: Optional[bytes] = None  # unsaved editor text standing in for the file
    loaded: Optional[ModuleSummary] = field(default=None, repr=False)
    cache: Optional[Cache] = field(default=None, repr=False)  # where a summary not loaded yet is kept

    @property
    def identity(self) -> ModuleFacts:
        """The facts a module has before the project is known: its name."""
        return ModuleFacts(module=self.module, is_package=self.is_package)

    @property
    def summarized(self) -> bool:
        return self.summary_digest is not None

    @property
    def summary(self) -> Optional[ModuleSummary]:
        if self.loaded is None and self.summary_digest is not None:
            found = self.cache.summary(self.digest) if self.cache is not None else None
            if found is None:  # the cache lost it since the index was read: summarise again
                raw = self.text if self.text is not None else read_bytes(self.path)
                found = summarize_bytes(raw, self) if raw is not None and digest(raw) == self.digest else None
                found = (found, found.digest()) if found is not None else None
            if found is None:  # changed on disk meanwhile: this run gets no facts from it
                self.summary_digest, self.unreadable = None, True
                return None
            self.loaded, self.summary_digest = found
        return self.loaded


# How many times files that wrap the kazoo modules are pulled in (a wrapper of a wrapper...)
_WRAPPER_ROUNDS = 3


class Project:
    def __init__(self, root: str, layout: Optional[Layout] = None, cache: Optional[Cache] = None) -> None:
        self.root = os.path.abspath(root)
        self.layout = layout or Layout()
        self.cache = cache
        self.files: Dict[str, ModuleFile] = {}  # absolute path -> file
        self._solution: Optional[Solution] = None
        self._outside: Optional[List[FrozenSet[bytes]]] = None
        self._wrapper_rounds = 0
        self._wrappers_key: Optional[str] = None  # see pull_in_wrappers
        self._facts_key: Optional[str] = None

    # ---- reading the project --------------------------------------------------------------

    def add(
        self, path: str, raw: Optional[bytes], unsaved: bool = False, known: Optional["Stamp"] = None
    ) -> ModuleFile:
        """Take in one file's current bytes (a file on disk, or an editor's unsaved text);
        or, with `raw` None, a file on disk whose `known` stamp says it has not changed."""
        key = os.path.abspath(path)
        module, is_package = self.layout.module_of(key, self.root)
        if raw is None:
            assert known is not None
            file_digest, names_kazoo = known.digest, known.names_kazoo
        else:
            file_digest, names_kazoo = digest(raw), mentions_kazoo(raw)
        previous = self.files.get(key)
        if previous is not None and previous.digest == file_digest:
            return previous
        entry = ModuleFile(key, module, is_package, file_digest, names_kazoo, text=raw if unsaved else None)
        if self.cache is not None and names_kazoo:
            self._from_cache(entry)
        if previous is not None and previous.wanted and not names_kazoo:
            entry.wanted = True
            if raw is not None:
                entry.identifiers = frozenset(_IDENTIFIER.findall(raw))
            if self.cache is not None:
                self._from_cache(entry)
        self.files[key] = entry
        self._changed()
        return entry

    def _changed(self) -> None:
        self._solution = None
        self._facts_key = None

    def missing(self) -> List[ModuleFile]:
        """Files to summarise that have no summary yet: those naming kazoo, and wrappers."""
        return [
            f for f in self.files.values()
            if (f.names_kazoo or f.wanted) and not f.summarized and not f.unreadable
        ]

    def pull_in_wrappers(self) -> bool:
        """Mark for summarising the files that never name kazoo but mention a function or
        class the summarised modules define (`from .connection import connect` in an
        ``__init__``, a `get_zk()` wrapping it): the facts pass through them. True when
        some were added (summarise them, then ask again; bounded).

        Which files those are depends only on the summaries and the other files' text
        (the facts' key when first asked): the cache remembers the answer, so a run in
        which nothing changed reads no summary for it."""
        if self._wrapper_rounds == 0 and self.cache is not None:
            self._wrappers_key = self.facts_key()
            remembered = self.cache.wrappers(self._wrappers_key)
            entries = [self.files.get(path) for path in remembered or ()]
            if remembered is not None and all(e is not None and not e.names_kazoo for e in entries):
                for entry in entries:
                    entry.wanted = True
                    self._from_cache(entry)
                self._wrapper_rounds, self._wrappers_key = _WRAPPER_ROUNDS, None
                self._changed()
                return any(not entry.summarized for entry in entries)
        if self._wrapper_rounds >= _WRAPPER_ROUNDS or not self._pull_in_wrappers():
            if self._wrappers_key is not None and self.cache is not None:
                wanted = sorted(path for path, entry in self.files.items() if entry.wanted)
                self.cache.put_wrappers(self._wrappers_key, wanted)
                self._wrappers_key = None
            return False
        return True

    def _pull_in_wrappers(self) -> bool:
        self._wrapper_rounds += 1
        if all(entry.names_kazoo or entry.wanted for entry in self.files.values()):
            return False  # no file left that could be a wrapper
        # what a wrapper of summarised module M writes: M's name and a name M defines
        defines: Dict[bytes, Set[bytes]] = {}
        imported: Set[str] = set()  # modules the summarised ones import from or call into
        for entry in self.files.values():
            if entry.summary is not None:
                names = defines.setdefault(entry.module.rpartition(".")[2].encode(), set())
                for qual in list(entry.summary.functions) + list(entry.summary.classes):
                    names.update(part.encode() for part in qual.split(".")[-2:])
                names.update(local.encode() for local in entry.summary.imports)  # what it re-exports
                names.update(name.encode() for name in entry.summary.globals)  # its module-level clients
                targets = list(entry.summary.imports.values()) + [c.callee for c in entry.summary.calls]
                for target in targets:
                    parts = target.split(".")
                    imported.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
        if not defines:
            return False
        added = False
        for entry in self.files.values():
            if entry.names_kazoo or entry.wanted:
                continue
            identifiers = self._identifiers(entry)
            wraps = b"import" in identifiers and any(
                tail in identifiers and not identifiers.isdisjoint(names) for tail, names in defines.items()
            )
            if entry.module in imported or wraps:
                entry.wanted = True
                if self.cache is not None:
                    self._from_cache(entry)
                added = True
        if added:
            self._changed()
        return added

    def _identifiers(self, entry: ModuleFile) -> FrozenSet[bytes]:
        if entry.identifiers is None:
            raw = entry.text if entry.text is not None else read_bytes(entry.path)
            entry.identifiers = frozenset(_IDENTIFIER.findall(raw or b""))
        return entry.identifiers

    def _mentioned_outside(self, names: Tuple[str, ...]) -> bool:
        """Does a project file that was not summarised write all of `names`?"""
        if self._outside is None:
            self._outside = [
                self._identifiers(f) for f in self.files.values() if not f.names_kazoo and not f.summarized
            ]
        if not self._outside:
            return False
        wanted = {name.encode() for name in names}
        return any(wanted <= identifiers for identifiers in self._outside)

    def _from_cache(self, entry: ModuleFile) -> None:
        if self.cache is not None:
            entry.summary_digest, entry.cache = self.cache.summary_digest(entry.digest), self.cache

    def set_summary(
        self, entry: ModuleFile, summary: Optional[ModuleSummary], summary_digest: Optional[str] = None
    ) -> None:
        """`summary_digest`: `summary.digest()` when the worker that built it computed it."""
        if summary is None:
            entry.unreadable = True
        else:
            entry.loaded = summary
            entry.summary_digest = summary_digest or summary.digest()
            if self.cache is not None:
                self.cache.put_summary(entry.digest, summary, entry.summary_digest)
        self._changed()

    def facts_key(self) -> str:
        """What the project's facts are settled from: the summaries, and the files outside
        them (their names can hide callers). Equal keys, equal facts."""
        if self._facts_key is None:
            parts = sorted(
                (f.path, f.summary_digest if f.summarized else ("-" + f.digest))
                for f in self.files.values() if f.summarized or not f.names_kazoo
            )
            self._facts_key = digest(json.dumps(parts).encode())
        return self._facts_key

    def summarize_missing(self) -> None:
        """Summarise, in this process, every file that needs it (flake8, the language server)."""
        while True:
            for entry in self.missing():
                raw = entry.text if entry.text is not None else read_bytes(entry.path)
                if raw is not None and digest(raw) != entry.digest:  # changed since it was stamped
                    entry = self.add(entry.path, raw)
                self.set_summary(entry, summarize_bytes(raw, entry) if raw is not None else None)
            if not self.pull_in_wrappers():
                return

    # ---- facts --------------------------------------------------------------------------------

    def solution(self) -> Solution:
        from zklint.project.solve import Solution

        if self._solution is None:
            self._outside = None  # the files outside the summaries, listed afresh for this solution
            self._solution = Solution(
                [f.summary for f in self.files.values() if f.summary is not None],
                mentioned_outside=self._mentioned_outside,
            )
        return self._solution

    def module_file(self, path: str) -> Optional[ModuleFile]:
        return self.files.get(os.path.abspath(path))

    def facts_for(self, path: str) -> Optional[ModuleFacts]:
        """The facts the module at `path` is linted with (None: not a file of this project)."""
        entry = self.module_file(path)
        if entry is None:
            return None
        solution = self.solution()
        if solution.ambiguous:
            # Two files share a module name (scripts of the same name in two directories):
            # a file imported from a directory holding one of them sees that one, as
            # Python would with that directory first on sys.path.
            home = self.layout.import_root_of(entry.path)
            if home in self._ambiguous_homes(solution):
                return self._home_solution(home, solution).view(entry.module)
        return solution.view(entry.module)

    def _ambiguous_homes(self, solution: Solution) -> Set[str]:
        return {
            self.layout.import_root_of(f.path) for f in self.files.values()
            if f.summary is not None and f.module in solution.ambiguous
        }

    def _home_solution(self, home: str, solution: Solution) -> Solution:
        """The project as seen from import root `home`: its own modules, and the others'
        whose names are not shared."""
        from zklint.project.solve import Solution

        cache = self.__dict__.setdefault("_homes", {})
        found = cache.get(home)
        if found is None or found[0] is not solution:
            own = [f.summary for f in self.files.values()
                   if f.summary is not None and self.layout.import_root_of(f.path) == home]
            names = {s.module for s in own}
            others = [f.summary for f in self.files.values() if f.summary is not None
                      and f.summary.module not in names and f.summary.module not in solution.ambiguous]
            found = cache[home] = (solution, Solution(own + others, mentioned_outside=self._mentioned_outside))
        return found[1]

    def save_cache(self) -> None:
        if self.cache is not None:
            self.cache.save({f.digest for f in self.files.values()})


def read_stamped(
    path: str, stamps: Dict[str, Stamp], fresh: Dict[str, Stamp]
) -> Tuple[Optional[bytes], Optional[Stamp]]:
    """(None, stamp) for a file its stamp in `stamps` says is unchanged; else (bytes, its
    new stamp); (None, None) when it cannot be read. The stamp is put in `fresh` (the
    stamps to keep) unless the file changed a moment ago."""
    try:
        status = os.stat(path)
    except OSError:
        return None, None
    known = stamps.get(path)
    if known is not None and known.size == status.st_size and known.mtime_ns == status.st_mtime_ns:
        fresh[path] = known
        return None, known
    raw = read_bytes(path)
    if raw is None:
        return None, None
    stamp = Stamp(len(raw), status.st_mtime_ns, digest(raw), mentions_kazoo(raw))
    if stamp.size == status.st_size and time.time_ns() - status.st_mtime_ns > RACY_NS:
        fresh[path] = stamp
    return raw, stamp


def read_bytes(path: str) -> Optional[bytes]:
    """A file's bytes, or None when it cannot be read (it is then left out)."""
    try:
        with open(path, "rb", buffering=0) as handle:  # (no buffer: the file is read whole)
            return handle.readall()
    except OSError:
        return None


def summarize_bytes(raw: bytes, entry: ModuleFile) -> Optional[ModuleSummary]:
    """The summary of one file's bytes; None when it cannot be read as Python."""
    from zklint.model import ModuleModel
    from zklint.project.summary import summarize
    from zklint.source import SourceFile, parse_module

    try:
        text = SourceFile.from_bytes(raw, entry.path).text
        tree = parse_module(text, entry.path)
        return summarize(ModuleModel(tree, entry.identity))
    except Exception:  # its own lint reports why; here it only gives no facts
        return None
