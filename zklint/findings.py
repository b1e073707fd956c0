"""What the analysis reports and what a fix is made of: plain data shared by the rules,
the fixer, the output formats and the front ends.

It sits below all of them: rules build these values, the fixer applies them, the output
prints them, and none of them needs another's module to know their shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from zklint.source import SourceFile


class Safety(Enum):
    SAFE = "safe"  # keeps the program's intent: applied by --fix
    UNSAFE = "unsafe"  # changes control flow or threading: needs --unsafe-fixes


@dataclass(frozen=True)
class Edit:
    """Replace text[start:end] (character offsets) with `text`."""

    start: int
    end: int
    text: str


def edits_overlap(edit: Edit, taken: Sequence[Edit]) -> bool:
    """Would applying `edit` together with `taken` make the result depend on their order?"""
    for other in taken:
        if edit.start < other.end and other.start < edit.end:
            return True
        if edit.start == edit.end == other.start == other.end:
            return True  # two insertions at one point: their order would be a guess
        if edit.start == edit.end and other.start < edit.start < other.end:
            return True
        if other.start == other.end and edit.start < other.start < edit.end:
            return True
    return False


@dataclass(frozen=True)
class Import:
    """An import a fix's code needs: ``import module`` or ``from module import name``."""

    module: str
    name: Optional[str] = None


@dataclass(frozen=True)
class Fix:
    title: str
    safety: Safety
    # Computes the edits against the source the finding was made on; returns None when
    # the code turns out to be a shape the fix cannot rewrite safely.
    build: Callable[["SourceFile"], Optional[List[Edit]]] = field(compare=False, repr=False)
    imports: Tuple[Import, ...] = ()


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    line: int  # 1-based
    col: int  # 0-based, in characters
    end_line: int
    end_col: int
    fix: Optional[Fix] = field(default=None, compare=False)

    def sort_key(self) -> tuple:
        return (self.line, self.col, self.code)


def built_elsewhere(source: "SourceFile") -> None:
    """The `build` of a fix whose finding was made elsewhere (another process, an earlier
    run kept in the cache): only its title, safety and imports travel; nothing to apply."""
    return None
