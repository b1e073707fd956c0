"""ZK1: ephemeral nodes, locks and session loss."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

from zklint.lazy_import import libcst as cst  # imported on first use: fixes only

from zklint.fixer import (
    FixError, insert_lines_edit, parse_expression, parse_statement, statements_edit, with_block_indent,
)
from zklint.model import (
    KAZOO_RETRY,
    KAZOO_STATE,
    CallIndex,
    CallSite,
    ClientKey,
    FunctionNode,
    ListenerReaction,
    ModuleModel,
    Scope,
    child_nodes,
    keyword,
    own_nodes,
    walk,
)
from zklint.facts import USES
from zklint.findings import Edit, Finding, Import, Safety
from zklint.rules.base import Rule, register
from zklint.rules.index import calls_named, calls_to

_EXC = "kazoo.exceptions."
# Handler types that catch NodeExistsError, and kazoo exceptions that do not.
_CATCHES_NODE_EXISTS = {
    _EXC + "NodeExistsError", _EXC + "NodeExistsException", _EXC + "ZookeeperError", _EXC + "KazooException",
}
_NODE_EXISTS = {_EXC + "NodeExistsError", _EXC + "NodeExistsException"}
_CONNECTION_LOSS = {_EXC + "ConnectionLoss", _EXC + "ConnectionLossException"}
_BUILTIN_BASES = {"Exception", "BaseException"}
# Attributes whose use in a handler shows it looks at the node's owner.
_OWNER_ATTRS = {"ephemeralOwner", "owner_session_id", "client_id", "_session_id"}
_EXIT_CALLS = {"sys.exit", "os._exit"}
_LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}

# Client calls that remove a node or replace its data: a re-create after a session
# loss would undo them.
_NODE_CHANGES = {"delete", "delete_async", "set", "set_async"}
_RETRY_CLASSES = {KAZOO_RETRY, "kazoo.client.KazooRetry"}  # kazoo.client re-exports it
_LOCK_METHODS = {"Lock", "ReadLock", "WriteLock", "Semaphore"}
_LOCK_CLASSES = {f"kazoo.recipe.lock.{name}" for name in _LOCK_METHODS}
_ELECTION_CLASS = "kazoo.recipe.election.Election"
_RETRY_DECORATOR_ROOTS = {"tenacity", "retrying", "backoff", "retry", "retry_decorator"}
# Keywords of those decorators that choose which exceptions are retried.
_EXCEPTION_FILTERS = {"retry", "retry_on_exception", "exceptions", "exception"}


def _true(node: Optional[ast.AST]) -> Optional[bool]:
    """True/False for a bool literal or an absent argument (False); None when unknown."""
    if node is None:
        return False
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return node.value
    return None


def is_retry_object(model: ModuleModel, func: ast.expr, scope: Scope) -> bool:
    """``KazooRetry(...)``, or a name or ``self.<attr>`` bound only to such objects."""
    if isinstance(func, ast.Call):
        return model.qualname(func.func) in _RETRY_CLASSES
    if isinstance(func, (ast.Name, ast.Attribute)):
        values = model.bound_values(func, scope)
        return bool(values) and all(
            isinstance(v, ast.Call) and model.qualname(v.func) in _RETRY_CLASSES for v, _ in values
        )
    return False


class RetryCalls:
    """The module's calls that run a function under a retry, found once per model: ZK1's
    creates, the retried functions and ZK502 each ask about every call."""

    def __init__(self, model: ModuleModel) -> None:
        self.of_objects: List[CallSite] = []  # a KazooRetry object called with a function
        self.all: List[CallSite] = []  # those and ``client.retry(f, ...)``, in `model.calls` order
        # A callee named by none of these cannot be bound only to retry objects: its
        # bindings are not looked up, and only calls of them (or of `retry`, or of a callee
        # that is neither a name nor an attribute: ``KazooRetry()(f)``) are looked at.
        names = self._retry_object_names(model)
        self.callee_names = names | {"retry"}  # every name a retry call's callee can have
        Call, Name, Attribute = ast.Call, ast.Name, ast.Attribute
        for site in CallIndex.of(model).calls(names=self.callee_names, others=True):
            call, scope = site.node, site.scope
            if not call.args:
                continue
            func = call.func
            kind = func.__class__
            named = kind is Call or (kind is Name and func.id in names) or (kind is Attribute and func.attr in names)
            of_object = named and is_retry_object(model, func, scope)
            if of_object:
                self.of_objects.append(site)
            client_retry = kind is Attribute and func.attr == "retry"
            if of_object or (client_retry and model.client_key(func.value, scope) is not None):
                self.all.append(site)
        self.ids = {id(site.node) for site in self.all}  # for "is this call a retry call?"

    @staticmethod
    def _retry_object_names(model: ModuleModel) -> set:
        """Every name and attribute name the module binds a ``KazooRetry(...)`` to, anywhere.

        Every call is in `model.calls`, and the model binds a call's value to a name or an
        attribute only as the value of an assignment (``=``, annotated, ``:=``) whose
        target it is: those targets' names are the ones `bound_values` can find.
        """
        found = set()
        parents = model.parents()
        for site in calls_to(model, _RETRY_CLASSES):
            call = site.node
            parent = parents.get(call)
            if parent.__class__ is ast.Assign and parent.value is call:
                targets = parent.targets
            elif parent.__class__ in (ast.AnnAssign, ast.NamedExpr) and parent.value is call:
                targets = [parent.target]
            else:
                continue
            found.update(t.id if t.__class__ is ast.Name else t.attr for t in targets
                         if t.__class__ is ast.Name or t.__class__ is ast.Attribute)
        return found

    @classmethod
    def of(cls, model: ModuleModel) -> "RetryCalls":
        return model.shared("_zk_retry_calls", lambda: cls(model))


def retried_functions(model: ModuleModel) -> Dict[int, str]:
    """id(def) -> how it is retried, for every function of the module run under a retry:
    passed to client.retry/a KazooRetry object, or decorated by tenacity/retrying/backoff
    with an exception filter that lets ConnectionLoss through.

    Computed once per model (ZK104 and ZK502 both ask): read only.
    """
    return model.shared("_zk_retried_functions", lambda: _find_retried_functions(model))


def _find_retried_functions(model: ModuleModel) -> Dict[int, str]:
    found: Dict[int, str] = {}
    for site in RetryCalls.of(model).all:
        target = model.resolve_function(site.node.args[0], site.scope)
        if target is not None:
            found[id(target)] = "in a function run under a retry"
    for node in model.scopes:  # every def opens a scope
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                if retries_connection_loss(model, deco):
                    found[id(node)] = "in a function with a retry decorator"
    return found


def retries_connection_loss(model: ModuleModel, deco: ast.expr) -> bool:
    """A tenacity/retrying/backoff decorator whose exception filter lets ConnectionLoss through."""
    target = deco.func if isinstance(deco, ast.Call) else deco
    qual = model.qualname(target) or ""
    root = qual.split(".")[0]
    if root not in _RETRY_DECORATOR_ROOTS or qual.endswith("on_predicate"):
        return False
    if not isinstance(deco, ast.Call):
        return True  # bare @retry: every exception is retried
    filters = list(deco.args[1:]) if root == "backoff" else []
    filters += [kw.value for kw in deco.keywords if kw.arg in _EXCEPTION_FILTERS]
    if not filters:
        return root != "backoff"
    for expr in filters:
        for node in walk(expr):
            name = model.qualname(node) if isinstance(node, (ast.Name, ast.Attribute)) else None
            if name in _CONNECTION_LOSS or name in (_EXC + "ZookeeperError", _EXC + "KazooException"):
                return True
            if (isinstance(node, ast.Name) and node.id in _BUILTIN_BASES
                    and model.lookup(node.id, model.module_scope) is None):
                return True
    return False


@dataclass
class Create:
    """One ``create`` on a client, direct or through a retry."""

    site_scope: Scope
    node: ast.Call  # the call the program runs: create(...), retry(create, ...), create_async(...).get()
    create: ast.Call  # the call holding the create's own arguments
    offset: int  # how many positional arguments precede the create's (1 for retry(create, ...))
    key: ClientKey
    client: ast.expr  # the client expression the create is made on
    retried: bool
    ephemeral: Optional[bool]
    sequence: Optional[bool]

    @property
    def path(self) -> Optional[ast.expr]:
        return self.arg(0, "path")

    def arg(self, position: int, name: str) -> Optional[ast.expr]:
        for kw in self.create.keywords:
            if kw.arg == name:
                return kw.value
        args = self.create.args[self.offset:]
        if len(args) > position and not any(isinstance(a, ast.Starred) for a in args[: position + 1]):
            return args[position]
        return None

    @property
    def has_star_args(self) -> bool:
        return any(isinstance(a, ast.Starred) for a in self.create.args) or any(
            kw.arg is None for kw in self.create.keywords
        )


class _Ephemeral:
    """Facts the ZK1 rules share, computed once per model."""

    def __init__(self, model: ModuleModel) -> None:
        self.model = model
        self.parents = model.parents()
        self._creates: Optional[List[Create]] = None
        self._hidden: Dict[ClientKey, bool] = {}
        self._handed_on_keys: Optional[set] = None
        self._reconciling: Dict[ast.AST, bool] = {}  # function -> checks_owner_nearby's answer
        self._reactions: Dict[ast.AST, ListenerReaction] = {}  # listener function -> its reaction
        # handler -> its body mentions the owner (ZK101 and ZK102 ask of each handler around their creates)
        self._owner_checks: Dict[ast.ExceptHandler, bool] = {}

    @classmethod
    def of(cls, model: ModuleModel) -> "_Ephemeral":
        return model.shared("_zk1_facts", lambda: cls(model))

    # ---- creates -----------------------------------------------------------------------

    def creates(self) -> List[Create]:
        if self._creates is None:
            self._creates = sorted(self._find_creates(), key=lambda c: (c.node.lineno, c.node.col_offset))
        return self._creates

    def _find_creates(self) -> Iterator[Create]:
        model = self.model
        for site, key, method in model.client_calls():
            call = site.node
            if method in ("create", "create_async"):
                node = call
                if method == "create_async":
                    parent = self.parents.get(call)
                    grand = self.parents.get(parent) if parent is not None else None
                    if (isinstance(parent, ast.Attribute) and parent.attr == "get" and isinstance(grand, ast.Call)
                            and grand.func is parent):
                        node = grand  # create_async(...).get(): errors raise here, like create()
                yield self._make(site.scope, node, call, 0, key, call.func.value, False)
            elif method == "retry" and call.args:
                created = self._retried_create(call.args[0], site.scope)
                if created is not None:
                    yield self._make(site.scope, call, call, 1, created[0], created[1], True)
        for site in RetryCalls.of(model).of_objects:
            call = site.node
            created = self._retried_create(call.args[0], site.scope)
            if created is not None:
                yield self._make(site.scope, call, call, 1, created[0], created[1], True)

    def _retried_create(self, func: ast.expr, scope: Scope) -> Optional[Tuple[ClientKey, ast.expr]]:
        if isinstance(func, ast.Attribute) and func.attr == "create":
            key = self.model.client_key(func.value, scope)
            if key is not None:
                return key, func.value
        return None

    @staticmethod
    def _make(scope, node, create, offset, key, client, retried) -> Create:
        probe = Create(scope, node, create, offset, key, client, retried, None, None)
        if probe.has_star_args:
            given = keyword(create, "ephemeral")
            ephemeral = True if given is not None and _true(given.value) else None
            return Create(scope, node, create, offset, key, client, retried, ephemeral, None)
        return Create(
            scope, node, create, offset, key, client, retried,
            _true(probe.arg(3, "ephemeral")), _true(probe.arg(4, "sequence")),
        )

    def ephemeral_creates(self) -> List[Create]:
        return [c for c in self.creates() if c.ephemeral]

    # ---- structure ---------------------------------------------------------------------

    def ancestors(self, node: ast.AST) -> Iterator[Tuple[ast.AST, ast.AST]]:
        """(child, parent) pairs up to the enclosing function or lambda (excluded)."""
        child = node
        while True:
            parent = self.parents.get(child)
            if parent is None or isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                return
            yield child, parent
            child = parent

    def enclosing_function(self, node: ast.AST) -> Optional[ast.AST]:
        parent = self.parents.get(node)
        while parent is not None and not isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            parent = self.parents.get(parent)
        return parent

    def in_owner_check(self, node: ast.AST) -> bool:
        """Inside an except handler that already looks at the node's owner (a fix's re-create)."""
        for child, parent in self.ancestors(node):
            if isinstance(parent, ast.ExceptHandler) and child in parent.body and self.handler_mentions_owner(parent):
                return True
        return False

    def handler_mentions_owner(self, handler: ast.ExceptHandler) -> bool:
        """`_mentions_owner(handler.body)`, once per handler."""
        known = self._owner_checks.get(handler)
        if known is None:
            known = self._owner_checks[handler] = _mentions_owner(handler.body)
        return known

    # ---- NodeExistsError handling ---------------------------------------------------------------

    def catching_handler(self, create: Create):
        """(try, handler, handler names NodeExistsError alone) of the handler that catches it."""
        for child, parent in self.ancestors(create.node):
            if not isinstance(parent, ast.Try) or child not in parent.body:
                continue
            for handler in parent.handlers:
                verdict = self._catches(handler.type, create.site_scope)
                if verdict is None:
                    return None
                if verdict:
                    direct = handler.type is not None and self.model.qualname(handler.type) in _NODE_EXISTS
                    return parent, handler, direct
        return None

    def _catches(self, expr: Optional[ast.expr], scope: Scope) -> Optional[bool]:
        """Does an except clause of this type catch NodeExistsError? None: cannot tell."""
        if expr is None:
            return True
        if isinstance(expr, ast.Tuple):
            verdicts = [self._catches(e, scope) for e in expr.elts]
            if any(v is True for v in verdicts):
                return True
            return False if all(v is False for v in verdicts) else None
        qual = self.model.qualname(expr)
        if qual is not None:
            if qual in _CATCHES_NODE_EXISTS:
                return True
            if qual.startswith("kazoo."):
                return False
            return None
        if isinstance(expr, ast.Name) and self.model.lookup(expr.id, scope) is None:
            # a builtin exception: only Exception and BaseException catch kazoo's errors
            return expr.id in _BUILTIN_BASES if expr.id[:1].isupper() else None
        return None

    def signals_failure(self, try_node: ast.Try, handler: ast.ExceptHandler) -> bool:
        """The handler reports "not created": ``return False`` in it, or right after the try."""
        exits = _nodes_of(handler.body, _EXIT_TYPES)
        if any(_returns_false(n) for n in exits):
            return True
        if exits:
            return False
        parent = self.parents.get(try_node)
        for field_name in ("body", "orelse", "finalbody"):
            block = getattr(parent, field_name, None)
            if isinstance(block, list) and try_node in block:
                for stmt in block[block.index(try_node) + 1:]:
                    if isinstance(stmt, ast.Return):
                        return _returns_false(stmt)
                    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
                        return False
        return False

    def checks_owner_nearby(self, node: ast.AST) -> bool:
        """The enclosing function compares session ids itself (a reconciling function)."""
        func = self.enclosing_function(node)
        if func is None or isinstance(func, ast.Lambda):
            return False
        known = self._reconciling.get(func)
        if known is None:
            known = self._reconciling[func] = self._compares_owner_outside_handlers(func)
        return known

    def _compares_owner_outside_handlers(self, func: ast.AST) -> bool:
        comparisons = [n for n in own_nodes(func) if n.__class__ is ast.Compare and _compares_owner(n)]
        # outside except handlers: a handler's check is the ZK101 pattern, not reconciliation
        return any(not self._in_handler_below(n, func) for n in comparisons)

    def _in_handler_below(self, node: ast.AST, func: ast.AST) -> bool:
        """Is `node` inside an except handler that is inside `func`?"""
        parent = self.parents.get(node)
        while parent is not None and parent is not func:
            if parent.__class__ is ast.ExceptHandler:
                return True
            parent = self.parents.get(parent)
        return False

    # ---- clients whose listeners may be out of sight -----------------------------------------

    def hidden_listeners(self, key: ClientKey) -> bool:
        """True when listeners may be registered where the module cannot see them."""
        if key not in self._hidden:
            self._hidden[key] = self._compute_hidden(key)
        return self._hidden[key]

    def _compute_hidden(self, key: ClientKey) -> bool:
        if key.kind not in ("name", "attr"):
            return True
        if key.kind == "name" and key.name in key.scope.params:
            # A parameter: the caller owns the client and may add its listeners, unless
            # the project shows every caller and registers no listener anywhere.
            facts = self.model.facts
            qual = self.model.local_qualname(key.scope.node)
            return facts.project_has_listeners or qual not in facts.visible_callers
        return key in self._handed_on()

    def _handed_on(self) -> set:
        """Every client key the module passes, returns, stores or aliases somewhere.

        Built from the model's reads of client variables (each read's parent says what
        happens to it) plus its `a = b` statements: no walk of the module of its own.
        """
        if self._handed_on_keys is not None:
            return self._handed_on_keys
        model = self.model
        found: set = set()
        parents = model.parents()
        Call, Starred, keyword, Dict = ast.Call, ast.Starred, ast.keyword, ast.Dict
        returns = (ast.Return, ast.Yield, ast.YieldFrom)
        containers = (ast.Tuple, ast.List, ast.Set)

        def to_non_kazoo(call: ast.AST) -> bool:
            return call.__class__ is Call and not (model.qualname(call.func) or "").startswith("kazoo.")

        for node, scope, key in model.client_reads():
            if key in found:
                continue
            parent = parents.get(node)
            kind = parent.__class__
            if kind is Call:
                # recipes take the client; so does a callee the project shows only using it
                handed = parent.func is not node and to_non_kazoo(parent)
                handed = handed and model.call_effect(parent, node, scope) != USES
            elif kind is Starred or kind is keyword:  # f(*zk) / f(client=zk)
                call = parents.get(parent)
                handed = to_non_kazoo(call) and (kind is Starred or model.call_effect(call, node, scope) != USES)
            elif kind in returns or kind in containers:
                handed = True
            elif kind is Dict:
                handed = any(value is node for value in parent.values)
            else:
                continue  # assignments are below; anything else keeps the client here
            if handed:
                found.add(key)
        for assign, scope in model.assignments:
            if assign.value.__class__ not in (ast.Name, ast.Attribute):
                continue
            # assigned to a client: an alias of another client variable, whose listeners
            # count too; assigned elsewhere: the client is handed on
            targets = {model.read_key(target, scope) for target in assign.targets}
            found.update(k for k in targets if k is not None)
            handed = model.read_key(assign.value, scope)
            if handed is not None and handed not in targets:
                found.add(handed)
        self._handed_on_keys = found
        return found

    def reacting_listener(self, key: ClientKey, states: Tuple[str, ...]) -> bool:
        """Does a state listener on `key` react to one of `states` (or may one be unseen)?"""
        if self.hidden_listeners(key):
            return True
        for _, func in self.model.state_listeners(key):
            reaction = self.listener_reaction(func)
            if any(reaction.reacts_to(state) for state in states):
                return True
        return False

    def listener_reaction(self, func: Optional[FunctionNode]) -> ListenerReaction:
        """`model.listener_reaction`, analysed once per listener: ZK102 and ZK103 both ask."""
        if func is None:
            return self.model.listener_reaction(func)
        reaction = self._reactions.get(func)
        if reaction is None:
            reaction = self._reactions[func] = self.model.listener_reaction(func)
        return reaction


def _dedent_continuation(source, node: ast.AST) -> str:
    """The node's text, its continuation lines made relative to its first line's indentation
    (libcst re-indents them under the block the copy goes to)."""
    line = source.line_text(node.lineno)
    indent = line[: len(line) - len(line.lstrip())]
    lines = source.segment(node).splitlines(keepends=True)
    return "".join(lines[:1] + [ln[len(indent):] if ln.startswith(indent) else ln for ln in lines[1:]])


def _walk_outside_defs(node: ast.AST) -> Iterator[ast.AST]:
    """ast.walk, not entering nested functions, lambdas or classes (code that runs later)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        stack.extend(ast.iter_child_nodes(current))


