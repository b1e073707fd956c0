"""Finding the files to check: walking directories with gitignore-style excludes."""

from __future__ import annotations

import functools
import operator
import os
import re
import stat
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

# Directories no one wants linted; like ruff's defaults. Matched by name at any depth.
DEFAULT_EXCLUDES = (
    ".bzr", ".direnv", ".eggs", ".git", ".git-rewrite", ".hg", ".ipynb_checkpoints", ".mypy_cache",
    ".nox", ".pants.d", ".pyenv", ".pytest_cache", ".pytype", ".ruff_cache", ".svn", ".tox", ".venv",
    ".vscode", ".zklint_cache", "__pypackages__", "__pycache__", "_build", "buck-out", "build", "dist", "node_modules",
    "site-packages", "venv", "*.egg-info",
)

PYTHON_SUFFIXES = (".py", ".pyi")


@dataclass(frozen=True)
class Pattern:
    regex: "re.Pattern[str]"
    negated: bool
    directory_only: bool
    anchored: bool
    # Tried on the whole relative path too: anchored, or able to match a "/" (``**``, or a
    # bracket expression such as ``[!x]``). Any other pattern can only match a path without
    # a "/", which is its own name: trying it on the name is enough.
    whole_path: bool


def compile_pattern(text: str) -> Optional[Pattern]:
    """One gitignore-style line: ``*``, ``?``, ``[]``, ``**``, leading ``/``, trailing ``/``, ``!``."""
    text = text.rstrip("\n\r")
    if not text.strip() or text.startswith("#"):
        return None
    text = text.rstrip(" ")
    negated = text.startswith("!")
    if negated:
        text = text[1:]
    if text.startswith("\\"):
        text = text[1:]
    directory_only = text.endswith("/")
    text = text.rstrip("/")
    anchored = "/" in text
    text = text.lstrip("/")
    if text.startswith("./"):
        text = text[2:]
    regex = []
    i = 0
    while i < len(text):
        if text.startswith("**/", i):
            regex.append("(?:.*/)?")
            i += 3
        elif text.startswith("/**", i) and i + 3 == len(text):
            regex.append("/.*")
            i += 3
        elif text.startswith("**", i):
            regex.append(".*")
            i += 2
        elif text[i] == "*":
            regex.append("[^/]*")
            i += 1
        elif text[i] == "?":
            regex.append("[^/]")
            i += 1
        elif text[i] == "[":
            close = text.find("]", i + 1)
            if close == -1:
                regex.append(re.escape("["))
                i += 1
            else:
                body = text[i + 1:close]
                if body.startswith("!"):
                    body = "^" + body[1:]
                regex.append("[" + body.replace("\\", "\\\\") + "]")
                i = close + 1
        else:
            regex.append(re.escape(text[i]))
            i += 1
    whole_path = anchored or "**" in text or "[" in text
    return Pattern(re.compile("".join(regex) + r"\Z"), negated, directory_only, anchored, whole_path)


class PatternSet:
    """Patterns relative to one base directory; the last matching pattern decides."""

    def __init__(self, base: str, lines: Iterable[str]) -> None:
        self.base = os.path.abspath(base)
        self.patterns = [p for p in (compile_pattern(line) for line in lines) if p is not None]

    def relative(self, absolute: str) -> str:
        """An absolute path relative to the base, with "/" separators."""
        return os.path.relpath(absolute, self.base).replace(os.sep, "/")

    def match(self, path: str, is_dir: bool) -> Optional[bool]:
        """True: excluded, False: re-included by ``!``, None: no pattern speaks of it."""
        if not self.patterns:
            return None
        return self.match_relative(self.relative(os.path.abspath(path)), is_dir)

    def match_relative(self, rel: str, is_dir: bool) -> Optional[bool]:
        """`match` for a path already made relative to the base (`relative`)."""
        if rel.startswith("../"):
            return None
        name = rel.rsplit("/", 1)[-1]
        verdict = None
        for pattern in self.patterns:
            if pattern.directory_only and not is_dir:
                continue
            if (not pattern.anchored and pattern.regex.match(name)) or (
                pattern.whole_path and pattern.regex.match(rel)
            ):
                verdict = not pattern.negated
        return verdict


