"""Where a file's project starts, and the dotted module name a file has in it."""

from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

# What marks a project's root directory (the nearest one above a file wins).
ROOT_MARKERS = ("pyproject.toml", "setup.cfg", "setup.py", ".git")


class Layout:
    """Memoised answers about directories: a project root, a package's import root."""

    def __init__(self) -> None:
        self._roots: Dict[str, Optional[str]] = {}
        self._packages: Dict[str, bool] = {}

    def root_of(self, path: str) -> str:
        """The project root of `path`: the nearest directory at or above it holding one
        of ROOT_MARKERS; the file's own directory when there is none."""
        start = os.path.dirname(os.path.abspath(path)) if not os.path.isdir(path) else os.path.abspath(path)
        found = self.marked_root_of_directory(start)
        return found if found is not None else start

    def marked_root(self, path: str) -> Optional[str]:
        """The nearest directory at or above `path` holding a root marker, or None."""
        start = os.path.dirname(os.path.abspath(path)) if not os.path.isdir(path) else os.path.abspath(path)
        return self.marked_root_of_directory(start)

    def marked_root_of_directory(self, directory: str) -> Optional[str]:
        """`marked_root` of an absolute directory path, with no system call to ask whether
        it is a directory (a file's callers know); remembered per directory."""
        if directory in self._roots:
            return self._roots[directory]
        if any(os.path.exists(os.path.join(directory, marker)) for marker in ROOT_MARKERS):
            found: Optional[str] = directory
        else:
            parent = os.path.dirname(directory)
            found = None if parent == directory else self.marked_root_of_directory(parent)
        self._roots[directory] = found
        return found

    def _is_package(self, directory: str) -> bool:
        known = self._packages.get(directory)
        if known is None:
            known = self._packages[directory] = os.path.isfile(os.path.join(directory, "__init__.py"))
        return known

    def import_root_of(self, path: str) -> str:
        """The directory `path`'s module is imported from: the first one above it that is
        not a package (a script's own directory; `src/` or the root for a package)."""
        directory = os.path.dirname(os.path.abspath(path))
        while self._is_package(directory) and directory != os.path.dirname(directory):
            directory = os.path.dirname(directory)
        return directory

    def module_of(self, path: str, root: str) -> Tuple[str, bool]:
        """(dotted module name, is a package's __init__) for a file of the project at `root`.

        The name is what `import` would use with the file's import root on sys.path: the
        first directory above it that is not a package (so `src/` layouts and nested
        projects come out right). A file directly in a directory that is not a package is
        a top-level module.
        """
        path = os.path.abspath(path)
        directory, filename = os.path.split(path)
        stem = filename[:-3] if filename.endswith(".py") else filename
        is_package = stem == "__init__"
        parts = [] if is_package else [stem]
        while self._is_package(directory) and directory != os.path.dirname(directory):
            parts.append(os.path.basename(directory))
            parent = os.path.dirname(directory)
            if not parent.startswith(root) and directory == root:
                break
            directory = parent
        if not parts:  # an __init__.py outside any package: name it by its directory
            parts = [os.path.basename(os.path.dirname(path))]
        return ".".join(reversed(parts)), is_package