def _returns_false(node: ast.AST) -> bool:
    return isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) and node.value.value is False


def _nodes_of(roots: List[ast.AST], classes: frozenset) -> List[ast.AST]:
    """Every node of these trees (nested functions included) whose class is one of
    `classes`, in no particular order: the set `walk` would find, without its generator."""
    found = []
    stack = list(roots)
    pop, push = stack.pop, stack.extend
    while stack:
        node = pop()
        if node.__class__ in classes:
            found.append(node)
        push(child_nodes(node))
    return found


_EXIT_TYPES = frozenset({ast.Return, ast.Raise, ast.Continue, ast.Break})


def _mentions_owner(stmts: List[ast.stmt]) -> bool:
    """A comparison involving a session id (``stat.ephemeralOwner != zk.client_id[0]``)."""
    for stmt in stmts:
        for node in walk(stmt):
            if isinstance(node, ast.Compare) and _compares_owner(node):
                return True
    return False


def _compares_owner(node: ast.Compare) -> bool:
    """A session id compared with something that may be another session id. Comparing
    ``ephemeralOwner`` with a constant (``== 0``: "is it ephemeral at all") is no check."""
    sides = [node.left] + node.comparators
    owner = [s for s in sides if any(isinstance(n, ast.Attribute) and n.attr in _OWNER_ATTRS for n in walk(s))]
    return bool(owner) and any(s is not owner[0] and not isinstance(s, ast.Constant) for s in sides)