class Excluder:
    """Decides which paths are skipped: configured excludes, default dirs, .gitignore files."""

    def __init__(self, root: str, excludes: Sequence[str], respect_gitignore: bool = True) -> None:
        self.configured = PatternSet(root, excludes)
        self.respect_gitignore = respect_gitignore
        self._excluded_directories: Dict[str, bool] = {}  # see excluded_with_parents

    def excluded(self, path: str, is_dir: bool, gitignores: Sequence[PatternSet] = ()) -> bool:
        return _excluded(self.configured, gitignores, path, is_dir)

    def excluded_with_parents(self, path: str) -> bool:
        """For a file named explicitly: excluded itself or inside an excluded directory."""
        if self.excluded(path, is_dir=False):
            return True
        directory = os.path.dirname(os.path.abspath(path))
        verdict = self._excluded_directories.get(directory)
        if verdict is None:  # the same for every file of the directory: asked once
            verdict = any(self.configured.match(parent, True) for parent in _parents(path))
            self._excluded_directories[directory] = verdict
        return verdict


def _excluded(configured, gitignores, subject: str, is_dir: bool) -> bool:
    """A configured exclude wins; else the last .gitignore verdict (the nearest file's).

    `configured` (or None) and `gitignores` are PatternSets asked about a path, or, in a
    walk, their _Located views asked about an entry's name."""
    if configured is not None and configured.match(subject, is_dir):
        return True
    verdict = None
    for ignore in gitignores:
        result = ignore.match(subject, is_dir)
        if result is not None:
            verdict = result
    return bool(verdict)


class _Located:
    """A pattern set seen from one walked directory: the directory's relative path is
    computed once, and each entry's is that path and the entry's name."""

    __slots__ = ("patterns", "absolute", "prefix")

    def __init__(self, patterns: PatternSet, absolute: str) -> None:
        self.patterns = patterns
        self.absolute = absolute
        prefix: Optional[str] = patterns.relative(absolute)
        if prefix == ".":
            prefix = ""
        elif prefix == ".." or prefix.startswith("../"):
            prefix = None  # outside the base: an entry's path may lead back in, compute it whole
        else:
            prefix += "/"
        self.prefix = prefix

    def match(self, name: str, is_dir: bool) -> Optional[bool]:
        if self.prefix is None:
            return self.patterns.match_relative(
                self.patterns.relative(os.path.join(self.absolute, name)), is_dir
            )
        return self.patterns.match_relative(self.prefix + name, is_dir)


class _Scope:
    """What decides about one walked directory's entries: the configured excludes and the
    .gitignore files in force there (only the sets that have patterns)."""

    __slots__ = ("configured", "gitignores", "empty")

    def __init__(self, absolute: str, configured: PatternSet, gitignores: Sequence[PatternSet]) -> None:
        self.configured = _Located(configured, absolute) if configured.patterns else None
        self.gitignores = [_Located(ignore, absolute) for ignore in gitignores if ignore.patterns]
        self.empty = self.configured is None and not self.gitignores

    def excluded(self, name: str, is_dir: bool) -> bool:
        return not self.empty and _excluded(self.configured, self.gitignores, name, is_dir)


@functools.lru_cache(maxsize=None)
def _is_default_dir(name: str) -> bool:
    """Whether a directory of this name is skipped by default. The default patterns are
    names (no "/", "**" or brackets): the verdict depends on the name alone, remembered."""
    return bool(_default_dirs().match_relative(name, True))


@functools.lru_cache(maxsize=1)
def _default_dirs() -> PatternSet:
    # compiled on the first walk: a run given only files does not need them
    return PatternSet(os.sep, DEFAULT_EXCLUDES)


