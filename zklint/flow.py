"""Structured control flow of one scope's body, for rules that reason about order.

`Flow(root, parents)` indexes the statements of a module or a function body (not those
of nested functions, lambdas or classes) by the block they sit in; an expression's
statement is found by climbing the model's parent map when asked (rules ask about a few
expressions of a scope, not about all of them). A block is one
statement list: a function's body, an ``if``'s ``orelse``, a ``try``'s ``finalbody``,
one ``except`` handler's body, a loop's body, a ``with`` body, a ``match`` case.
From that index the questions lint rules ask about order have short answers:

- `statement_of(node)`: the innermost statement of this scope holding an expression
  (None for the parser's shared context and operator nodes, which have no parent).
- `blocks(node)`: the chain of blocks around it, outermost first; each `Block` knows
  its owner statement (None for the scope's own body), the field it fills
  (``body``/``orelse``/``handler``/``finalbody``/``case``) and its statements.
- `enclosing_try_finally(node)`, `enclosing_handler(node)`, `inside_loop(node, upto)`,
  `enclosing_loops(node, upto)`,
  `inside_guarded_try(node, upto)`: where in the structure a node runs.
- `sibling_in(block, node)`: the statement of `block` that contains `node`
  (straight-line order: a later sibling runs after an earlier one unless the earlier
  one leaves the block).
- `following(stmt)`: the statements after `stmt` in its block.
- `reraises(handler)`, `exits(stmts)`: whether a handler ends by raising, and whether
  a statement list always leaves its block (return/raise/break/continue).
- `before(a, b)`: source order of two nodes.

It is purely syntactic and does not follow calls. Rules use it conservatively: when a
shape is not covered (``match``, ``async with``, nested functions) they stay silent.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from zklint.model import child_nodes

_SCOPE_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_SCOPE_CLASSES = frozenset(_SCOPE_NODES)
_UNASKED = object()  # no answer kept for this node yet
_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_EXITS = (ast.Return, ast.Raise, ast.Break, ast.Continue)
_TRY_TYPES: Tuple[type, ...] = (ast.Try,) + ((ast.TryStar,) if hasattr(ast, "TryStar") else ())


@dataclass(frozen=True)
class Block:
    """One statement list of the scope."""

    owner: Optional[ast.AST]  # the compound statement (or ExceptHandler / match_case); None: the scope body
    field: str  # "body" | "orelse" | "handler" | "finalbody" | "case"
    stmts: Tuple[ast.stmt, ...]

    def index(self, stmt: ast.stmt) -> int:
        for i, s in enumerate(self.stmts):
            if s is stmt:
                return i
        raise ValueError("statement not in block")


def position(node: ast.AST) -> Tuple[int, int]:
    return (node.lineno, node.col_offset)


def before(a: ast.AST, b: ast.AST) -> bool:
    """Does `a` start before `b` in the source?"""
    return position(a) < position(b)


def end_position(node: ast.AST) -> Tuple[int, int]:
    return (node.end_lineno, node.end_col_offset)


def own_descendants(node: ast.AST) -> Iterator[ast.AST]:
    """`node` and everything under it, not descending into nested scopes."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if current is not node and isinstance(current, _SCOPE_NODES):
            continue
        stack.extend(child_nodes(current))


def exits(stmts: Sequence[ast.stmt]) -> bool:
    """Does this statement list always leave its block (return/raise/break/continue)?"""
    for stmt in stmts:
        if isinstance(stmt, _EXITS):
            return True
        if isinstance(stmt, ast.If) and stmt.orelse and exits(stmt.body) and exits(stmt.orelse):
            return True
    return False


def reraises(handler: ast.ExceptHandler) -> bool:
    """Does an ``except`` handler end by raising (``raise``, ``raise X from e``)?"""
    return bool(handler.body) and isinstance(handler.body[-1], ast.Raise)


_EXPECTED_RAISE_HELPERS = {"raises", "assertRaises", "assertRaisesRegex", "assertRaisesRegexp"}


def expects_exception(stmt: ast.AST) -> bool:
    """A ``with`` statement whose context manager is ``pytest.raises``/``assertRaises``."""
    if not isinstance(stmt, (ast.With, ast.AsyncWith)):
        return False
    for item in stmt.items:
        call = item.context_expr
        if isinstance(call, ast.Call):
            func = call.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _EXPECTED_RAISE_HELPERS:
                return True
    return False