def _simple_expr(node: Optional[ast.AST]) -> bool:
    """Cheap to evaluate twice with the same result: names, attributes, literals, f-strings of those."""
    if isinstance(node, ast.Name):
        return True
    if isinstance(node, ast.Attribute):
        return _simple_expr(node.value) and not isinstance(node.value, ast.Constant)
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (str, bytes))
    if isinstance(node, ast.JoinedStr):
        return all(
            isinstance(v, ast.Constant)
            or (isinstance(v, ast.FormattedValue) and v.format_spec is None and _simple_expr(v.value))
            for v in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return _simple_expr(node.left) and (_simple_expr(node.right) or (
            isinstance(node.right, ast.Tuple) and all(_simple_expr(e) for e in node.right.elts)))
    return False


def _free_name(model: ModuleModel, scope: Scope, wanted: str, taken: set = frozenset()) -> str:
    """`wanted`, or `wanted_2`, ..., unbound where it will be used."""
    candidate, n = wanted, 1
    while candidate in taken or model.lookup(candidate, scope) is not None or _name_used(scope, candidate):
        n += 1
        candidate = f"{wanted}_{n}"
    return candidate


def _name_used(scope: Scope, name: str) -> bool:
    for node in walk(scope.node):
        if isinstance(node, ast.Name) and node.id == name:
            return True
    return False


def _line_indent(source, node: ast.AST) -> Optional[str]:
    line = source.line_text(node.lineno)
    indent = line[: source.char_col(node.lineno, node.col_offset)]
    return indent if not indent.strip() else None


# ---------------------------------------------------------------------------------------------
# ZK101


@register
class EphemeralOwnerNotChecked(Rule):
    code = "ZK101"
    name = "ephemeral-owner-not-checked"
    summary = "An ephemeral create's NodeExistsError is swallowed without checking who owns the node."
    why = (
        "A process that crashed and restarted before its old session expired finds \"its\" "
        "ephemeral node still there: create raises NodeExistsError. Treating that as "
        "\"already registered\" is wrong: the node belongs to the dead session and the server "
        "deletes it when that session times out, so the process silently disappears from the "
        "registry (or loses its leadership/lock marker) while it keeps running. The handler "
        "must compare the node's stat.ephemeralOwner with client.client_id[0] and, when "
        "another session owns it, delete it and create it again. NodeExistsError is also "
        "caught by `except ZookeeperError`, `except KazooException`, `except Exception` and a "
        "bare `except:`."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "from kazoo.exceptions import NodeExistsError\n"
        "\n"
        "def register(zk: KazooClient, path: str, data: bytes) -> None:\n"
        "    try:\n"
        "        zk.create(path, data, ephemeral=True)\n"
        "    except NodeExistsError:\n"
        "        pass  # assumes the node is ours\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "from kazoo.exceptions import NodeExistsError\n"
        "\n"
        "def register(zk: KazooClient, path: str, data: bytes) -> None:\n"
        "    try:\n"
        "        zk.create(path, data, ephemeral=True)\n"
        "    except NodeExistsError:\n"
        "        _, stat = zk.get(path)\n"
        "        if stat.ephemeralOwner != zk.client_id[0]:\n"
        "            # left by an earlier session of ours (or another process): take it over\n"
        "            zk.delete(path, version=stat.version)\n"
        "            zk.create(path, data, ephemeral=True)\n"
    )
    fix_safety = Safety.UNSAFE
    fix_safety_reason = (
        "The fix changes control flow: the handler now reads the node and, when another session "
        "owns it, deletes it and creates it again. That is right for a node that stands for this "
        "process (a registration left by its own crashed predecessor), but when the node is "
        "meant to be exclusive (\"only one instance may run\"), deleting a live peer's node "
        "takes it over; the author must choose. The get/delete/create can also raise "
        "(NoNodeError, BadVersionError) if the old session expires at the same moment. A "
        "computed path is bound to a local just before the create, inside the try, and "
        "evaluated once as before; the handler reads that local rather than computing the "
        "path again."
    )
    limits = (
        "Only creates with a literal ephemeral=True (keyword or 4th positional argument) on a "
        "client the module can prove, directly, through client.retry(client.create, ...) or a "
        "KazooRetry object, or create_async(...).get(); ephemeral sequential creates are skipped "
        "(they cannot collide). The try must be in the same function as the create. Handlers "
        "that raise or exit, that compare ephemeralOwner/owner_session_id/client_id, that "
        "delete and create, or that call a function of the module doing so are trusted; a "
        "handler calling a function the module cannot see is still reported. An exception "
        "clause of a type the module cannot resolve before the matching one makes the rule "
        "silent. The fix is offered only when the try body makes no other create and the "
        "path is a name, attribute, string or f-string of those, or a one-line computed "
        "expression (a call, a %-format) in a function, on the create's own line inside the "
        "try: that one is first bound to a local (`path = ...`) on the line before."
    )

    def check(self) -> Iterator[Finding]:
        facts = _Ephemeral.of(self.model)
        reported = set()
        for create in facts.ephemeral_creates():
            if create.sequence is not False or facts.in_owner_check(create.node):
                continue
            if create.node is create.create and getattr(create.create.func, "attr", None) == "create_async":
                continue  # its NodeExistsError surfaces wherever the result is read: not followed
            caught = facts.catching_handler(create)
            if caught is None or facts.checks_owner_nearby(create.node):
                continue
            try_node, handler, direct = caught
            if id(handler) in reported or self._handler_checks(facts, handler, create.site_scope):
                continue
            if facts.signals_failure(try_node, handler):
                continue  # "not created" is reported to the caller: nothing is assumed
            reported.add(id(handler))
            what = "NodeExistsError" if direct else "a NodeExistsError"
            message = (
                f"{what} from the ephemeral create on line {create.node.lineno} is handled without "
                "checking stat.ephemeralOwner: a node left by an earlier session vanishes when that "
                "session expires"
            )
            build = None
            imports: Tuple[Import, ...] = ()
            hoist = self._hoist_build(facts, create, try_node)
            if hoist is not None or self._fixable(facts, create, try_node):
                exc_name = None
                if not direct:
                    exc_name = self.model.local_name_for(_EXC + "NodeExistsError")
                    if exc_name is None:
                        if self.model.lookup("NodeExistsError", self.model.module_scope) is not None:
                            build = None
                            exc_name = ""
                        else:
                            exc_name = "NodeExistsError"
                            imports = (Import("kazoo.exceptions", "NodeExistsError"),)
                if exc_name != "" and hoist is not None:
                    build, imports = hoist, ()  # the owner check comes in the next pass
                elif exc_name != "":
                    build = (lambda source, c=create, t=try_node, h=handler, e=exc_name:
                             self._fix(source, c, t, h, e))
            yield self.finding(handler, message, "Check the node's owner and re-create it", build, imports)

    # ---- detection ------------------------------------------------------------------------

    def _handler_checks(self, facts: _Ephemeral, handler: ast.ExceptHandler, scope: Scope) -> bool:
        if facts.handler_mentions_owner(handler):
            return True
        methods = set()
        for stmt in handler.body:
            for node in walk(stmt):
                if isinstance(node, ast.Raise):
                    return True
                if isinstance(node, ast.Call):
                    qual = self.model.qualname(node.func)
                    if qual in _EXIT_CALLS or (
                        isinstance(node.func, ast.Name) and node.func.id in ("exit", "quit")
                        and self.model.lookup(node.func.id, scope) is None
                    ):
                        return True
                    if isinstance(node.func, ast.Attribute):
                        methods.add(node.func.attr)
                    func = self.model.resolve_function(node.func, scope)
                    if func is not None and not isinstance(func, ast.Lambda):
                        if _mentions_owner(func.body):
                            return True
                        inner = {n.func.attr for s in func.body for n in walk(s)
                                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
                        if {"delete", "create"} <= inner or {"delete", "retry"} <= inner:
                            return True
        return {"delete", "create"} <= methods or {"delete", "retry"} <= methods

    # ---- fix ------------------------------------------------------------------------------

    def _hoist_build(self, facts: _Ephemeral, create: Create, try_node: ast.Try):
        """A computed path (``lease_path(name)``, ``"/w/" + socket.gethostname()``) is bound
        to a local on the line before the create's statement, inside the try: the next fix
        pass then finds a plain name and adds the owner check, which reads the same value
        instead of computing the path again. None when the path is already simple or the
        shape is one the owner-check fix refuses anyway."""
        if create.path is None or _simple_expr(create.path) or not self._fixable(facts, create, try_node, hoisted=True):
            return None
        stmt = _hoistable_statement(facts, create)
        if stmt is None or not any(_inside_block(stmt, s) for s in try_node.body):
            return None
        scope = create.site_scope
        if scope is None or scope.kind != "function":
            return None  # a module-level name would be a new global
        return _hoist_path(create.path, stmt, _free_name(self.model, scope, "path"))

    def _fixable(self, facts: _Ephemeral, create: Create, try_node: ast.Try, hoisted: bool = False) -> bool:
        if not (hoisted or _simple_expr(create.path)) or create.has_star_args:
            return False
        # Another create in the try could be the one whose NodeExistsError the handler sees.
        own = {id(create.create), id(create.create.func)}
        if create.retried:
            own.add(id(create.create.args[0]))
        for stmt in try_node.body:
            for node in _walk_outside_defs(stmt):
                if id(node) in own:
                    continue
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                    "create", "create_async", "commit", "commit_async"
                ):
                    return False
                if isinstance(node, ast.Attribute) and node.attr in ("create", "create_async"):
                    return False
        return True

    def _fix(self, source, create: Create, try_node: ast.Try, handler: ast.ExceptHandler, exc_name):
        model = self.model
        scope = create.site_scope
        client = source.segment(create.client)
        path = source.segment(create.path)
        if "\n" in path or "\r" in path:
            raise FixError("multi-line path")
        taken = {n.id for n in walk(handler) if isinstance(n, ast.Name)}
        stat = next(
            (name for name in ("stat", "node_stat", "existing_stat")
             if name not in taken and model.lookup(name, scope) is None and not _name_used(scope, name)),
            None,
        ) or _free_name(model, scope, "stat", taken)
        gettext = model.lookup("_", scope) is model.module_scope or any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "_" for n in walk(model.tree)
        )
        if not gettext:
            read = f"_, {stat} = {client}.get({path})"
        else:  # `_` is gettext here: do not rebind it
            read = f"{stat} = {client}.get({path})[1]"
        recreate = parse_expression(source, _dedent_continuation(source, create.node))
        check = parse_statement(
            source,
            f"if {stat}.ephemeralOwner != {client}.client_id[0]:\n"
            f"    {client}.delete({path}, version={stat}.version)\n"
            f"    pass\n",
        )
        body = list(check.body.body)
        body[-1] = cst.SimpleStatementLine(body=[cst.Expr(value=recreate)])
        check = check.with_changes(body=check.body.with_changes(body=body))
        new_stmts = [parse_statement(source, read), _with_indent(check, source.indent_unit)]
        index = try_node.handlers.index(handler)

        def transform(stmts):
            node = stmts[0]
            if not isinstance(node, cst.Try):
                raise FixError("unexpected statement")
            handlers = list(node.handlers)
            target = handlers[index]
            if exc_name is None:
                old = list(target.body.body)
                if len(old) == 1 and _is_bare_pass(old[0]):
                    new_stmts[0] = new_stmts[0].with_changes(leading_lines=old[0].leading_lines)
                    old = []
                handlers[index] = target.with_changes(body=target.body.with_changes(body=new_stmts + old))
            else:
                template = parse_statement(source, f"try:\n    pass\nexcept {exc_name}:\n    pass\n")
                added = template.handlers[0]
                added = added.with_changes(
                    body=added.body.with_changes(body=new_stmts, indent=source.indent_unit),
                    whitespace_after_except=cst.SimpleWhitespace(" "),
                )
                handlers.insert(index, added)
            return [node.with_changes(handlers=handlers)] + list(stmts[1:])

        return [statements_edit(source, [try_node], transform)]