def _parents(path: str) -> Iterator[str]:
    current = os.path.dirname(os.path.abspath(path))
    while True:
        yield current
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent


def _read_gitignore(directory: str, record: Optional["Listing"] = None) -> Optional[PatternSet]:
    path = os.path.join(directory, ".gitignore")
    if record is not None:
        record.depend_on(path)
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return PatternSet(directory, handle.read().splitlines())
    except OSError:
        return None


def discover(
    paths: Sequence[str], excluder: Excluder, record: Optional["Listing"] = None
) -> Iterator[Tuple[str, Optional[str]]]:
    """Yield (path, error) for every Python file under `paths`; error is a one-line reason.

    Files named on the command line are subject to the configured excludes too (as in
    flake8), so a pre-commit hook honours them; .gitignore applies only inside walks.
    A file reached twice (named twice, through a symbolic link, in overlapping
    directories) is yielded once, the first time: files are told apart by their real path.
    `record`: where the walks note what they read (see `Listing`).
    """
    seen = set()
    for given in paths:
        if os.path.isdir(given):
            for path, problem, real in _walk(given, excluder, record):
                if real not in seen:
                    seen.add(real)
                    yield path, problem
        elif os.path.lexists(given):
            if excluder.excluded_with_parents(given):
                continue
            key = os.path.realpath(given)
            if key in seen:
                continue
            seen.add(key)
            if not os.path.exists(given):
                yield given, "broken symbolic link"
            else:
                yield given, None
        else:
            yield given, "no such file or directory"


def _walk(top: str, excluder: Excluder, record: Optional["Listing"] = None) -> Iterator[Tuple[str, Optional[str], str]]:
    """(path, error, real path) for the Python files below `top`: each directory's files
    in name order, then its subdirectories in name order (as os.walk, top down).

    Symbolic links to directories are not followed and virtualenvs (a pyvenv.cfg inside)
    are skipped, so below `top` every directory is a real one: a regular file's real path
    is its directory's real path and its name, with no system call. One os.scandir per
    directory answers the rest (which entries are directories, links, regular files).
    """
    above = _gitignores_above(top, record) if excluder.respect_gitignore else []
    top_absolute = os.path.abspath(top)
    # directories to list: (path as walked, absolute path, real path, .gitignore files above it)
    pending: List[Tuple[str, str, str, List[PatternSet]]] = [(top, top_absolute, os.path.realpath(top), above)]
    while pending:
        directory, absolute, real, inherited = pending.pop()
        if record is not None:
            record.depend_on(directory)  # (before it is listed: a change while listing shows)
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=operator.attrgetter("name"))
        except OSError:
            continue  # unreadable, or gone since it was listed: passed over, as os.walk does
        names = {entry.name for entry in entries}
        if "pyvenv.cfg" in names and absolute != top_absolute and os.path.exists(os.path.join(directory, "pyvenv.cfg")):
            continue  # a virtualenv (walked when it is the directory named)
        gitignores = inherited
        if excluder.respect_gitignore and ".gitignore" in names:
            own = _read_gitignore(directory, record)
            if own is not None:
                gitignores = inherited + [own]
        scope = _Scope(absolute, excluder.configured, gitignores)
        # os.path.join(directory, name) is os.path.join(directory, "") (a separator added
        # unless there is one) and the name: the first part is joined once per directory
        walked_in, absolute_in, real_in = (os.path.join(path, "") for path in (directory, absolute, real))
        subdirectories = []
        for entry in entries:
            name = entry.name
            if _is_dir(entry):
                if not (_is_symlink(entry) or scope.excluded(name, True) or _is_default_dir(name)):
                    subdirectories.append((walked_in + name, absolute_in + name, real_in + name, gitignores))
                continue
            if not name.endswith(PYTHON_SUFFIXES) or scope.excluded(name, False):
                continue
            full = walked_in + name
            if _is_regular_file(entry):
                yield full, None, real_in + name
                continue
            # A symbolic link, or not a regular file: ask the file system. (What it says may
            # change with nothing in the directory changing: a walk that asked is not reused.)
            if record is not None:
                record.reusable = False
            try:
                mode = os.stat(full).st_mode
            except FileNotFoundError:
                if os.path.islink(full):
                    yield full, "broken symbolic link", os.path.realpath(full)
                continue  # removed while walking
            except OSError as exc:
                yield full, f"cannot read: {exc.strerror or exc}", os.path.realpath(full)
                continue
            if stat.S_ISREG(mode):
                yield full, None, os.path.realpath(full)
            # FIFOs, sockets and devices named *.py are not source files: reading one
            # could block forever, so a walk passes them over.
        pending.extend(reversed(subdirectories))


