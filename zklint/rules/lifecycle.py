"""ZK2: client lifecycle (start, stop, close).

The four rules share one index of how each client variable is used in the module
(`_Uses`): every read of the variable, classified as a method call or attribute
(``zk.start()``, ``zk.stop`` passed as a callback), a harmless test (``if zk:``), or an
escape (passed to a function, returned, yielded, stored elsewhere, read by a nested
function). A client that escapes has another owner, and the rules say nothing about it.
Order questions ("is the stop in a finally?", "does the create run before start?") go
to `zklint.flow.Flow`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

from zklint.lazy_import import libcst as cst  # imported on first use: fixes only

from zklint.fixer import FixError, parse_statement, statements_edit
from zklint.flow import Flow, before, own_descendants, position
from zklint.model import KAZOO_CLIENT, ClientKey, ModuleModel, Scope, walk
from zklint.facts import USES
from zklint.findings import Edit, Finding, Import, Safety
from zklint.rules.base import Rule, register


START_METHODS = frozenset({"start", "start_async", "restart"})
# Calls that need a live session: before start() they fail with ConnectionClosedError.
# (add_auth_async is left out: before start() it stores the credentials for the
# connection and its failed result is harmless.)
OPERATIONS = frozenset(
    name + suffix
    for name in (
        "create", "delete", "get", "set", "exists", "get_children", "ensure_path", "sync",
        "get_acls", "set_acls", "reconfig",
    )
    for suffix in ("", "_async")
) | {"add_auth"}
_STATE_ATTRIBUTES = frozenset({"connected", "state", "client_state", "client_id"})


@dataclass(frozen=True)
class Use:
    """One read of a client variable."""

    node: ast.expr  # the Name or self.<attr> expression
    scope: Scope
    # "attr" (zk.<x>), "patch" (zk.<x> = ...), "test" (if zk / zk is None / a recipe's
    # argument), "escape"
    kind: str
    attr: Optional[str] = None  # for kind "attr"
    call: Optional[ast.Call] = None  # when the attribute is called: zk.<x>(...)


class _Uses:
    """Every read of every client variable in the module, by client."""

    def __init__(self, model: ModuleModel) -> None:
        self.model = model
        self.by_key: Dict[ClientKey, List[Use]] = {}
        self.attribute_chains = model.attribute_chains
        by_key = self.by_key
        parents = model.parents()
        for node, scope, key in model.client_reads():
            parent = parents.get(id(node))
            grandparent = parents.get(id(parent)) if parent is not None else None
            by_key.setdefault(key, []).append(self._classify(node, parent, grandparent, scope))
        for uses in by_key.values():
            uses.sort(key=lambda u: position(u.node))

    def _classify(self, node: ast.expr, parent: Optional[ast.AST], grandparent: Optional[ast.AST], scope: Scope) -> Use:
        if isinstance(parent, ast.Attribute) and parent.value is node:
            if not isinstance(parent.ctx, ast.Load):
                return Use(node, scope, "patch", parent.attr)  # zk.attr = ... / del zk.attr
            return Use(node, scope, "attr", parent.attr, self._call_of(parent))
        call = grandparent if isinstance(parent, ast.keyword) else parent
        if isinstance(call, ast.Call) and call.func is not node:
            # Handing the client to a kazoo recipe (DataWatch, Lock, Election...) keeps
            # it with its owner: recipes never stop or close their client.
            if (self.model.qualname(call.func) or "").startswith("kazoo.recipe."):
                return Use(node, scope, "test")
            # A callee the project shows only using the client (no start/stop/close, no
            # listener, not kept anywhere) leaves it with its owner: a use, not a hand-off.
            if self.model.call_effect(call, node, scope) == USES:
                return Use(node, scope, "test")
        if isinstance(parent, (ast.Compare, ast.BoolOp, ast.If, ast.While, ast.IfExp, ast.Assert, ast.FormattedValue)):
            if not isinstance(parent, (ast.If, ast.While, ast.IfExp, ast.Assert)) or parent.test is node:
                return Use(node, scope, "test")
        if isinstance(parent, ast.UnaryOp) and isinstance(parent.op, ast.Not):
            return Use(node, scope, "test")
        return Use(node, scope, "escape")

    def _call_of(self, attribute: ast.Attribute) -> Optional[ast.Call]:
        return self._calls_by_func.get(id(attribute))

    @property
    def _calls_by_func(self) -> Dict[int, ast.Call]:
        cache = self.__dict__.get("_calls_cache")
        if cache is None:
            cache = {id(site.node.func): site.node for site in self.model.calls}
            self.__dict__["_calls_cache"] = cache
        return cache


def _uses(model: ModuleModel) -> _Uses:
    cached = getattr(model, "_zk2_uses", None)
    if cached is None:
        cached = _Uses(model)
        model._zk2_uses = cached  # type: ignore[attr-defined]
    return cached


def _flow(model: ModuleModel, scope: Scope) -> Optional[Flow]:
    if scope.kind not in ("module", "function") or isinstance(scope.node, ast.Lambda):
        return None
    cache = model.__dict__.setdefault("_zk2_flows", {})
    flow = cache.get(id(scope.node))
    if flow is None:
        flow = cache[id(scope.node)] = Flow(scope.node)
    return flow


def _owned(model: ModuleModel, uses: List[Use]) -> bool:
    """Is the client built by the code that holds it (not received from a caller)?"""
    use = uses[0]
    constructions = model.constructions(use.node, use.scope)
    if not constructions:
        return False
    return all(model.is_client_expr(call, scope) for call, scope in constructions)


def _started_by_factory(model: ModuleModel, key: ClientKey, uses: List[Use]) -> List[Use]:
    """``zk = connect(hosts)`` where the project shows `connect` starting the client it
    returns: the call is the start (as a use of its own, at the call)."""
    if key.kind != "name" or not uses:
        return []
    constructions = model.constructions(uses[0].node, uses[0].scope)
    if not constructions or len(constructions) != 1:
        return []
    call, scope = constructions[0]
    if not model.project_factory(call, scope):
        return []
    return [Use(call, scope, "attr", "start", call)]


def _text(key: ClientKey, use: Use) -> str:
    if key.kind == "attr":
        return f"{use.node.value.id}.{key.name}"  # type: ignore[union-attr]
    return key.name


def _called(uses: List[Use], *methods: str) -> List[Use]:
    return [u for u in uses if u.kind == "attr" and u.attr in methods and u.call is not None]


def _refs(uses: List[Use], *methods: str) -> List[Use]:
    return [u for u in uses if u.kind == "attr" and u.attr in methods]


def _statement_call(flow: Flow, call: ast.Call) -> Optional[ast.stmt]:
    """The ``<call>`` expression statement when the call is a statement of its own (or
    the whole value of a plain ``name = <call>``, as a starting factory's call is)."""
    stmt = flow.statement_of(call)
    if isinstance(stmt, ast.Expr) and stmt.value is call:
        return stmt
    if isinstance(stmt, ast.Assign) and stmt.value is call and all(isinstance(t, ast.Name) for t in stmt.targets):
        return stmt
    return None


def _strip_blank_lines(stmt: cst.BaseStatement) -> cst.BaseStatement:
    lines = [line for line in stmt.leading_lines if line.comment is not None]
    return stmt.with_changes(leading_lines=lines)


# ---- ZK201 ----------------------------------------------------------------------------


@register
class ClientNotStopped(Rule):
    code = "ZK201"
    name = "client-not-stopped"
    summary = "A started client is not stopped on every exit of its scope."
    why = (
        "Only stop() sends ZooKeeper the Close request that ends the session at once. A "
        "process that exits (an exception, sys.exit, Ctrl-C, a deploy's SIGTERM turned into "
        "an exception) without it leaves the session open on the server until the session "
        "timeout: its ephemeral nodes, locks and leadership stay in place, so peers keep "
        "routing to a dead server or wait for a lock nobody holds. kazoo sends no Close at "
        "interpreter exit, and KazooClient is not a context manager. In a function, stop() "
        "belongs in a finally block (or in an except handler that re-raises); a stop() on "
        "the happy path only is skipped by every exception. A module-level client needs a "
        "stop() that runs at shutdown: atexit, a signal handler, or a function the "
        "application calls on exit; a class that owns a client needs a close/stop/__exit__ "
        "method that stops it."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "def publish(hosts, path, value):\n"
        "    zk = KazooClient(hosts=hosts)\n"
        "    zk.start()\n"
        "    zk.create(path, value, ephemeral=True)\n"
        "    serve_forever()\n"
        "    zk.stop()\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "def publish(hosts, path, value):\n"
        "    zk = KazooClient(hosts=hosts)\n"
        "    zk.start()\n"
        "    try:\n"
        "        zk.create(path, value, ephemeral=True)\n"
        "        serve_forever()\n"
        "    finally:\n"
        "        zk.stop()\n"
        "        zk.close()\n"
    )
    fix_safety = Safety.SAFE
    fix_safety_reason = (
        "In a function the fix wraps the statements after start(), to the end of the "
        "function, in try/finally with stop() then close(); a stop()/close() at the end of "
        "the happy path moves into the finally (after the statements that followed it and no "
        "longer used the client, such as the final return). The happy path does what it did "
        "(stop() and close() are idempotent); exits by exception now stop the client too. "
        "For a module-level client it registers `atexit.register(<client>.stop)` right after "
        "start(). Clients owned by a class are not fixed: where the class's lifetime ends "
        "is a design decision (a close() method, __exit__, a shutdown hook)."
    )
    limits = (
        "A client that escapes its scope is its owner's business and is not checked: "
        "returned, yielded (pytest fixtures, context managers), passed to a function or "
        "object, stored on self/a global/a container. A "
        "client received as a parameter is not owned. A stop() or start() in a nested function "
        "(a signal handler, a callback) and any reference to `<client>.stop` that "
        "is not a call on the happy path (atexit.register(zk.stop), a signal handler, a "
        "shutdown function anywhere in the module) counts as a stop. A stop() in a finally, "
        "in a re-raising except handler, or in any handler of a try whose body ends in a "
        "`while True:` loop without break (left only by an exception) counts even when the try does not cover all the "
        "code after start(). Module-level clients are checked only when start() runs in "
        "module-level code; a class's client only when no `<x>.<attr>.stop` appears "
        "anywhere in the module (subclasses or users may stop it). Clients started in a "
        "function but stored in a global are not checked. The function fix applies only "
        "when start() is a statement of the function body (or of a with/try-finally block "
        "that ends the function); a start() directly followed by stop() is not reported."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        index = _uses(model)
        for key, uses in index.by_key.items():
            starts = _called(uses, "start", "start_async") or _started_by_factory(model, key, uses)
            if not starts or not _owned(model, uses):
                continue
            if any(u.kind == "escape" for u in uses):
                continue
            if any(u.call is None for u in _refs(uses, "stop")):
                continue  # zk.stop handed to atexit, a signal handler, an exit stack...
            if key.kind == "name" and key.scope.kind == "function":
                finding = self._check_function(key, uses, starts)
            elif key.kind == "name" and key.scope.kind == "module":
                finding = self._check_module(key, uses, starts)
            elif key.kind == "attr":
                finding = self._check_class(key, uses, starts, index)
            else:
                finding = None
            if finding is not None:
                yield finding

    # -- scopes

    def _check_function(self, key: ClientKey, uses: List[Use], starts: List[Use]) -> Optional[Finding]:
        stops = _called(uses, "stop")
        if any(u.scope is not key.scope for u in stops + starts):
            return None  # a nested function (a signal handler, a shutdown hook) stops it
        flow = _flow(self.model, key.scope)
        if flow is None:
            return None
        start = starts[0]
        if self._protected(flow, start, stops) or _stops_right_away(flow, start, stops):
            return None
        if all(flow.expected_to_raise(u.node) for u in starts):
            return None  # a test expecting start() to time out: kazoo stops and closes it then
        name = key.name
        reason = "stop() only on the happy path" if stops else "no stop() at all"
        message = (
            f"{name} is started but not stopped on every exit ({reason}): after an exception "
            "its session and ephemerals outlive the process until the session timeout"
        )
        return self.finding(
            start.call, message, "Stop and close the client in a finally block",
            lambda source: self._function_fix(source, flow, key, start),
        )

    def _check_module(self, key: ClientKey, uses: List[Use], starts: List[Use]) -> Optional[Finding]:
        module_scope = self.model.module_scope
        starts = [u for u in starts if u.scope is module_scope]
        stops = _called(uses, "stop")
        if not starts or any(u.scope is not module_scope for u in stops):
            return None  # stopped by a function: a shutdown hook the analysis cannot follow
        flow = _flow(self.model, module_scope)
        start = starts[0]
        if self._protected(flow, start, stops) or _stops_right_away(flow, start, stops):
            return None
        reason = "stop() only on the happy path" if stops else "no stop() at all"
        message = (
            f"module-level client {key.name} is not stopped at shutdown ({reason}): after the "
            "process exits its session and ephemerals linger until the session timeout"
        )
        stmt = _statement_call(flow, start.call)
        build = None
        imports: Tuple[Import, ...] = ()
        if stmt is not None:
            register_name = self.model.local_name_for("atexit.register")
            if register_name is None:
                register_name = "atexit.register"
                imports = (Import("atexit"),)
            build = lambda source: [  # noqa: E731
                statements_edit(
                    source, [stmt],
                    lambda body: body + [parse_statement(source, f"{register_name}({key.name}.stop)")],
                )
            ]
        return self.finding(start.call, message, "Stop the client at exit (atexit)", build, imports)

    def _check_class(self, key: ClientKey, uses: List[Use], starts: List[Use], index: _Uses) -> Optional[Finding]:
        if _refs(uses, "stop") or (key.name, "stop") in index.attribute_chains:
            return None
        text = _text(key, starts[0])
        cls = key.scope.node.name  # type: ignore[attr-defined]
        message = (
            f"{text} is started but no method of {cls} stops it (close/stop/__exit__): when the "
            "process exits its session and ephemerals linger until the session timeout"
        )
        return self.finding(starts[0].call, message)

    @staticmethod
    def _protected(flow: Flow, start: Use, stops: List[Use]) -> bool:
        """Is there a stop() that runs when the code after start() raises?"""
        for stop in stops:
            if not flow.contains(stop.node):
                continue
            for try_stmt in flow.enclosing_try_finally(stop.node):
                if before(start.node, try_stmt) or _inside(start.node, try_stmt):
                    return True
            for handler in flow.enclosing_handler(stop.node):
                if _reraises_anywhere(handler) or _body_never_completes(flow, handler):
                    return True
        return False

    # -- fix

    def _function_fix(self, source, flow: Flow, key: ClientKey, start: Use) -> List[Edit]:
        stmt = _statement_call(flow, start.call)
        if stmt is None or not _runs_to_function_end(flow, stmt):
            raise FixError("start() is not a statement that the rest of the function follows")
        rest = list(flow.following(stmt))
        if not rest:
            raise FixError("nothing runs after start()")
        name = key.name
        # A stop()/close() statement after which the client is no longer used moves
        # into the finally block.
        moved: Dict[str, ast.stmt] = {}
        for i, candidate in enumerate(rest):
            method = _own_method_statement(candidate, name)
            if method in ("stop", "close") and method not in moved:
                later = rest[i + 1:]
                others = [s for s in later if _own_method_statement(s, name) not in ("stop", "close")]
                if not any(_mentions(s, name) for s in others):
                    moved[method] = candidate
        kept_ids = {id(s) for s in moved.values()}
        if all(id(s) in kept_ids for s in rest):
            raise FixError("nothing but stop()/close() after start()")

        def transform(body: List[cst.BaseStatement]) -> List[cst.BaseStatement]:
            if len(body) != len(rest):
                raise FixError("several statements share a line")
            by_line = dict(zip((id(s) for s in rest), body))
            inner = [node for s, node in zip(rest, body) if id(s) not in kept_ids]
            finals = []
            for method in ("stop", "close"):
                if method in moved:
                    finals.append(_strip_blank_lines(by_line[id(moved[method])]))
                else:
                    finals.append(parse_statement(source, f"{name}.{method}()"))
            leading = list(inner[0].leading_lines)
            blank = 0
            while blank < len(leading) and leading[blank].comment is None:
                blank += 1
            inner[0] = inner[0].with_changes(leading_lines=leading[blank:])
            template = parse_statement(source, "try:\n    pass\nfinally:\n    pass")
            indent = source.indent_unit  # explicit: the parsed snippet's default may be deeper
            try_node = template.with_changes(
                body=template.body.with_changes(body=inner, indent=indent),
                finalbody=template.finalbody.with_changes(
                    body=template.finalbody.body.with_changes(body=finals, indent=indent)
                ),
                leading_lines=leading[:blank],
            )
            return [try_node]

        return [statements_edit(source, rest, transform)]


def _runs_to_function_end(flow: Flow, stmt: ast.stmt) -> bool:
    """Do the statements after `stmt` in its block run up to the end of the function?

    True in the function body itself, and in the body of a ``with`` or of a ``try``
    without handlers or ``else`` that is the last statement of such a block (there only
    exit code of the ``with``/``finally`` follows, which wrapping keeps outside).
    """
    block = flow.block_of(stmt)
    while block is not None and block.owner is not None:
        owner = block.owner
        if block.field != "body":
            return False
        if isinstance(owner, ast.Try):
            if owner.handlers or owner.orelse:
                return False
        elif not isinstance(owner, (ast.With, ast.AsyncWith)):
            return False
        outer = flow.block_of(owner)
        if outer is None or outer.stmts[-1] is not owner:
            return False
        block = outer
    return block is not None


def _stops_right_away(flow: Flow, start: Use, stops: List[Use]) -> bool:
    """``zk.start()`` directly followed by ``zk.stop()``: nothing in between can raise."""
    stmt = flow.statement_of(start.call)
    following = flow.following(stmt) if stmt is not None else ()
    return bool(following) and any(_statement_call(flow, s.call) is following[0] for s in stops)


def _body_never_completes(flow: Flow, handler: ast.ExceptHandler) -> bool:
    """Does the ``try`` of this handler end in ``while True:`` with no break, so it is
    left only by an exception (``except KeyboardInterrupt: zk.stop()`` of a server loop)?"""
    try_stmt = flow.parent_statement(handler.body[0]) if handler.body else None
    if not isinstance(try_stmt, ast.Try) or not try_stmt.body:
        return False
    last = try_stmt.body[-1]
    if not (isinstance(last, ast.While) and isinstance(last.test, ast.Constant) and last.test.value is True):
        return False
    return not any(isinstance(n, (ast.Break, ast.Return)) for n in own_descendants(last))


def _inside(node: ast.AST, container: ast.AST) -> bool:
    return (container.lineno, container.col_offset) <= position(node) and (
        (node.end_lineno, node.end_col_offset) <= (container.end_lineno, container.end_col_offset)
    )


def _reraises_anywhere(handler: ast.ExceptHandler) -> bool:
    return any(isinstance(n, ast.Raise) for n in own_descendants(handler))


def _own_method_statement(stmt: ast.stmt, name: str) -> Optional[str]:
    """``name.method()`` as a statement of its own: the method, else None."""
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        func = stmt.value.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == name:
            return func.attr
    return None


def _mentions(stmt: ast.stmt, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in walk(stmt))


# ---- ZK202 ----------------------------------------------------------------------------


@register
class StopWithoutClose(Rule):
    code = "ZK202"
    name = "stop-without-close"
    summary = "stop() with no close() after it on that client."
    why = (
        "stop() ends the session, but the client keeps its resources: the connection's "
        "socket pair and the handler's queues stay allocated until close() releases them "
        "(kazoo: 'should be called on a stopped client before it is discarded. Not doing so "
        "may result in filehandles being leaked'). A process that creates clients over its "
        "life (per request, per task, in tests) leaks file descriptors until it hits its limit."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "\n"
        "def publish_config(hosts, data):\n"
        "    zk = KazooClient(hosts=hosts)\n"
        "    zk.start()\n"
        "    try:\n"
        "        zk.ensure_path(\"/app\")\n"
        "        zk.set(\"/app\", data)\n"
        "    finally:\n"
        "        zk.stop()\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "\n"
        "def publish_config(hosts, data):\n"
        "    zk = KazooClient(hosts=hosts)\n"
        "    zk.start()\n"
        "    try:\n"
        "        zk.ensure_path(\"/app\")\n"
        "        zk.set(\"/app\", data)\n"
        "    finally:\n"
        "        zk.stop()\n"
        "        zk.close()\n"
    )
    fix_safety = Safety.SAFE
    fix_safety_reason = (
        "close() right after stop() only releases what the stopped client holds; a stopped "
        "and closed client can still be started again."
    )
    limits = (
        "Only clients the code builds itself are checked. For a local client, a close() anywhere after the stop() "
        "in the function counts, and a start() after the stop() (a restart) or the client "
        "escaping after it (returned, passed on) silences it; for "
        "a module-level or class-owned client any close() of it anywhere in the module counts. "
        "The fix applies when the stop() call is a statement of its own line."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        index = _uses(model)
        for key, uses in index.by_key.items():
            stops = _called(uses, "stop")
            if not stops or not _owned(model, uses):
                continue
            closes = _refs(uses, "close")
            local = key.kind == "name" and key.scope.kind == "function"
            if not local and (closes or (key.kind == "attr" and (key.name, "close") in index.attribute_chains)):
                continue
            restarts = _called(uses, *START_METHODS)
            for stop in stops:
                if local:
                    if stop.scope is not key.scope and closes:
                        continue
                    escapes = [u for u in uses if u.kind == "escape"]
                    if any(before(stop.node, u.node) for u in closes + restarts + escapes):
                        continue  # closed, restarted, or handed on after the stop
                text = _text(key, stop)
                message = (
                    f"{text}.stop() is not followed by {text}.close(): the stopped client keeps its "
                    "socket pair and handler resources, leaking file descriptors"
                )
                flow = _flow(model, stop.scope)
                stmt = _statement_call(flow, stop.call) if flow is not None else None
                build = None
                if stmt is not None:
                    build = lambda source, stmt=stmt, text=text: [  # noqa: E731
                        statements_edit(
                            source, [stmt], lambda body: body + [parse_statement(source, f"{text}.close()")]
                        )
                    ]
                yield self.finding(stop.call, message, f"Call {text}.close() after stop()", build)


# ---- ZK203 / ZK204 ----------------------------------------------------------------------


def _first_operation(flow: Flow, anchor: ast.stmt, after: ast.AST, uses: List[Use], scope: Scope) -> Optional[Use]:
    """The first operation on the client that runs straight after `anchor`; None when it
    runs in a guarded try block (a handler may be the plan) or in a loop that also
    (re)starts the client (a later iteration may be the one that works)."""
    block = flow.block_of(anchor)
    starts = _refs(uses, *START_METHODS)
    for use in _called(uses, *OPERATIONS):
        if use.scope is not scope or not before(after, use.node) or not flow.contains(use.node):
            continue
        if not flow.straight_line_after(anchor, use.node):
            continue
        if flow.inside_guarded_try(use.node, block):
            return None
        for loop in flow.enclosing_loops(use.node, block):
            if any(_inside(s.node, loop) for s in starts):
                return None
        return use
    return None


@register
class CallBeforeStart(Rule):
    code = "ZK203"
    name = "call-before-start"
    summary = "A ZooKeeper operation on a client before start() has run."
    why = (
        "A KazooClient is created disconnected (state CLOSED). Until start() connects it, "
        "every operation fails at once with ConnectionClosedError('Connection has been "
        "closed'); nothing is queued for later. The program crashes at its first call, "
        "typically at startup or on the first request after a deploy."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "\n"
        "def read_config(hosts):\n"
        "    zk = KazooClient(hosts=hosts)\n"
        "    try:\n"
        "        data, _ = zk.get(\"/app/config\")\n"
        "    finally:\n"
        "        zk.stop()\n"
        "        zk.close()\n"
        "    return data\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "\n"
        "def read_config(hosts):\n"
        "    zk = KazooClient(hosts=hosts)\n"
        "    zk.start()\n"
        "    try:\n"
        "        data, _ = zk.get(\"/app/config\")\n"
        "    finally:\n"
        "        zk.stop()\n"
        "        zk.close()\n"
        "    return data\n"
    )
    fix_safety = Safety.SAFE
    fix_safety_reason = (
        "The code cannot run as written (the call raises); the fix starts the client right "
        "after it is built, which is what the call needs. It applies only when the client "
        "is started nowhere else, so no start order is changed."
    )
    limits = (
        "Only a client built in the same function (or module-level code) by a plain "
        "assignment of `KazooClient(...)` (or of a subclass defined in the module that never "
        "starts itself; clients from factory functions may come started), never patched "
        "(`zk.x = ...`), and an operation that follows it in straight-line order in that same "
        "scope: not in a loop or a try with except handlers, with no start()/start_async()/"
        "restart() and no escape of the client (passed, returned, read by a nested "
        "function) in between. A module-level client that any function starts is not "
        "checked (call order across functions is not followed). Only the first such "
        "operation is reported. When the client is started later (after the call) there is "
        "no fix: move that start() up by hand."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        index = _uses(model)
        for key, uses in index.by_key.items():
            if key.kind != "name" or key.scope.kind not in ("module", "function") or not _owned(model, uses):
                continue
            if any(key.name in s.global_names or key.name in s.nonlocal_names for s in model.scopes.values()):
                continue
            values = key.scope.bindings.get(key.name, ())
            if len(values) != 1 or not self._never_started_construction(values[0]):
                continue
            if any(u.kind == "patch" for u in uses):
                continue  # methods or state replaced by hand (tests, stubs)
            flow = _flow(model, key.scope)
            construction = flow.statement_of(values[0]) if flow is not None else None
            if not (
                isinstance(construction, ast.Assign) and construction.value is values[0]
                and len(construction.targets) == 1 and isinstance(construction.targets[0], ast.Name)
            ):
                continue
            starts = _called(uses, *START_METHODS) + [u for u in _refs(uses, *START_METHODS) if u.call is None]
            if any(u.scope is not key.scope for u in starts):
                continue  # a function starts it: call order across functions is not followed
            if key.scope.kind == "function" and any(u.scope is not key.scope for u in uses):
                continue
            op = _first_operation(flow, construction, construction, uses, key.scope)
            if op is None:
                continue
            if any(
                before(construction, u.node) and before(u.node, op.node) and (u.kind == "escape" or u in starts)
                for u in uses
            ):
                continue
            message = (
                f"{key.name}.{op.attr}() runs before {key.name}.start(): kazoo fails it with "
                "ConnectionClosedError on a client that was never started"
            )
            build = None
            if not starts:
                build = lambda source, stmt=construction, name=key.name: [  # noqa: E731
                    statements_edit(source, [stmt], lambda body: body + [parse_statement(source, f"{name}.start()")])
                ]
            yield self.finding(op.call, message, f"Start {key.name} right after it is built", build)

    def _never_started_construction(self, value) -> bool:
        """``KazooClient(...)``, or a subclass of this module that never starts itself."""
        model = self.model
        if not model.is_client_construction(value):
            return False
        if model.qualname(value.func) is not None:
            return model.qualname(value.func) == KAZOO_CLIENT
        cls = model.classes.get(value.func.id) if isinstance(value.func, ast.Name) else None
        if cls is None:
            return False
        return not any(
            isinstance(node, ast.Attribute) and node.attr in START_METHODS for node in walk(cls)
        )


@register
class StartAsyncNotAwaited(Rule):
    code = "ZK204"
    name = "start-async-not-awaited"
    summary = "start_async() whose event is not waited on before operations."
    why = (
        "start_async() returns at once with a threading.Event that is set when the "
        "connection is up. An operation issued before that fails with "
        "ConnectionClosedError while the client is still connecting, so code that ignores "
        "the event crashes or not depending on network timing: it passes on a laptop and "
        "fails in production. Wait on the event (with a timeout) and check "
        "client.connected, or call start(), which does both and raises on time-out."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "\n"
        "def register(hosts, name):\n"
        "    zk = KazooClient(hosts=hosts)\n"
        "    zk.start_async()\n"
        "    zk.create(\"/workers/\" + name, b\"up\", ephemeral=True)\n"
        "    return zk\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "\n"
        "def register(hosts, name):\n"
        "    zk = KazooClient(hosts=hosts)\n"
        "    zk.start()\n"
        "    zk.create(\"/workers/\" + name, b\"up\", ephemeral=True)\n"
        "    return zk\n"
    )
    fix_safety = Safety.SAFE
    fix_safety_reason = (
        "start() is start_async() followed by waiting for the connection (15 s) and raising "
        "KazooTimeoutError if it does not come: the operations that follow get the "
        "connected client they assume. Applied only to a bare `start_async()` statement."
    )
    limits = (
        "Only an operation that follows the start_async() in straight-line order in the same "
        "function (not in a loop or a try with except handlers). Anything in between that may "
        "wait silences it: a read of the returned event, of client.connected/state, a call "
        "named *wait* or *sleep*, another start, or the client escaping. An event kept in a "
        "variable that is never waited on is reported without a fix."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        index = _uses(model)
        for key, uses in index.by_key.items():
            for use in _called(uses, "start_async"):
                finding = self._check_one(key, uses, use)
                if finding is not None:
                    yield finding

    def _check_one(self, key: ClientKey, uses: List[Use], use: Use) -> Optional[Finding]:
        flow = _flow(self.model, use.scope)
        if flow is None or not flow.contains(use.call):
            return None
        stmt = flow.statement_of(use.call)
        event_name = None
        if isinstance(stmt, ast.Expr) and stmt.value is use.call:
            pass
        elif (
            isinstance(stmt, ast.Assign) and stmt.value is use.call
            and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
        ):
            event_name = stmt.targets[0].id
        else:
            return None
        op = _first_operation(flow, stmt, use.call, uses, use.scope)
        if op is None:
            return None
        if self._waits_between(flow, use, op, event_name, uses):
            return None
        text = _text(key, use)
        what = "its event is discarded" if event_name is None else f"the event in {event_name!r} is not waited on first"
        message = (
            f"{text}.start_async() returns before the connection is up and {what}: "
            f"{text}.{op.attr}() on line {op.node.lineno} can fail with ConnectionClosedError; use start()"
        )
        build = None
        if event_name is None:
            build = lambda source, stmt=stmt: [self._rename(source, stmt)]  # noqa: E731
        return self.finding(use.call, message, "Use start(), which waits for the connection", build)

    def _waits_between(self, flow: Flow, use: Use, op: Use, event_name: Optional[str], uses: List[Use]) -> bool:
        for node in flow.between(use.call, op.node):
            if event_name is not None and isinstance(node, ast.Name) and node.id == event_name:
                return True
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
                if "wait" in name.lower() or "sleep" in name.lower():
                    return True
        for other in uses:
            if before(use.call, other.node) and before(other.node, op.node) and other is not use:
                if other.kind == "escape" or other.scope is not use.scope:
                    return True
                if other.kind == "attr" and (other.attr in START_METHODS or other.attr in _STATE_ATTRIBUTES):
                    return True
        return False

    @staticmethod
    def _rename(source, stmt: ast.Expr) -> Edit:
        def transform(body: List[cst.BaseStatement]) -> List[cst.BaseStatement]:
            line = body[0]
            expr = line.body[0]
            call = expr.value
            func = call.func.with_changes(attr=cst.Name("start"))
            started = expr.with_changes(value=call.with_changes(func=func))
            return [line.with_changes(body=[started] + list(line.body[1:]))]

        return statements_edit(source, [stmt], transform)


# ---- ZK206 ----------------------------------------------------------------------------

_CLOSING = "contextlib.closing"


def _started_by_factory(model: ModuleModel, uses: List[Use]) -> bool:
    """Is the variable bound only to calls of functions of the module that start the
    client they return (``zk = connect()`` where ``connect`` calls ``start()``)?"""
    use = uses[0]
    constructions = model.constructions(use.node, use.scope)
    if not constructions:
        return False
    for call, scope in constructions:
        factory = model.resolve_function(call.func, scope) if not model.is_client_construction(call) else None
        if factory is None or not model.is_client_factory(factory):
            return False
        if not any(
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in START_METHODS
            for node in own_descendants(factory)
        ):
            return False
    return True


def _tests_connection(model: ModuleModel, test: ast.AST, key: ClientKey, scope: Scope) -> bool:
    """Does an ``if`` test read the client's connection state (``zk.connected``, ``zk.state``)?"""
    for node in own_descendants(test):
        if (
            isinstance(node, ast.Attribute) and node.attr in _STATE_ATTRIBUTES
            and model.read_key(node.value, scope) == key
        ):
            return True
    return False


@register
class CloseBeforeStop(Rule):
    code = "ZK206"
    name = "close-before-stop"
    summary = "close() on a client that may still be running: no stop() before it on that path."
    why = (
        "kazoo frees a client's resources in close() only once the connection has stopped; on a "
        "running client it raises Exception('Cannot close connection until it is stopped') "
        "(kazoo/protocol/connection.py). The cleanup itself crashes: an exception raised in a "
        "finally block hides the one that led there, and since stop() never ran, no Close "
        "request reaches ZooKeeper: the session, its ephemeral nodes, locks and leadership "
        "live on until the session timeout, so peers keep seeing a dead process. "
        "`contextlib.closing(client)` calls only close() on exit, so it fails the same way on a "
        "started client. The same happens when the only stop() is skipped on the path to "
        "close(): in the try body while close() is in the finally, or behind `if "
        "zk.connected:` (a SUSPENDED client is not connected but still running)."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "\n"
        "def publish(hosts, path, value):\n"
        "    zk = KazooClient(hosts=hosts)\n"
        "    zk.start()\n"
        "    try:\n"
        "        zk.create(path, value, ephemeral=True)\n"
        "        serve_forever()\n"
        "    finally:\n"
        "        zk.close()\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "\n"
        "def publish(hosts, path, value):\n"
        "    zk = KazooClient(hosts=hosts)\n"
        "    zk.start()\n"
        "    try:\n"
        "        zk.create(path, value, ephemeral=True)\n"
        "        serve_forever()\n"
        "    finally:\n"
        "        zk.stop()\n"
        "        zk.close()\n"
    )
    fix_safety = Safety.SAFE
    fix_safety_reason = (
        "The fix adds `<client>.stop()` right before the close() statement, which is what "
        "close() requires; stop() is idempotent, so a path that had already stopped the client "
        "behaves as before, and a path that had not now ends the session instead of raising. "
        "`with closing(client) [as client]:` becomes `try:` ... `finally:` with stop() then "
        "close() (a client built in the with item is assigned first, as closing() did)."
    )
    limits = (
        "Only clients started in the module are checked: a start()/start_async()/restart() on the "
        "same variable, or a function of the module that starts the client it returns. A stop() "
        "counts when it runs before the close() by plain sequence in the same function; when the "
        "only stop()s before it sit in the body of the try whose finally or except handler holds "
        "the close(), or behind an `if` on the client's connection state, the close() is "
        "reported; any other stop() before it (another condition, a loop) is trusted. For a "
        "module-level or class-owned client a stop() (or a `<client>.stop` reference) in any "
        "other function of the module is trusted: kazoo's own API has separate stop() and "
        "close(), and classes mirror it. A local client that escapes the function (passed to a "
        "function, returned, stored) is not checked. A `<client>.close` reference (e.g. "
        "atexit.register(zk.close)) is reported only when the module has no `<client>.stop` "
        "at all, and is not fixed. `closing(...)` is reported only when the with body never "
        "stops the client (a stop() only on its happy path is trusted); it is fixed only when it is the with "
        "statement's single item and the `as` target is absent or the client's own name. "
        "Closes inside `with pytest.raises(...)` are skipped, and so are closes in an except "
        "handler of a try whose body starts the client (kazoo stops a client whose start() fails)."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        index = _uses(model)
        for key, uses in index.by_key.items():
            closes = _refs(uses, "close")
            if not closes or not self._started(key, uses):
                continue
            local = key.kind == "name" and key.scope.kind == "function"
            if local and any(u.kind == "escape" for u in uses):
                continue
            stop_refs = _refs(uses, "stop")
            if not stop_refs and key.kind == "attr" and (key.name, "stop") in index.attribute_chains:
                continue  # `<other>.<attr>.stop()`: a user or subclass of the class stops it
            for close in closes:
                if close.call is None:
                    if not stop_refs:
                        text = _text(key, close)
                        yield self.finding(
                            self.model.parents().get(id(close.node), close.node),
                            f"{text}.close is handed on to run later but {text} is never stopped: close() "
                            "on a running client raises and its session outlives the process",
                        )
                    continue
                if self._stopped_before(key, close, stop_refs, _refs(uses, *START_METHODS)):
                    continue
                yield self._report(key, close)
        yield from self._closing_blocks(index)

    # -- facts

    def _started(self, key: ClientKey, uses: List[Use]) -> bool:
        return bool(_refs(uses, *START_METHODS)) or _started_by_factory(self.model, uses)

    def _stopped_before(self, key: ClientKey, close: Use, stops: List[Use], starts: List[Use]) -> bool:
        """Does a stop() run before this close(), or can the analysis not tell?"""
        flow = _flow(self.model, close.scope)
        if flow is None or not flow.contains(close.call) or flow.expected_to_raise(close.call):
            return True
        for handler in flow.enclosing_handler(close.call):
            try_stmt = flow.parent_statement(handler.body[0]) if handler.body else None
            if isinstance(try_stmt, ast.Try) and any(_inside(s.node, b) for s in starts for b in try_stmt.body):
                return True  # cleanup after a failed start(): kazoo stopped the client itself
        if any(s.scope is not close.scope for s in stops):
            # a stop in another function: a stop() method, a shutdown hook, a nested handler
            return True
        earlier = [s for s in stops if before(s.node, close.node)]
        for stop in earlier:
            if not self._skipped_on_the_way(flow, key, stop, close):
                return True  # runs before the close, or a shape the analysis trusts
        return False

    def _skipped_on_the_way(self, flow: Flow, key: ClientKey, stop: Use, close: Use) -> bool:
        """Is this earlier stop() one that a path to the close() provably skips?"""
        stop_stmt = flow.statement_of(stop.node)
        if stop_stmt is None:
            return False
        if flow.straight_line_after(stop_stmt, close.call):
            return False  # plain sequence: stop() runs first
        for try_stmt in flow.enclosing_try_finally(close.call) + [
            flow.parent_statement(h.body[0]) for h in flow.enclosing_handler(close.call) if h.body
        ]:
            if isinstance(try_stmt, ast.Try) and any(_inside(stop.node, s) for s in try_stmt.body):
                return True  # the body raised before its stop(): the cleanup runs without it
        stmt = flow.parent_statement(stop_stmt) if stop_stmt is not None else None
        while stmt is not None:
            if isinstance(stmt, ast.If) and _tests_connection(self.model, stmt.test, key, stop.scope):
                return flow.straight_line_after(stmt, close.call)
            stmt = flow.parent_statement(stmt)
        return False

    # -- reports

    def _report(self, key: ClientKey, close: Use) -> Finding:
        text = _text(key, close)
        message = (
            f"{text}.close() may run while {text} is still running (no stop() before it on this path): "
            "kazoo raises 'Cannot close connection until it is stopped' and the session lives on"
        )
        flow = _flow(self.model, close.scope)
        stmt = _statement_call(flow, close.call) if flow is not None else None
        build = None
        if stmt is not None:
            build = lambda source: [  # noqa: E731
                statements_edit(source, [stmt], lambda body: [
                    parse_statement(source, f"{text}.stop()").with_changes(leading_lines=body[0].leading_lines),
                    body[0].with_changes(leading_lines=()),
                ] + list(body[1:]))
            ]
        return self.finding(close.call, message, f"Call {text}.stop() before close()", build)

    def _closing_blocks(self, index: _Uses) -> Iterator[Finding]:
        model = self.model
        for stmt, scope in model.withs:
            if not isinstance(stmt, ast.With):
                continue
            for item in stmt.items:
                call = item.context_expr
                if not (isinstance(call, ast.Call) and model.qualname(call.func) == _CLOSING and len(call.args) == 1):
                    continue
                finding = self._check_closing(index, stmt, item, scope)
                if finding is not None:
                    yield finding

    def _check_closing(self, index: _Uses, stmt: ast.With, item: ast.withitem, scope: Scope) -> Optional[Finding]:
        model = self.model
        client = item.context_expr.args[0]  # type: ignore[attr-defined]
        target = item.optional_vars
        flow = _flow(model, scope)
        if flow is None or not flow.contains(stmt) or flow.expected_to_raise(stmt):
            return None
        key = model.read_key(client, scope) if not isinstance(client, ast.Call) else None
        if key is not None:
            uses = index.by_key.get(key, [])
            if not uses or not self._started(key, uses):
                return None
            text = _text(key, uses[0])
            stopped = any(_inside(u.node, stmt) for u in _refs(uses, "stop"))
        elif model.is_client_expr(client, scope) and isinstance(target, ast.Name):
            # `with closing(KazooClient(...)) as zk:` the model does not follow the with
            # target, so its methods are read from the body: zk.start(), zk.stop.
            text = target.id
            methods = {
                node.attr for node in walk(stmt)
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == text
            }
            if not methods & START_METHODS:
                return None
            stopped = "stop" in methods
        else:
            return None
        if stopped:
            # Any stop in the body is trusted: whether an exception can come between a
            # successful start() and that stop() (`try: start() except: return; else: stop()`)
            # is more than the analysis can tell.
            return None
        message = (
            f"closing({text}) only calls close() on exit, and {text} is started: kazoo raises 'Cannot "
            "close connection until it is stopped' and the session lives on; stop it in a finally"
        )
        fixable = (
            len(stmt.items) == 1
            and (target is None or (isinstance(target, ast.Name) and target.id == text))
            and stmt.body[0].lineno > stmt.lineno
        )
        build = (lambda source: [self._closing_fix(source, stmt, text)]) if fixable else None
        return self.finding(item.context_expr, message, "Stop and close the client in a finally block", build)

    @staticmethod
    def _closing_fix(source, stmt: ast.With, text: str) -> Edit:
        def transform(statements: List[cst.BaseStatement]) -> List[cst.BaseStatement]:
            node = statements[0]
            if not isinstance(node, cst.With) or len(node.items) != 1 or not isinstance(node.body, cst.IndentedBlock):
                raise FixError("unexpected with statement")
            argument = node.items[0].item.args[0].value
            out: List[cst.BaseStatement] = []
            leading, header = node.leading_lines, node.body.header
            template = parse_statement(source, f"try:\n    pass\nfinally:\n    {text}.stop()\n    {text}.close()")
            if isinstance(argument, cst.Call):  # `with closing(KazooClient(...)) as zk:`
                out.append(cst.SimpleStatementLine(
                    body=[cst.Assign(targets=[cst.AssignTarget(target=cst.Name(text))], value=argument)],
                    leading_lines=leading,
                    trailing_whitespace=header,  # the with line's comment stays on its line
                ))
                leading, header = (), template.body.header
            indent = source.indent_unit
            out.append(template.with_changes(
                body=template.body.with_changes(body=node.body.body, indent=indent, header=header),
                finalbody=template.finalbody.with_changes(
                    body=template.finalbody.body.with_changes(indent=indent)
                ),
                leading_lines=leading,
            ))
            return out

        return statements_edit(source, [stmt], transform)