def _hoistable_statement(facts: _Ephemeral, create: Create) -> Optional[ast.stmt]:
    """The simple statement that holds the create, when the create's one-line path can be
    bound to a name on the line before it (evaluated once, in the same order)."""
    path = create.path
    if path is None or path.lineno != path.end_lineno:
        return None
    if any(isinstance(n, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr, ast.Lambda)) for n in walk(path)):
        return None
    stmt: Optional[ast.AST] = create.node
    while stmt is not None and not isinstance(stmt, ast.stmt):
        stmt = facts.parents.get(stmt)
    if stmt is None or not isinstance(stmt, (ast.Expr, ast.Assign, ast.AnnAssign, ast.Return)):
        return None  # the path sits in a compound statement's header
    if stmt.lineno != path.lineno:
        return None  # a continuation line
    # Names the statement evaluates before the path could be rebound by nothing in
    # between; the only reordering is the create's callee lookup (zk.create), which
    # is free of side effects.
    return stmt


def _hoist_path(path: ast.expr, stmt: ast.stmt, name: str):
    def build(source):
        indent = _line_indent(source, stmt)
        if indent is None:
            raise FixError("statement does not start its line")
        start, end = source.node_span(path)
        return [
            insert_lines_edit(source, stmt.lineno, [f"{indent}{name} = {source.text[start:end]}"]),
            Edit(start, end, name),
        ]

    return build