# os.scandir answers these from the directory listing; when it must ask the file system
# and that fails, the entry counts as neither (as in os.walk).

def _is_dir(entry: "os.DirEntry[str]") -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_symlink(entry: "os.DirEntry[str]") -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _is_regular_file(entry: "os.DirEntry[str]") -> bool:
    """A regular file and not a link to one."""
    try:
        return entry.is_file(follow_symlinks=False)
    except OSError:
        return False


def _gitignores_above(top: str, record: Optional["Listing"] = None) -> List[PatternSet]:
    """.gitignore files of the directories enclosing `top`, up to its repository's root.

    Outside a git repository there are none: .gitignore files mean nothing there.
    """
    found = []
    current = os.path.abspath(top)
    while True:
        if record is not None:
            record.depend_on(current)  # a .git or .gitignore made or removed there
        if os.path.exists(os.path.join(current, ".git")):
            found.reverse()
            return found
        parent = os.path.dirname(current)
        if parent == current:
            return []
        current = parent
        ignore = _read_gitignore(current, record)
        if ignore is not None:
            found.append(ignore)


# ---- a walk kept for the next process ----------------------------------------------------------

# A modification time this close to now may still change within the file system's clock
# tick without showing: a walk that saw one is not kept, nor a file stamp (project.read_stamped).
RACY_NS = 2_000_000_000


@dataclass
class Listing:
    """The Python files one walk found, and what the walk read to find them.

    `depends_on`: path -> [mtime_ns, size] of every directory it listed (a file or
    directory added, removed or renamed there changes its time), of every directory it
    looked in for a ``.git`` or ``.gitignore``, and of every ``.gitignore`` it read, taken
    before it read them. While all are the same and the excludes are too, a walk would
    find the same files (`unchanged`). A walk that met a symbolic link or a special file,
    or a directory changed a moment ago, is not `reusable`.
    """

    files: List[str] = field(default_factory=list)
    depends_on: Dict[str, List[int]] = field(default_factory=dict)
    reusable: bool = True

    def depend_on(self, path: str) -> None:
        mark = self.depends_on[path] = _mark(path)
        if mark != _ABSENT and time.time_ns() - mark[0] < RACY_NS:
            self.reusable = False


# How a walk saw a path: [mtime_ns, size], or _ABSENT (it must still not be there).
_ABSENT = [-1, -1]


def _mark(path: str) -> List[int]:
    try:
        status = os.stat(path)
    except OSError:
        return list(_ABSENT)  # (a list of its own: a Listing's marks are plain JSON data)
    return [status.st_mtime_ns, status.st_size]


def list_files(top: str, excluder: Excluder) -> Listing:
    """The Python files below directory `top` (what `discover([top], excluder)` yields
    without a problem), with what the walk depended on."""
    listing = Listing()
    listing.files = [path for path, problem in discover([top], excluder, listing) if problem is None]
    return listing


def unchanged(depends_on: Dict[str, List[int]]) -> bool:
    """Is every path of a `Listing.depends_on` as it was (or still absent)?"""
    return all(_mark(path) == known for path, known in depends_on.items())
