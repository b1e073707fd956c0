"""Finding the files to check: walking directories with gitignore-style excludes."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

# Directories no one wants linted; like ruff's defaults. Matched by name at any depth.
DEFAULT_EXCLUDES = (
    ".bzr", ".direnv", ".eggs", ".git", ".git-rewrite", ".hg", ".ipynb_checkpoints", ".mypy_cache",
    ".nox", ".pants.d", ".pyenv", ".pytest_cache", ".pytype", ".ruff_cache", ".svn", ".tox", ".venv",
    ".vscode", "__pypackages__", "__pycache__", "_build", "buck-out", "build", "dist", "node_modules",
    "site-packages", "venv", "*.egg-info",
)

PYTHON_SUFFIXES = (".py", ".pyi")


@dataclass(frozen=True)
class Pattern:
    regex: "re.Pattern[str]"
    negated: bool
    directory_only: bool
    anchored: bool


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
    return Pattern(re.compile("".join(regex) + r"\Z"), negated, directory_only, anchored)


class PatternSet:
    """Patterns relative to one base directory; the last matching pattern decides."""

    def __init__(self, base: str, lines: Iterable[str]) -> None:
        self.base = os.path.abspath(base)
        self.patterns = [p for p in (compile_pattern(line) for line in lines) if p is not None]

    def match(self, path: str, is_dir: bool) -> Optional[bool]:
        """True: excluded, False: re-included by ``!``, None: no pattern speaks of it."""
        rel = os.path.relpath(os.path.abspath(path), self.base).replace(os.sep, "/")
        if rel.startswith("../"):
            return None
        name = rel.rsplit("/", 1)[-1]
        verdict = None
        for pattern in self.patterns:
            if pattern.directory_only and not is_dir:
                continue
            subject = rel if pattern.anchored else name
            if pattern.regex.match(subject) or (not pattern.anchored and pattern.regex.match(rel)):
                verdict = not pattern.negated
        return verdict


class Excluder:
    """Decides which paths are skipped: configured excludes, default dirs, .gitignore files."""

    def __init__(self, root: str, excludes: Sequence[str], respect_gitignore: bool = True) -> None:
        self.configured = PatternSet(root, excludes)
        self.respect_gitignore = respect_gitignore

    def excluded(self, path: str, is_dir: bool, gitignores: Sequence[PatternSet] = ()) -> bool:
        if self.configured.match(path, is_dir):
            return True
        verdict = None
        for ignore in gitignores:
            result = ignore.match(path, is_dir)
            if result is not None:
                verdict = result
        return bool(verdict)

    def excluded_with_parents(self, path: str) -> bool:
        """For a file named explicitly: excluded itself or inside an excluded directory."""
        if self.excluded(path, is_dir=False):
            return True
        return any(self.configured.match(parent, True) for parent in _parents(path))


# Unanchored patterns match by name, so the base directory does not matter.
_DEFAULT_DIRS = PatternSet(os.sep, DEFAULT_EXCLUDES)


def _parents(path: str) -> Iterator[str]:
    current = os.path.dirname(os.path.abspath(path))
    while True:
        yield current
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent


def _read_gitignore(directory: str) -> Optional[PatternSet]:
    path = os.path.join(directory, ".gitignore")
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return PatternSet(directory, handle.read().splitlines())
    except OSError:
        return None


def _is_virtualenv(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, "pyvenv.cfg"))


def discover(paths: Sequence[str], excluder: Excluder) -> Iterator[Tuple[str, Optional[str]]]:
    """Yield (path, error) for every Python file under `paths`; error is a one-line reason.

    Files named on the command line are subject to the configured excludes too (as in
    flake8), so a pre-commit hook honours them; .gitignore applies only inside walks.
    """
    seen = set()
    for given in paths:
        if os.path.isdir(given):
            for path, problem in _walk(given, excluder):
                key = os.path.realpath(path)
                if key not in seen:
                    seen.add(key)
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


def _walk(top: str, excluder: Excluder) -> Iterator[Tuple[str, Optional[str]]]:
    gitignore_stack: List[Tuple[str, PatternSet]] = []
    parents = _gitignores_above(top) if excluder.respect_gitignore else []
    for directory, dirnames, filenames in os.walk(top, followlinks=False):
        while gitignore_stack and not (directory + os.sep).startswith(gitignore_stack[-1][0] + os.sep):
            gitignore_stack.pop()
        if excluder.respect_gitignore:
            own = _read_gitignore(directory)
            if own is not None:
                gitignore_stack.append((directory, own))
        active = parents + [ignore for _, ignore in gitignore_stack]
        kept = []
        for name in sorted(dirnames):
            full = os.path.join(directory, name)
            if os.path.islink(full) or excluder.excluded(full, True, active) or _is_virtualenv(full):
                continue
            if _DEFAULT_DIRS.match(full, True):
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            if not name.endswith(PYTHON_SUFFIXES):
                continue
            full = os.path.join(directory, name)
            if excluder.excluded(full, False, active):
                continue
            try:
                mode = os.stat(full).st_mode
            except FileNotFoundError:
                if os.path.islink(full):
                    yield full, "broken symbolic link"
                continue  # removed while walking
            except OSError as exc:
                yield full, f"cannot read: {exc.strerror or exc}"
                continue
            if stat.S_ISREG(mode):
                yield full, None
            # FIFOs, sockets and devices named *.py are not source files: reading one
            # could block forever, so a walk passes them over.


def _gitignores_above(top: str) -> List[PatternSet]:
    """.gitignore files of the directories enclosing `top`, up to its repository's root.

    Outside a git repository there are none: .gitignore files mean nothing there.
    """
    found = []
    current = os.path.abspath(top)
    while True:
        if os.path.exists(os.path.join(current, ".git")):
            found.reverse()
            return found
        parent = os.path.dirname(current)
        if parent == current:
            return []
        current = parent
        ignore = _read_gitignore(current)
        if ignore is not None:
            found.append(ignore)