def _inside_block(node: ast.AST, stmt: ast.stmt) -> bool:
    return any(n is node for n in _walk_outside_defs(stmt))


def _with_indent(node, unit: str):
    """Generated blocks spelled with an explicit indent: spliced into an indented snippet,
    libcst's default indent would be the snippet's, not one level."""
    return with_block_indent(node, unit)


def _is_bare_pass(stmt) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], (cst.Pass,))
        and stmt.trailing_whitespace.comment is None
    ) or (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, cst.Ellipsis)
        and stmt.trailing_whitespace.comment is None
    )


# ---------------------------------------------------------------------------------------------
# ZK102


@register
class EphemeralLostWithSession(Rule):
    code = "ZK102"
    name = "ephemeral-lost-with-session"
    summary = "Ephemeral nodes are created, but nothing re-creates them after the session is lost."
    why = (
        "When the session expires (a long GC pause, a network partition longer than the session "
        "timeout) the server deletes every ephemeral node of that session. kazoo then reconnects "
        "by itself with a new session, so the process looks healthy, but its registration, "
        "leadership marker or lock node is gone for good: peers stop seeing it. A state listener "
        "must notice KazooState.LOST and re-create the nodes once CONNECTED again, from another "
        "thread (listeners run on the connection thread and must not call the client)."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=\"zk:2181\")\n"
        "zk.start()\n"
        "zk.create(\"/services/web/host1\", b\"10.0.0.1\", ephemeral=True)\n"
    )
    use_instead = (
        "import threading\n"
        "\n"
        "from kazoo.client import KazooClient\n"
        "from kazoo.protocol.states import KazooState\n"
        "\n"
        "zk = KazooClient(hosts=\"zk:2181\")\n"
        "zk.start()\n"
        "zk.create(\"/services/web/host1\", b\"10.0.0.1\", ephemeral=True)\n"
        "session_lost = threading.Event()\n"
        "\n"
        "\n"
        "def recreate_node(state):\n"
        "    if state == KazooState.LOST:\n"
        "        session_lost.set()\n"
        "    elif state == KazooState.CONNECTED and session_lost.is_set():\n"
        "        session_lost.clear()\n"
        "        # not on the connection thread: it would deadlock waiting for its own reply\n"
        "        zk.handler.spawn(zk.retry, zk.create, \"/services/web/host1\", b\"10.0.0.1\", ephemeral=True)\n"
        "\n"
        "\n"
        "zk.add_listener(recreate_node)\n"
    )
    fix_safety = Safety.UNSAFE
    fix_safety_reason = (
        "The fix adds a state listener and a background re-create after every session loss: new "
        "threading behaviour, and the node comes back with the data its arguments have at that "
        "time (the listener reads the same variables later). It is offered only when every "
        "ephemeral create on the client makes the same path, not inside loops, comprehensions or "
        "lambdas, and when no variable of the create's arguments is bound twice (the closure reads "
        "them at reconnect time), nor when the program deletes a node or sets its data on the "
        "same client (a leave()/deregister, an update) unless the literal paths show another "
        "node: the listener would bring back a node the program removed, or with the data it "
        "replaced. The listener is registered where the create runs: called "
        "repeatedly, that code registers one listener per call. A computed path (a call, a "
        "subscript: `\"/apps/web/\" + os.environ[\"HOSTNAME\"]`) is first bound to a name on the "
        "line before the create (evaluated once, where it was), so the listener re-creates the "
        "node the program made rather than evaluating the expression again. An ephemeral "
        "sequential create is fixed only when the program throws the generated name away (a "
        "statement, or a name read nowhere): a member re-created under a new number is what it "
        "had; that re-create is not retried (a retried sequential create can leave an orphan, "
        "ZK104)."
    )
    limits = (
        "Needs a client the module can prove (not a parameter: the caller may register the "
        "listener) that is never handed to code the module cannot see (passed to a non-kazoo "
        "function, stored elsewhere, returned). Any listener on that client that compares the "
        "state with LOST or CONNECTED (re-registering on every connect also works), has an "
        "else/default branch, passes the state on, or does more than logging without "
        "branching, or a listener the module cannot resolve, silences the rule. Ephemeral "
        "sequential creates whose generated name the program reads are reported but not fixed "
        "(a re-created node gets another name, and the program would hold a stale one). "
        "Creates the program repeats by design are trusted: inside a while loop, in a function "
        "that compares session ids (client_id/ephemeralOwner) outside its except handlers (a "
        "reconciling function), or whose NodeExistsError handler returns False (a try-acquire "
        "its callers repeat). Only literal ephemeral=True is seen. The fix looks for deletes "
        "and sets of the node only as calls on the client (also through retry), not in "
        "transactions or in other modules."
    )

    def check(self) -> Iterator[Finding]:
        facts = _Ephemeral.of(self.model)
        by_client: Dict[ClientKey, List[Create]] = {}
        for create in facts.ephemeral_creates():
            if facts.in_owner_check(create.node) or facts.checks_owner_nearby(create.node):
                continue  # a reconciling function (compares session ids) is meant to be called again
            caught = facts.catching_handler(create)
            if caught is not None and facts.signals_failure(caught[0], caught[1]):
                continue  # a try-acquire ("return False" on NodeExistsError): callers retry it
            if any(isinstance(parent, (ast.While, ast.AsyncFor)) for _, parent in facts.ancestors(create.node)):
                continue  # a loop that keeps creating it re-registers after a loss by itself
            if self._stopped_right_after(facts, create):
                continue  # the node lives no longer than the create statement
            by_client.setdefault(create.key, []).append(create)
        for key, creates in by_client.items():
            if facts.reacting_listener(key, ("LOST", "CONNECTED")):
                continue
            fixable = self._fixable(facts, creates) and not self._node_changed_elsewhere(facts, creates)
            hoist = self._hoist_build(facts, creates) if not fixable else None
            for index, create in enumerate(creates):
                build = None
                imports: Tuple[Import, ...] = ()
                if index == 0 and hoist is not None:
                    build = hoist  # the listener comes in the next pass, reading the bound path
                elif index == 0 and fixable:
                    plan = self._plan(create)
                    if plan is not None:
                        imports = plan[1]
                        build = lambda source, c=create, p=plan[0]: self._fix(source, facts, c, p)  # noqa: E731
                yield self.finding(
                    create.node,
                    "ephemeral node is never re-created after session loss: on expiry the server deletes "
                    "it and kazoo reconnects with a new session, so peers stop seeing this process",
                    "Re-create the node from a state listener after LOST",
                    build,
                    imports,
                )

    def _hoist_build(self, facts: _Ephemeral, creates: List[Create]):
        """One create with a computed path (``"/apps/web/" + os.environ["HOSTNAME"]``): the
        path is bound to a name on the line before, so the listener re-creates the node the
        program made, without evaluating the expression again at reconnect time."""
        if len(creates) != 1 or creates[0].path is None or _simple_expr(creates[0].path):
            return None
        if not self._fixable(facts, creates, hoisted=True) or self._plan(creates[0]) is None:
            return None
        if self._node_changed_elsewhere(facts, creates):
            return None
        stmt = _hoistable_statement(facts, creates[0])
        scope = creates[0].site_scope
        if stmt is None or scope is None:
            return None
        stem = _stem(creates[0].path)
        name = _free_name(self.model, scope, f"{stem}_path" if stem else "node_path")
        return _hoist_path(creates[0].path, stmt, name)

    def _fixable(self, facts: _Ephemeral, creates: List[Create], hoisted: bool = False) -> bool:
        first = creates[0]
        if first.sequence is None or (first.sequence and not self._name_unused(facts, first)):
            return False  # the program keeps the generated name: a re-create makes another
        if first.has_star_args or not (hoisted or _simple_expr(first.path)):
            return False
        paths = {ast.dump(c.path) if c.path is not None else None for c in creates}
        if len(paths) != 1:
            return False
        for _, parent in facts.ancestors(first.node):
            if isinstance(parent, (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp,
                                   ast.GeneratorExp)):
                return False
        if isinstance(facts.enclosing_function(first.node), ast.Lambda):
            return False
        # The listener reads the arguments' variables later: each must keep its one value.
        scope = first.site_scope
        for arg in list(first.create.args[first.offset:]) + [kw.value for kw in first.create.keywords]:
            for node in walk(arg):
                if isinstance(node, ast.Name):
                    owner = self.model.lookup(node.id, scope)
                    if owner is not None and len(owner.bindings.get(node.id, ())) > 1:
                        return False
        return True

    def _node_changed_elsewhere(self, facts: _Ephemeral, creates: List[Create]) -> bool:
        """Does the program delete the node or set its data (``leave()``, ``update()``) on
        the same client? Then a listener that re-creates it after a session loss would bring
        back a node the program removed, or with data it has replaced. Calls in the except
        handler that catches the create's NodeExistsError (the owner check's delete and
        re-create) do not count, nor calls whose literal path is another node's."""
        first = creates[0]
        own_handlers = set()
        for create in creates:
            caught = facts.catching_handler(create)
            if caught is not None:
                own_handlers.update(id(n) for n in walk(caught[1]))
        created = first.path.value if isinstance(first.path, ast.Constant) else None
        for site, key, method in self.model.client_calls():
            call = site.node
            if key != first.key:
                continue
            offset = 0
            if method == "retry" and call.args and isinstance(call.args[0], ast.Attribute):
                method, offset = call.args[0].attr, 1  # client.retry(client.delete, path)
            if method not in _NODE_CHANGES or id(call) in own_handlers:
                continue
            args = call.args[offset:]
            path = args[0] if args and not isinstance(args[0], ast.Starred) else None
            given = keyword(call, "path")
            path = given.value if given is not None else path
            changed = path.value if isinstance(path, ast.Constant) else None
            if (isinstance(created, str) and isinstance(changed, str) and changed != created
                    and not created.startswith(changed.rstrip("/") + "/")):
                continue  # another node, not a parent of this one
            return True
        return False

    def _name_unused(self, facts: _Ephemeral, create: Create) -> bool:
        """Is the path a create returns thrown away (a statement, or a name read nowhere)?
        Then a sequential node re-created under a new generated name is what the program
        had: a member of the group, whatever its number."""
        node: ast.AST = create.node
        parent = facts.parents.get(node)
        if isinstance(parent, ast.Expr):
            return True
        if not isinstance(parent, ast.Assign) or len(parent.targets) != 1:
            return False
        if not isinstance(parent.targets[0], ast.Name):
            return False
        name = parent.targets[0].id
        return not any(
            isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load) for n in walk(self.model.tree)
        )

    def _plan(self, create: Create):
        """(names, imports) for the generated listener, or None when a name is taken."""
        model = self.model
        imports: List[Import] = []
        state = model.local_name_for(KAZOO_STATE) or model.local_name_for("kazoo.client.KazooState")
        if state is None:
            if model.lookup("KazooState", model.module_scope) is not None:
                return None
            state = "KazooState"
            imports.append(Import("kazoo.protocol.states", "KazooState"))
        event = model.local_name_for("threading.Event")
        if event is None:
            if model.lookup("threading", model.module_scope) is not None:
                return None
            event = "threading.Event"
            imports.append(Import("threading"))
        return (state, event), tuple(imports)

    def _fix(self, source, facts: _Ephemeral, create: Create, names) -> List[Edit]:
        state_name, event_ctor = names
        model = self.model
        anchor = self._anchor(facts, create)
        indent = _line_indent(source, anchor)
        if indent is None:
            raise FixError("statement does not start its line")
        tail = source.line_text(anchor.end_lineno)[source.char_col(anchor.end_lineno, anchor.end_col_offset):]
        if tail.strip() and not tail.lstrip().startswith("#"):
            raise FixError("statement shares its line")
        scope = create.site_scope
        stem = _stem(create.path)
        listener = _free_name(model, scope, f"recreate_{stem}" if stem else "recreate_node")
        flag = _free_name(model, scope, "session_lost", {listener})
        client = source.segment(create.client)
        args_nodes = list(create.create.args[create.offset:]) + list(create.create.keywords)
        args_nodes.sort(key=lambda n: (n.lineno, n.col_offset))
        parts = [source.segment(n) for n in args_nodes]
        if any("\n" in p or "\r" in p for p in parts):
            raise FixError("multi-line argument")
        args = ", ".join(parts)
        lines = [f"{flag} = {event_ctor}()", ""]
        if not indent:
            lines.append("")
        lines += [
            f"def {listener}(state):",
            f"    if state == {state_name}.LOST:",
            f"        {flag}.set()",
            f"    elif state == {state_name}.CONNECTED and {flag}.is_set():",
            f"        {flag}.clear()",
            # A sequential create is not retried: a retry after a lost reply leaves an
            # orphan member (ZK104); the next session loss re-creates it anyway.
            f"        {client}.handler.spawn({client}.create, {args})" if create.sequence else
            f"        {client}.handler.spawn({client}.retry, {client}.create, {args})",
            "",
        ]
        if not indent:
            lines.append("")
        lines.append(f"{client}.add_listener({listener})")
        unit = source.indent_unit
        out = []
        for line in lines:
            stripped = line.lstrip(" ")
            depth = (len(line) - len(stripped)) // 4
            out.append(indent + unit * depth + stripped if stripped else "")
        return [insert_lines_edit(source, anchor.end_lineno + 1, out)]

    def _stopped_right_after(self, facts: _Ephemeral, create: Create) -> bool:
        """The client is stopped by the very next statement (or the finally around the create)."""

        def is_stop(stmt: ast.stmt) -> bool:
            call = stmt.value if isinstance(stmt, ast.Expr) else None
            return (
                isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "stop"
                and self.model.client_key(call.func.value, create.site_scope) == create.key
            )

        node: ast.AST = create.node
        while not isinstance(node, ast.stmt):
            node = facts.parents[node]
        parent = facts.parents.get(node)
        if (isinstance(parent, ast.Try) and parent.body[-1] is node and parent.finalbody
                and is_stop(parent.finalbody[0])):
            return True
        anchor = self._anchor(facts, create)
        block_owner = facts.parents.get(anchor)
        for field_name in ("body", "orelse", "finalbody"):
            block = getattr(block_owner, field_name, None)
            if isinstance(block, list) and anchor in block:
                index = block.index(anchor)
                return index + 1 < len(block) and is_stop(block[index + 1])
        return False

    def _anchor(self, facts: _Ephemeral, create: Create) -> ast.stmt:
        """The statement after which the listener goes: the create's, outside any try around it."""
        node: ast.AST = create.node
        while not isinstance(node, ast.stmt):
            node = facts.parents[node]
        while True:
            # Out of a try whose handlers see the create's errors (the ZK101 shape), so the
            # listener is registered whichever way it ends; but not past the work a try body
            # does after the create (try/finally around a whole server loop).
            parent = facts.parents.get(node)
            if isinstance(parent, ast.ExceptHandler):
                node = facts.parents[parent]
                continue
            if (isinstance(parent, ast.Try) or type(parent).__name__ == "TryStar") and parent.handlers and (
                parent.body[-1] is node
            ):
                node = parent
                continue
            return node