class Flow:
    """The block structure of one module or function body."""

    def __init__(self, root: ast.AST, parents: Dict[ast.AST, ast.AST]) -> None:
        """`parents`: node -> parent node for the module holding `root` (the model's
        `parents()`): the statement holding an expression is found from it when asked."""
        self.root = root
        self._parents = parents
        self._block_of: Dict[int, Block] = {}  # id(stmt) -> its block
        # expression -> `statement_of`, once asked (keyed by the node: an id may be reused)
        self._stmt_of: Dict[ast.AST, Optional[ast.stmt]] = {}
        self.statements: List[ast.stmt] = []  # every own statement, in source order
        body = root.body if not isinstance(root, ast.Lambda) else []
        self._index_block(Block(None, "body", tuple(body)))
        self.statements.sort(key=position)

    # ---- indexing -------------------------------------------------------------------

    def _index_block(self, block: Block) -> None:
        for stmt in block.stmts:
            self._block_of[id(stmt)] = block
            self.statements.append(stmt)
            self._index_stmt(stmt)

    def _index_stmt(self, stmt: ast.stmt) -> None:
        children: List[Block] = []
        if isinstance(stmt, _TRY_TYPES):
            children.append(Block(stmt, "body", tuple(stmt.body)))
            for handler in stmt.handlers:
                children.append(Block(handler, "handler", tuple(handler.body)))
            children.append(Block(stmt, "orelse", tuple(stmt.orelse)))
            children.append(Block(stmt, "finalbody", tuple(stmt.finalbody)))
        elif isinstance(stmt, (ast.If, ast.For, ast.AsyncFor, ast.While)):
            children.append(Block(stmt, "body", tuple(stmt.body)))
            children.append(Block(stmt, "orelse", tuple(stmt.orelse)))
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            children.append(Block(stmt, "body", tuple(stmt.body)))
        elif type(stmt).__name__ == "Match":
            for case in stmt.cases:
                children.append(Block(case, "case", tuple(case.body)))
        for block in children:
            self._index_block(block)

    @staticmethod
    def _runs_here(stmt: ast.stmt, child: ast.AST, grandchild: Optional[ast.AST]) -> Optional[ast.AST]:
        """The expression of `stmt` (its child, or `grandchild` under that child) that is part
        of the statement's own code, or None: a block's statement, or code that runs elsewhere.

        A def or class runs its decorators and defaults or bases here, not its body (another
        scope's) nor its annotations; a compound statement its test/target/iter, ``with``
        items, ``except`` types and ``match`` subject and guards, not its patterns.
        """
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if child.__class__ is ast.arguments:
                defaults = stmt.args.defaults + stmt.args.kw_defaults
                return grandchild if any(grandchild is d for d in defaults) else None
            return child if any(child is d for d in stmt.decorator_list) else None
        if isinstance(stmt, ast.ClassDef):
            if child.__class__ is ast.keyword:
                return grandchild if grandchild is child.value else None
            return child if any(child is e for e in stmt.decorator_list + stmt.bases) else None
        if isinstance(stmt, _TRY_TYPES):
            is_type = child.__class__ is ast.ExceptHandler and grandchild is not None and grandchild is child.type
            return grandchild if is_type else None
        if isinstance(stmt, (ast.If, ast.For, ast.AsyncFor, ast.While)):
            return child if any(child is getattr(stmt, f, None) for f in ("test", "target", "iter")) else None
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            if child.__class__ is ast.withitem and grandchild is not None and (
                grandchild is child.context_expr or grandchild is child.optional_vars
            ):
                return grandchild
            return None
        if type(stmt).__name__ == "Match":
            if child is stmt.subject:
                return child
            if type(child).__name__ == "match_case" and grandchild is not None and grandchild is child.guard:
                return grandchild
            return None
        return child  # a simple statement: all of it runs here

    # ---- queries ---------------------------------------------------------------------

    def contains(self, node: ast.AST) -> bool:
        """Is `node` part of this scope's own code (not inside a nested function)?"""
        return self.statement_of(node) is not None

    def statement_of(self, node: ast.AST) -> Optional[ast.stmt]:
        """The innermost statement of this scope that contains `node`."""
        if id(node) in self._block_of:
            return node  # type: ignore[return-value]
        found = self._stmt_of.get(node, _UNASKED)
        if found is _UNASKED:
            found = self._stmt_of[node] = self._find_statement(node)
        return found  # type: ignore[return-value]

    def _find_statement(self, node: ast.AST) -> Optional[ast.stmt]:
        # Climb to the innermost own statement; the node is that statement's own code when
        # it sits in an expression that runs there and no function, lambda or class opens
        # between the two (one that is the whole expression runs here: `f = lambda: ...`).
        path = [node]
        parent = self._parents.get(node)
        while parent is not None and parent is not self.root:
            if id(parent) in self._block_of:
                grandchild = path[-2] if len(path) > 1 else None
                expr = self._runs_here(parent, path[-1], grandchild)
                if expr is None:
                    return None
                if any(n.__class__ in _SCOPE_CLASSES for n in path[1:path.index(expr)]):
                    return None
                return parent  # type: ignore[return-value]
            path.append(parent)
            parent = self._parents.get(parent)
        return None

    def block_of(self, stmt: ast.stmt) -> Optional[Block]:
        return self._block_of.get(id(stmt))

    def parent_statement(self, stmt: ast.stmt) -> Optional[ast.stmt]:
        """The compound statement whose block holds `stmt` (a ``try`` for its handlers)."""
        block = self.block_of(stmt)
        if block is None or block.owner is None:
            return None
        owner = block.owner
        if isinstance(owner, ast.ExceptHandler) or type(owner).__name__ == "match_case":
            return self._owner_of_clause(owner)
        return owner  # type: ignore[return-value]

    def _owner_of_clause(self, clause: ast.AST) -> Optional[ast.stmt]:
        for stmt in self.statements:
            if isinstance(stmt, _TRY_TYPES) and clause in stmt.handlers:
                return stmt
            if type(stmt).__name__ == "Match" and clause in stmt.cases:
                return stmt
        return None

    def blocks(self, node: ast.AST) -> List[Block]:
        """The blocks around `node`, outermost first (the scope body is the first)."""
        chain: List[Block] = []
        stmt = self.statement_of(node)
        while stmt is not None:
            block = self.block_of(stmt)
            if block is None:
                break
            chain.append(block)
            stmt = self.parent_statement(stmt)
        chain.reverse()
        return chain

    def sibling_in(self, block: Block, node: ast.AST) -> Optional[ast.stmt]:
        """The statement of `block` that is or contains `node`, if any."""
        stmt = self.statement_of(node)
        while stmt is not None:
            if self.block_of(stmt) == block and any(s is stmt for s in block.stmts):
                return stmt
            stmt = self.parent_statement(stmt)
        return None

    def following(self, stmt: ast.stmt) -> Tuple[ast.stmt, ...]:
        block = self.block_of(stmt)
        if block is None:
            return ()
        return block.stmts[block.index(stmt) + 1:]

    def expected_to_raise(self, node: ast.AST) -> bool:
        """Inside ``with pytest.raises(...)`` / ``with self.assertRaises(...)``: a test that
        wants the code to fail."""
        return any(expects_exception(stmt) for stmt in self.enclosing_with(node))

    def enclosing_with(self, node: ast.AST) -> List[ast.stmt]:
        """The with statements whose body holds `node`, innermost first."""
        found = []
        stmt = self.statement_of(node)
        parent = self.parent_statement(stmt) if stmt is not None else None
        while parent is not None:
            if isinstance(parent, (ast.With, ast.AsyncWith)):
                found.append(parent)
            parent = self.parent_statement(parent)
        return found

    def enclosing_try_finally(self, node: ast.AST) -> List[ast.stmt]:
        """Every ``try`` whose ``finally`` runs `node`, innermost first."""
        return [b.owner for b in reversed(self.blocks(node)) if b.field == "finalbody"]

    def enclosing_handler(self, node: ast.AST) -> List[ast.ExceptHandler]:
        """Every ``except`` handler that runs `node`, innermost first."""
        return [b.owner for b in reversed(self.blocks(node)) if b.field == "handler"]

    def _blocks_below(self, node: ast.AST, upto: Optional[Block]) -> List[Block]:
        chain = self.blocks(node)
        if upto is not None:
            for i, block in enumerate(chain):
                if block == upto:
                    return chain[i + 1:]
        return chain

    def inside_loop(self, node: ast.AST, upto: Optional[Block] = None) -> bool:
        """Does `node` run in a loop body (below block `upto`, when given)?"""
        return any(isinstance(b.owner, _LOOPS) and b.field == "body" for b in self._blocks_below(node, upto))

    def enclosing_loops(self, node: ast.AST, upto: Optional[Block] = None) -> List[ast.stmt]:
        """The loops whose body runs `node` (below block `upto`, when given), outermost first."""
        return [b.owner for b in self._blocks_below(node, upto) if isinstance(b.owner, _LOOPS) and b.field == "body"]

    def inside_guarded_try(self, node: ast.AST, upto: Optional[Block] = None) -> bool:
        """Does `node` run in the body of a ``try`` that has ``except`` handlers?"""
        return any(
            isinstance(b.owner, _TRY_TYPES) and b.field == "body" and b.owner.handlers
            for b in self._blocks_below(node, upto)
        )

    def straight_line_after(self, first: ast.stmt, node: ast.AST) -> bool:
        """Does `node` run after statement `first` by plain sequence?

        True when `node` is in a later sibling of `first` (or inside one), so every path
        through the block that reaches `node` went through `first` first, unless
        something in between left the block.
        """
        block = self.block_of(first)
        if block is None:
            return False
        sibling = self.sibling_in(block, node)
        return sibling is not None and block.index(sibling) > block.index(first)

    def between(self, first: ast.AST, last: ast.AST) -> Iterator[ast.AST]:
        """Own nodes that lie wholly after `first` ends and before `last` starts."""
        lo, hi = end_position(first), position(last)
        for sub in own_descendants(self.root):
            if sub is self.root or not hasattr(sub, "end_lineno") or sub.end_lineno is None:
                continue
            if lo <= position(sub) and end_position(sub) <= hi:
                yield sub
