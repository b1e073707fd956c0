"""What a rule is, what it reports, and how rules are registered.

A rule is one class: its code, name, message, documentation and ``check``. ``check``
reads the shared `ModuleModel` and yields `Finding`s; a finding may carry a `Fix`, which
is data (a title, a safety class, and a function that computes the edits on demand), so
a check-only run never pays for building a fix.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Callable, ClassVar, Dict, Iterator, List, Optional, Tuple, Type

from zklint.findings import Edit, Finding, Fix, Import, Safety

if TYPE_CHECKING:
    from zklint.model import ModuleModel
    from zklint.source import SourceFile


class Context:
    """What a rule's ``check`` receives: the model, the source (when there is one) and options."""

    def __init__(self, model: "ModuleModel", source: Optional["SourceFile"], options: Dict[str, object]) -> None:
        self.model = model
        self.source = source
        self.options = options


class Rule:
    """Base class: subclasses set the class attributes and implement `check`."""

    code: ClassVar[str]
    name: ClassVar[str]
    summary: ClassVar[str]  # one line: what it finds
    why: ClassVar[str]  # the production failure and the ZooKeeper facts behind it
    example: ClassVar[str]  # code the rule flags
    use_instead: ClassVar[str]  # the fixed or recommended code
    fix_safety: ClassVar[Optional[Safety]] = None
    fix_safety_reason: ClassVar[str] = ""
    limits: ClassVar[str] = ""  # known false negatives and why the rule stays silent there
    # Settings read from [tool.zklint] (and flake8's config): key -> (type, default, help).
    options: ClassVar[Dict[str, Tuple[type, object, str]]] = {}

    def option(self, key: str):
        """This rule's setting `key`: the configured value, else its default."""
        return self.context.options.get(key, self.options[key][1])

    def __init__(self, context: Context) -> None:
        self.context = context
        self.model = context.model

    def check(self) -> Iterator[Finding]:
        raise NotImplementedError

    def finding(
        self,
        node: ast.AST,
        message: str,
        fix_title: Optional[str] = None,
        build: Optional[Callable[["SourceFile"], Optional[List[Edit]]]] = None,
        imports: Tuple[Import, ...] = (),
        safety: Optional[Safety] = None,
    ) -> Finding:
        fix = None
        if build is not None:
            fix = Fix(fix_title or "fix", safety or self.fix_safety or Safety.UNSAFE, build, imports)
        source = self.context.source
        if source is not None:
            col = source.char_col(node.lineno, node.col_offset)
            end_col = source.char_col(node.end_lineno, node.end_col_offset)
        else:
            col, end_col = node.col_offset, node.end_col_offset
        return Finding(self.code, with_doc_pointer(self.code, message), node.lineno, col, node.end_lineno, end_col, fix)


def doc_pointer(code: str) -> str:
    """Where a finding's reader learns more: the command that prints the rule's docs."""
    return f"zklint rule {code}"


def with_doc_pointer(code: str, message: str) -> str:
    """Every finding's message ends with its docs pointer, added here once for all rules."""
    suffix = f" ({doc_pointer(code)})"
    return message if message.endswith(suffix) else message + suffix


REGISTRY: Dict[str, Type[Rule]] = {}


def register(cls: Type[Rule]) -> Type[Rule]:
    if cls.code in REGISTRY:
        raise RuntimeError(f"duplicate rule code {cls.code}")
    REGISTRY[cls.code] = cls
    return cls