def _stem(path: Optional[ast.expr]) -> str:
    name = None
    if isinstance(path, ast.Name):
        name = path.id
    elif isinstance(path, ast.Attribute):
        name = path.attr
    if not name:
        return ""
    name = name.lower().strip("_")
    for suffix in ("_path", "_znode", "_node", "path", "znode", "node"):
        if name.endswith(suffix):
            name = name[: -len(suffix)].rstrip("_")
            break
    for suffix in ("_node", "_znode"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if not name.isidentifier() or name in ("node", "znode", "path", "ephemeral"):
        return ""
    return f"{name}_node"


# ---------------------------------------------------------------------------------------------
# ZK103


@register
class ListenerIgnoresLost(Rule):
    code = "ZK103"
    name = "listener-ignores-lost"
    summary = "A state listener handles SUSPENDED but has no branch for LOST."
    why = (
        "KazooState.LOST means the session is gone (expired, auth failure, stop(), or retries "
        "exhausted): every ephemeral node, watch and lock of the session is gone with it. A "
        "listener that checks for SUSPENDED and CONNECTED but not LOST treats the worst event "
        "as if nothing happened: the process keeps acting as a registered member, a leader or "
        "a lock holder that it no longer is."
    )
    example = (
        "from kazoo.protocol.states import KazooState\n"
        "\n"
        "def on_state(state):\n"
        "    if state == KazooState.SUSPENDED:\n"
        "        pause_work()\n"
        "    elif state == KazooState.CONNECTED:\n"
        "        resume_work()\n"
        "\n"
        "zk.add_listener(on_state)\n"
    )
    use_instead = (
        "from kazoo.protocol.states import KazooState\n"
        "\n"
        "def on_state(state):\n"
        "    if state == KazooState.SUSPENDED:\n"
        "        pause_work()\n"
        "    elif state == KazooState.LOST:\n"
        "        session_lost.set()  # ephemerals and locks are gone: re-register once CONNECTED\n"
        "    else:\n"
        "        resume_work()\n"
        "\n"
        "zk.add_listener(on_state)\n"
    )
    fix_safety_reason = (
        "No faithful rewrite exists: what a listener must do on LOST depends on what the "
        "program holds on the session (re-create its ephemeral nodes: ZK102's fix; give up "
        "leadership; stop a critical section; alert), and an empty `elif state == "
        "KazooState.LOST: pass` branch would silence the rule without handling anything."
    )
    limits = (
        "Only listeners the module can resolve (a def, a method through self, a lambda) "
        "registered with add_listener. A listener that only reacts to CONNECTED (waiting for "
        "the connection, or re-arming work on every connect as kazoo's DataWatch does) is not "
        "reported: it handles disconnects nowhere, so it cannot mistake LOST for SUSPENDED. "
        "A listener nested in a function whose only effect is setting that function's events "
        "is a one-off wait for a state (tests, reconnect helpers) and is not reported. "
        "A listener whose state goes elsewhere "
        "(stored, passed to a function, compared with something other than KazooState values "
        "or their strings) is not reported."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        seen = set()
        for site in calls_named(model, ["add_listener"]):
            call = site.node
            if not (isinstance(call.func, ast.Attribute) and call.func.attr == "add_listener" and call.args):
                continue
            if model.client_key(call.func.value, site.scope) is None and not self._kazoo_file():
                continue
            arg = call.args[0]
            if isinstance(arg, ast.Call):
                continue
            func = model.resolve_function(arg, site.scope)
            if func is None or id(func) in seen:
                continue
            seen.add(id(func))
            reaction = _Ephemeral.of(model).listener_reaction(func)
            if reaction.opaque or not reaction.branches or reaction.reacts_to("LOST"):
                continue
            if "SUSPENDED" not in reaction.handled:
                continue  # waits for or re-arms on CONNECTED only: not a disconnect handler
            if self._is_waiter(func):
                continue
            handled = ", ".join(sorted(reaction.handled)) or "no state"
            yield self.finding(
                func,
                f"state listener handles {handled} but not LOST: after session expiry it carries on as if "
                "its ephemeral nodes, watches and locks still existed",
            )

    def _is_waiter(self, func) -> bool:
        """A closure whose only effect is setting events of its enclosing function: a one-off
        wait for a state (tests, reconnect helpers), not the program's session handling."""
        model = self.model
        scope = model.scopes.get(func)
        if scope is None or scope.parent is None or scope.parent.kind != "function":
            return False
        acted = False
        for node in own_nodes(func):
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Attribute) and f.attr in _LOG_METHODS:
                    continue
                if isinstance(f, ast.Name) and f.id == "print":
                    continue
                if not (isinstance(f, ast.Attribute) and f.attr == "set" and isinstance(f.value, ast.Name)
                        and model.lookup(f.value.id, scope) is scope.parent):
                    return False
                acted = True
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Global, ast.Nonlocal, ast.Raise)):
                return False
        return acted

    def _kazoo_file(self) -> bool:
        model = self.model
        return bool(model.local_name_for(KAZOO_STATE) or model.local_name_for("kazoo.client.KazooState"))


# ---------------------------------------------------------------------------------------------
# ZK104


@register
class EphemeralSequentialRetried(Rule):
    code = "ZK104"
    name = "ephemeral-sequential-retried"
    summary = "An ephemeral sequential create is retried: a lost reply leaves an orphan node."
    why = (
        "A create can succeed on the server while its reply is lost (ConnectionLoss). Retrying "
        "an ephemeral *sequential* create then makes a second node with a new number; the "
        "first one lives on, unknown to the program, until the session ends. In a lock, "
        "election or queue it is an extra contender nobody will ever remove: the next process "
        "waits behind it forever (Curator's \"protected\" mode exists for this). kazoo's own "
        "Lock recipe puts a uuid in the node name and, on a retry, first looks for a child "
        "with that prefix."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "zk.start()\n"
        "# a create whose reply is lost is sent again: the first node lives on as an orphan\n"
        "node = zk.retry(zk.create, \"/election/n_\", b\"\", ephemeral=True, sequence=True)\n"
    )
    use_instead = (
        "import uuid\n"
        "\n"
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "zk.start()\n"
        "prefix = uuid.uuid4().hex + \"__n_\"  # fixed once, reused by every attempt\n"
        "\n"
        "\n"
        "def create_once():\n"
        "    # a retry first looks for the node an earlier attempt may have created\n"
        "    for child in zk.get_children(\"/election\"):\n"
        "        if child.startswith(prefix):\n"
        "            return \"/election/\" + child\n"
        "    return zk.create(\"/election/\" + prefix, b\"\", ephemeral=True, sequence=True)\n"
        "\n"
        "\n"
        "node = zk.retry(create_once)\n"
    )
    fix_safety_reason = (
        "The remedy, kazoo's lock-recipe pattern (a uuid in the node's "
        "name, looked for among the parent's children after a connection loss before creating "
        "again), changes the name of every node the code creates: each reader of that parent "
        "(peers that sort children by name, match a prefix, or parse the number; other "
        "services; older versions of this program still running) must understand the new "
        "names, and those readers live outside the file. A fix that drops the retry instead "
        "would not remove the orphan (a create whose reply is lost still leaves it). The docs "
        "show the pattern to apply by hand."
    )
    limits = (
        "Retries seen: client.retry(client.create, ...), a KazooRetry object called with "
        "client.create, client.retry/KazooRetry called with a function of the module that "
        "makes the create, a function decorated by tenacity/retrying/backoff, and a loop whose "
        "try catches ConnectionLoss around the create. A retried function that calls "
        "get_children (the prefix lookup of the lock recipe) is trusted. Only literal "
        "ephemeral=True and sequence=True are seen."
    )

    def check(self) -> Iterator[Finding]:
        facts = _Ephemeral.of(self.model)
        reported = set()
        for create in facts.creates():
            if not (create.ephemeral and create.sequence):
                continue
            how = None
            if create.retried:
                how = "under a retry"
            else:
                retried = retried_functions(self.model)  # only asked with a sequential create at hand
                func = facts.enclosing_function(create.node)
                if func is not None and id(func) in retried and not _looks_up_children(func):
                    how = retried[id(func)]
                elif self._in_retry_loop(facts, create) and not (func is not None and _looks_up_children(func)):
                    how = "in a loop that retries on ConnectionLoss"
            if how is None or id(create.node) in reported:
                continue
            reported.add(id(create.node))
            yield self.finding(
                create.node,
                f"ephemeral sequential create {how}: after a lost reply the retry makes a second node and "
                "the first lingers, orphaned, until the session ends; use a uuid prefix",
            )

    def _in_retry_loop(self, facts: _Ephemeral, create: Create) -> bool:
        in_try = False
        for child, parent in facts.ancestors(create.node):
            if isinstance(parent, ast.Try) and child in parent.body:
                for handler in parent.handlers:
                    if self._catches_connection_loss(handler.type) and not leaves_loop(handler):
                        in_try = True
            if in_try and isinstance(parent, (ast.While, ast.For)) and child in parent.body:
                return True
        return False

    def _catches_connection_loss(self, expr) -> bool:
        if expr is None:
            return False
        if isinstance(expr, ast.Tuple):
            return any(self._catches_connection_loss(e) for e in expr.elts)
        return self.model.qualname(expr) in _CONNECTION_LOSS


def leaves_loop(handler: ast.ExceptHandler) -> bool:
    for stmt in handler.body:
        for node in walk(stmt):
            if isinstance(node, (ast.Raise, ast.Break, ast.Return)):
                return True
    return False


def _looks_up_children(func: ast.AST) -> bool:
    for node in own_nodes(func):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
            "get_children", "get_children_async"
        ):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# ZK105


@register
class LockHeldAcrossSessionLoss(Rule):
    code = "ZK105"
    name = "lock-held-across-session-loss"
    summary = "A lock or election is held with no state listener watching for SUSPENDED or LOST."
    why = (
        "A kazoo Lock, ReadLock, WriteLock, Semaphore or Election is an ephemeral node. When the "
        "connection is suspended the holder can no longer be sure it holds it, and when the "
        "session is lost the node is gone and another process takes the lock, but kazoo does "
        "not tell the holder: Lock.is_acquired stays True and the critical section (or the "
        "leader's work) keeps running in two processes at once. A state listener must flag "
        "SUSPENDED/LOST and the critical section must check that flag and stop."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "zk.start()\n"
        "lock = zk.Lock(\"/locks/billing\", \"worker-1\")\n"
        "with lock:\n"
        "    for batch in pending_batches():\n"
        "        charge(batch)  # keeps running after the session is lost\n"
    )
    use_instead = (
        "import threading\n"
        "\n"
        "from kazoo.client import KazooClient\n"
        "from kazoo.protocol.states import KazooState\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "lock_lost = threading.Event()\n"
        "\n"
        "\n"
        "def watch_session(state):\n"
        "    if state in (KazooState.SUSPENDED, KazooState.LOST):\n"
        "        lock_lost.set()  # the lock may belong to someone else now\n"
        "\n"
        "\n"
        "zk.add_listener(watch_session)\n"
        "zk.start()\n"
        "lock = zk.Lock(\"/locks/billing\", \"worker-1\")\n"
        "with lock:\n"
        "    lock_lost.clear()\n"
        "    for batch in pending_batches():\n"
        "        if lock_lost.is_set():\n"
        "            raise RuntimeError(\"ZooKeeper session lost while holding the lock\")\n"
        "        charge(batch)\n"
    )
    fix_safety_reason = (
        "No faithful rewrite exists: a listener that notices SUSPENDED/LOST can only set a "
        "flag; what stops the critical section (checking the flag between steps, aborting a "
        "transaction, fencing writes with the lock node's version) is the program's own "
        "logic, which a codemod cannot write. Adding the listener alone would silence the "
        "rule and change nothing."
    )
    limits = (
        "Locks built on a client the module can prove (client.Lock(...), kazoo.recipe.lock.Lock("
        "client, ...), and the ReadLock/WriteLock/Semaphore/Election forms), used directly or "
        "through a variable or self attribute bound only to such constructions. A client that "
        "is a parameter or is handed to code the module cannot see, or any listener on it that "
        "reacts to SUSPENDED or LOST (including an else branch, storing the state, or doing "
        "more than logging without branching) silences the rule; whether the critical section "
        "really checks the flag is not verified."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        facts = _Ephemeral.of(model)
        for site in calls_named(model, ["acquire", "run"]):
            call = site.node
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr in ("acquire", "run"):
                recipe = self._recipe(func.value, site.scope)
                if recipe is None:
                    continue
                kind, key = recipe
                if (func.attr == "run") != (kind == "Election"):
                    continue
                if not facts.reacting_listener(key, ("SUSPENDED", "LOST")):
                    yield self._report(call, kind, func.attr)
        for node, scope in model.withs:
            for item in node.items:
                recipe = self._recipe(item.context_expr, scope)
                if recipe is None or recipe[0] == "Election":
                    continue
                if not facts.reacting_listener(recipe[1], ("SUSPENDED", "LOST")):
                    yield self._report(item.context_expr, recipe[0], "with")

    def _report(self, node: ast.AST, kind: str, how: str) -> Finding:
        what = "leadership" if kind == "Election" else kind
        return self.finding(
            node,
            f"{what} held with no state listener for SUSPENDED/LOST: after a session loss another process "
            "takes it while this one still runs the critical section",
        )

    def _recipe(self, expr: ast.expr, scope: Scope, depth: int = 0) -> Optional[Tuple[str, ClientKey]]:
        model = self.model
        if isinstance(expr, ast.Call):
            func = expr.func
            if isinstance(func, ast.Attribute) and func.attr in _LOCK_METHODS | {"Election"}:
                key = model.client_key(func.value, scope)
                if key is not None:
                    return func.attr, key
            qual = model.qualname(func)
            if (qual in _LOCK_CLASSES or qual == _ELECTION_CLASS) and expr.args:
                key = model.client_key(expr.args[0], scope)
                return (qual.rpartition(".")[2], key) if key is not None else None
            return None
        if isinstance(expr, (ast.Name, ast.Attribute)) and depth < 2:
            values = model.bound_values(expr, scope)
            if not values:
                return None
            found = {self._recipe(v, s, depth + 1) for v, s in values if not _is_none(v)}
            if len(found) == 1 and None not in found:
                return found.pop()
        return None


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None
