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

from zklint.cst_helpers import keyword_index, set_keyword
from zklint.fixer import FixError, expression_edit, parse_expression, parse_statement, render, statements_edit
from zklint.flow import Flow, before, own_descendants, position
from zklint.model import KAZOO_CLIENT, ClientKey, ModuleModel, Scope, argument, keyword, own_nodes, walk
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


def _text(key: ClientKey, use: Use) -> str:
    if key.kind == "attr":
        return f"{use.node.value.id}.{key.name}"  # type: ignore[union-attr]
    return key.name


def _called(uses: List[Use], *methods: str) -> List[Use]:
    return [u for u in uses if u.kind == "attr" and u.attr in methods and u.call is not None]


def _refs(uses: List[Use], *methods: str) -> List[Use]:
    return [u for u in uses if u.kind == "attr" and u.attr in methods]


def _statement_call(flow: Flow, call: ast.Call) -> Optional[ast.Expr]:
    """The ``<call>`` expression statement when the call is a statement of its own."""
    stmt = flow.statement_of(call)
    if isinstance(stmt, ast.Expr) and stmt.value is call:
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
        "method that stops it. A function that registers an ephemeral node, a watch or a "
        "listener and returns means its client to live on: that client is leaked at process "
        "exit, not at the function's return, and needs a stop at exit (atexit), never a "
        "finally that would end the registration at once. A stop() behind `if "
        "zk.connected:` is skipped exactly when the client is SUSPENDED (the server briefly "
        "unreachable), the moment a stop matters: stop() is valid in every state."
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
        "Safe, in three shapes. (1) A function that does not mean the client to outlive it "
        "(it stops the client on its happy path, or leaves nothing running on it, or never "
        "returns normally: it ends in raise, sys.exit() or a `while True:` it never leaves): "
        "the statements after start(), to the end of the function, go into try/finally with "
        "stop() then close(); a stop()/close() at the end of the happy path moves into the "
        "finally. The happy path does what it did (stop() and close() are idempotent); exits "
        "by exception now stop the client too. (2) A client meant to outlive its function "
        "(the function leaves an ephemeral node, a watch, a state listener, a joined party, "
        "an election run elsewhere or an acquired lock behind it, has no stop(), and can "
        "return) and a module-level client: `atexit.register(<client>.close)` then "
        "`atexit.register(<client>.stop)` right after start() (atexit runs the last "
        "registered first, so stop() runs before close()). The client lives exactly as "
        "long as before, until the interpreter exits, and then ends its session. A "
        "try/finally there would stop it when the function returns, deregistering the "
        "service or killing the watch at once, so it is never offered. (3) A stop() only "
        "behind `if <client>.connected:` (or `<client>.state == KazooState.CONNECTED`), whose "
        "body is only stop()/close() and which has no else: the test is removed. stop() is "
        "idempotent and valid in every state; the test only skipped it while SUSPENDED. "
        "A client owned by a class that no method stops gets the same atexit registration "
        "after its start() (`atexit.register(self.zk.close)`, `atexit.register(self.zk.stop)`): "
        "where the instance's lifetime ends is the class's design (a close() method, "
        "__exit__), so the fix only adds the stop at process exit, which no design "
        "contradicts; a close() method remains the better end."
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
        "code after start(); a stop() inside `if <client>.connected:` (or a CONNECTED state "
        "comparison) does not count. Module-level clients are checked only when start() runs in "
        "module-level code; a class's client only when no `<x>.<attr>.stop` appears "
        "anywhere in the module (subclasses or users may stop it). Clients started in a "
        "function but stored in a global are not checked. What a function leaves behind is "
        "read from its own calls on the client (ephemeral create, also through retry; "
        "DataWatch/ChildrenWatch; add_listener; a watch= read; Party.join; Lock/Semaphore "
        "acquire() with no release() or with; Election.run not called in place), not from "
        "functions it calls. The try/finally fix applies only "
        "when start() is a statement of the function body (or of a with/try-finally block "
        "that ends the function), the atexit fix only when start() is a statement; a "
        "`connected` test combined with other conditions (`and`) is left in place (the "
        "try/finally fix then adds an unconditional stop around it). A start() directly "
        "followed by stop() is not reported."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        index = _uses(model)
        for key, uses in index.by_key.items():
            starts = _called(uses, "start", "start_async")
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
        all_stops = _called(uses, "stop")
        if any(u.scope is not key.scope for u in all_stops + starts):
            return None  # a nested function (a signal handler, a shutdown hook) stops it
        flow = _flow(self.model, key.scope)
        if flow is None:
            return None
        start = starts[0]
        stops = [s for s in all_stops if not _behind_connection_test(flow, s, key.name)]
        if self._protected(flow, start, stops) or _stops_right_away(flow, start, stops):
            return None
        if all(flow.expected_to_raise(u.node) for u in starts):
            return None  # a test expecting start() to time out: kazoo stops and closes it then
        name = key.name
        function = key.scope.node
        left = _left_behind(self.model, uses, function)
        if left is not None and not all_stops and _returns_normally(function):
            # The program means the client to live on after the function returns: the
            # leak is at process exit, and only a stop at process exit keeps that intent.
            function_name = function.name  # type: ignore[attr-defined]
            message = (
                f"{name} is meant to outlive {function_name}() (it leaves {left} behind) but "
                "nothing stops it at process exit: the session and its ephemerals linger "
                "until the session timeout after the process is gone"
            )
            build, imports = _atexit_fix(self.model, flow, start, name)
            return self.finding(start.call, message, _ATEXIT_TITLE, build, imports)
        guarded = [s for s in all_stops if s not in stops]
        if guarded and not stops:
            reason = f"stop() only behind a test of {name}.connected, skipped while SUSPENDED"
        else:
            reason = "stop() only on the happy path" if stops else "no stop() at all"
        message = (
            f"{name} is started but not stopped on every exit ({reason}): after an exception "
            "its session and ephemerals outlive the process until the session timeout"
        )
        unguard = _unguard_fix(flow, guarded, name)
        if unguard is not None:
            return self.finding(start.call, message, f"Stop {name} whatever its connection state", unguard)
        return self.finding(
            start.call, message, "Stop and close the client in a finally block",
            lambda source: self._function_fix(source, flow, key, start),
        )

    def _check_module(self, key: ClientKey, uses: List[Use], starts: List[Use]) -> Optional[Finding]:
        module_scope = self.model.module_scope
        starts = [u for u in starts if u.scope is module_scope]
        all_stops = _called(uses, "stop")
        if not starts or any(u.scope is not module_scope for u in all_stops):
            return None  # stopped by a function: a shutdown hook the analysis cannot follow
        flow = _flow(self.model, module_scope)
        start = starts[0]
        stops = [s for s in all_stops if not _behind_connection_test(flow, s, key.name)]
        if self._protected(flow, start, stops) or _stops_right_away(flow, start, stops):
            return None
        guarded = [s for s in all_stops if s not in stops]
        if guarded and not stops:
            reason = f"stop() only behind a test of {key.name}.connected, skipped while SUSPENDED"
        else:
            reason = "stop() only on the happy path" if stops else "no stop() at all"
        message = (
            f"module-level client {key.name} is not stopped at shutdown ({reason}): after the "
            "process exits its session and ephemerals linger until the session timeout"
        )
        unguard = _unguard_fix(flow, guarded, key.name)
        if unguard is not None:
            return self.finding(start.call, message, f"Stop {key.name} whatever its connection state", unguard)
        build, imports = _atexit_fix(self.model, flow, start, key.name)
        return self.finding(start.call, message, _ATEXIT_TITLE, build, imports)

    def _check_class(self, key: ClientKey, uses: List[Use], starts: List[Use], index: _Uses) -> Optional[Finding]:
        if _refs(uses, "stop") or (key.name, "stop") in index.attribute_chains:
            return None
        text = _text(key, starts[0])
        cls = key.scope.node.name  # type: ignore[attr-defined]
        message = (
            f"{text} is started but no method of {cls} stops it (close/stop/__exit__): when the "
            "process exits its session and ephemerals linger until the session timeout"
        )
        # The instance keeps the client for as long as it likes; only a stop at process
        # exit is sure not to come earlier than the class meant.
        flow = _flow(self.model, starts[0].scope)
        build, imports = _atexit_fix(self.model, flow, starts[0], text) if flow is not None else (None, ())
        return self.finding(starts[0].call, message, _ATEXIT_TITLE, build, imports)

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


_ATEXIT_TITLE = "Stop and close the client at process exit (atexit)"


def _atexit_fix(model: ModuleModel, flow: Flow, start: Use, name: str):
    """``atexit.register`` of close() then stop() right after the ``start()`` statement:
    atexit runs the last registered first, so the client is stopped, then closed."""
    stmt = _statement_call(flow, start.call)
    if stmt is None:
        return None, ()
    imports: Tuple[Import, ...] = ()
    register_name = model.local_name_for("atexit.register")
    if register_name is None:
        register_name = "atexit.register"
        imports = (Import("atexit"),)
    lines = (
        f"{register_name}({name}.close)  # atexit runs these in reverse: stop(), then close()",
        f"{register_name}({name}.stop)",
    )
    build = lambda source: [  # noqa: E731
        statements_edit(source, [stmt], lambda body: body + [parse_statement(source, line) for line in lines])
    ]
    return build, imports


def _connection_test(test: ast.expr, name: str) -> bool:
    """``<name>.connected`` or ``<name>.state == KazooState.CONNECTED`` (possibly in an
    ``and``): true only while the client is connected, false while SUSPENDED."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return any(_connection_test(v, name) for v in test.values)
    if isinstance(test, ast.Attribute) and test.attr == "connected":
        return isinstance(test.value, ast.Name) and test.value.id == name
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Eq, ast.Is)):
        left, right = test.left, test.comparators[0]
        for state, value in ((left, right), (right, left)):
            if (
                isinstance(state, ast.Attribute) and state.attr in ("state", "client_state")
                and isinstance(state.value, ast.Name) and state.value.id == name
            ):
                text = value.attr if isinstance(value, ast.Attribute) else getattr(value, "value", None)
                return text in ("CONNECTED", "CONNECTED_RO")
    return False


def _behind_connection_test(flow: Flow, stop: Use, name: str) -> bool:
    """Does this stop() run only when an ``if`` found the client connected?"""
    stmt = flow.statement_of(stop.call)
    while stmt is not None:
        parent = flow.parent_statement(stmt)
        if isinstance(parent, ast.If) and any(s is stmt for s in parent.body) and _connection_test(parent.test, name):
            return True
        stmt = parent
    return False


def _unguard_fix(flow: Flow, guarded: List[Use], name: str):
    """``if zk.connected:`` whose body is only ``zk.stop()`` (and ``zk.close()``), with no
    else: the body without the test. stop() is idempotent and safe in every state."""
    for stop in guarded:
        stmt = _statement_call(flow, stop.call)
        test = flow.parent_statement(stmt) if stmt is not None else None
        if not (isinstance(test, ast.If) and not test.orelse and _connection_test(test.test, name)):
            continue
        if isinstance(test.test, ast.BoolOp):
            continue  # the other operands may guard something else
        if not all(_own_method_statement(s, name) in ("stop", "close") for s in test.body):
            continue

        def build(source, test=test):
            def transform(body: List[cst.BaseStatement]) -> List[cst.BaseStatement]:
                if_node = body[0]
                inner = list(if_node.body.body)
                if not isinstance(if_node.body, cst.IndentedBlock):
                    raise FixError("the if body shares its line")
                first = inner[0].with_changes(leading_lines=list(if_node.leading_lines) + list(inner[0].leading_lines))
                return [first] + inner[1:]
            return [statements_edit(source, [test], transform)]

        return build
    return None


# Kazoo recipes a function can leave running behind it (kazoo.recipe.*, or the client's
# attribute of the same name): what each one leaves.
_LEFT_BY_RECIPE = {
    "DataWatch": "a watch", "ChildrenWatch": "a watch", "PatientChildrenWatch": "a watch",
    "TreeCache": "a tree cache (watches)",
}
_LOCK_RECIPES = frozenset({"Lock", "ReadLock", "WriteLock", "Semaphore"})
_PARTY_RECIPES = frozenset({"Party", "ShallowParty"})
_WATCHED_READS = frozenset({"get", "get_async", "exists", "exists_async", "get_children", "get_children_async"})


def _left_behind(model: ModuleModel, uses: List[Use], function: ast.AST) -> Optional[str]:
    """What a function leaves running on its client when it returns: an ephemeral node,
    a watch, a state listener, a joined party, a lock it acquires and never releases,
    an election run elsewhere. None when it leaves nothing (or nothing we can see)."""
    parents = model.parents()
    recipes: Dict[str, str] = {}  # local name -> recipe it holds
    for use in uses:
        if use.kind == "attr":
            call = use.call
            if call is None:
                # zk.create handed to zk.retry(zk.create, path, ephemeral=True)
                parent = parents.get(id(parents.get(id(use.node))))
                call = parent if isinstance(parent, ast.Call) and use.attr in ("create", "create_async") else None
            if use.attr in ("create", "create_async") and call is not None and _truthy_keyword(call, "ephemeral"):
                return "an ephemeral node"
            if use.attr in _LEFT_BY_RECIPE:
                return _LEFT_BY_RECIPE[use.attr]
            if use.attr == "add_listener":
                return "a state listener"
            if use.attr in _WATCHED_READS and call is not None and _truthy_keyword(call, "watch"):
                return "a watch"
            recipe = use.attr
        elif use.kind == "test":
            call = parents.get(id(use.node))
            call = parents.get(id(call)) if isinstance(call, ast.keyword) else call
            if not isinstance(call, ast.Call):
                continue
            recipe = (model.qualname(call.func) or "").rpartition(".")[2]
            if recipe in _LEFT_BY_RECIPE:
                return _LEFT_BY_RECIPE[recipe]
        else:
            continue
        if call is None or recipe not in _LOCK_RECIPES | _PARTY_RECIPES | {"Election"}:
            continue
        holder = parents.get(id(call))
        if isinstance(holder, ast.Assign) and len(holder.targets) == 1 and isinstance(holder.targets[0], ast.Name):
            recipes[holder.targets[0].id] = recipe
        elif isinstance(holder, ast.Attribute) and recipe in _PARTY_RECIPES and holder.attr == "join":
            return "a party membership (an ephemeral node)"
    if not recipes:
        return None
    methods: Dict[str, Dict[str, List[ast.Attribute]]] = {}
    in_with = set()
    for node in own_nodes(function):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in recipes:
            methods.setdefault(node.value.id, {}).setdefault(node.attr, []).append(node)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            in_with.update(i.context_expr.id for i in node.items if isinstance(i.context_expr, ast.Name))
    for name, recipe in recipes.items():
        used = methods.get(name, {})
        if recipe in _LOCK_RECIPES and used.get("acquire") and not used.get("release") and name not in in_with:
            return "a held lock"
        if recipe in _PARTY_RECIPES and used.get("join"):
            return "a party membership (an ephemeral node)"
        if recipe == "Election" and any(not _is_called(parents, a) for a in used.get("run", ())):
            return "an election"  # election.run handed to a thread: it runs on after the return
    return None


def _is_called(parents, attribute: ast.Attribute) -> bool:
    parent = parents.get(id(attribute))
    return isinstance(parent, ast.Call) and parent.func is attribute


def _truthy_keyword(call: ast.Call, name: str) -> bool:
    kw = keyword(call, name)
    return kw is not None and not (isinstance(kw.value, ast.Constant) and not kw.value.value)


def _returns_normally(function: ast.AST) -> bool:
    """Can the function return to its caller (a ``return``, or the end of its body)?
    False when it ends in ``raise``, ``sys.exit()`` or a ``while True:`` it never leaves."""
    if any(isinstance(n, ast.Return) for n in own_nodes(function)):
        return True
    body = function.body  # type: ignore[attr-defined]
    last = body[-1]
    if isinstance(last, ast.Raise):
        return False
    if isinstance(last, ast.While) and isinstance(last.test, ast.Constant) and last.test.value is True:
        return any(isinstance(n, ast.Break) for n in own_descendants(last))
    if isinstance(last, ast.Expr) and isinstance(last.value, ast.Call):
        func = last.value.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if (func.value.id, func.attr) in (("sys", "exit"), ("os", "_exit")):
                return False
    return True


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
        "Safe, in three shapes; in each the code cannot run as written (the call raises). "
        "(1) `add_auth(scheme, credential)` as a statement of the block that builds the "
        "client: the pair moves into the constructor's `auth_data=` list (appended to a "
        "literal list already there) and the call goes. kazoo authenticates with auth_data on "
        "connect and on every reconnect, as add_auth after start() does, and the client is "
        "still started where it was (a factory keeps handing back an unstarted client, so "
        "callers can add listeners before connecting). Refused when the arguments read a name "
        "assigned after the construction or the client itself, when a call in them would "
        "move across other calls, for a conditional add_auth, and for a constructor with "
        "`**options` or an auth_data that is not a list literal. (2) A later plain "
        "`<client>.start()` in the block of the first operation: it moves up to just before "
        "the statement holding that operation, so what ran before the operation (listeners, "
        "recipes, credentials) still runs before start(). Refused when the statements it "
        "passes over call anything but operations on the client or use the client otherwise "
        "(a listener added there would miss CONNECTED). (3) No start() anywhere: start() right "
        "after the client is built, only when the client does not leave its scope; a factory "
        "that returns or hands on its client unstarted gets no fix, since its callers decide "
        "when it connects."
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
        "operation is reported. Reported without a fix: an operation in a factory that "
        "hands its client on unstarted (adding start() would change when callers connect), "
        "a later start() with other work between it and the operation, a start() with "
        "arguments computed at run time, a conditional add_auth with no later start()."
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
            if op.attr == "add_auth":
                # Credentials belong in the constructor (kazoo sends auth_data on every
                # connect); starting the client here would change when it connects.
                build = _auth_data_fix(flow, construction, op, key.name)
                title = "Pass the credentials as auth_data= to the constructor"
                if build is None and starts:
                    build = _move_start_up(flow, op, starts, uses, key.name)
                    title = f"Move {key.name}.start() up, before add_auth()"
            elif starts:
                build = _move_start_up(flow, op, starts, uses, key.name)
                title = f"Move {key.name}.start() up, before its first operation"
            elif any(u.kind == "escape" for u in uses):
                # A factory hands the client on: its callers decide when it connects
                # (listeners first, then start()), so no start() is added here.
                build, title = None, ""
            else:
                build = lambda source, stmt=construction, name=key.name: [  # noqa: E731
                    statements_edit(source, [stmt], lambda body: body + [parse_statement(source, f"{name}.start()")])
                ]
                title = f"Start {key.name} right after it is built"
            yield self.finding(op.call, message, title, build)

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


# KazooClient(hosts, timeout, client_id, handler, default_acl, auth_data, ...)
_AUTH_DATA_POSITION = 5


def _auth_data_fix(flow: Flow, construction: ast.Assign, op: Use, name: str):
    """``zk.add_auth(scheme, credential)`` before start(), a statement of the block that
    builds the client: the pair moves into the constructor's ``auth_data=`` list (kazoo
    authenticates with it on connect, and on every reconnect, as add_auth would have).
    None when the arguments could mean something else at construction time."""
    stmt = _statement_call(flow, op.call)
    call = construction.value
    if stmt is None or flow.block_of(stmt) != flow.block_of(construction):
        return None  # a conditional add_auth is not the constructor's business
    args = _auth_arguments(op.call)
    if args is None or any(isinstance(a, ast.Starred) for a in call.args) or len(call.args) > _AUTH_DATA_POSITION:
        return None
    if any(kw.arg is None for kw in call.keywords):
        return None  # **options may carry auth_data already
    existing = keyword(call, "auth_data")
    if existing is not None and not isinstance(existing.value, ast.List):
        return None
    between = list(flow.between(construction, stmt))
    stored = {n.id for n in between if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    for arg in args:
        names = {n.id for n in walk(arg) if isinstance(n, ast.Name)}
        if name in names or names & stored:
            return None  # the value is computed after the client is built
        if any(isinstance(n, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)) for n in walk(arg)):
            if any(isinstance(n, ast.Call) for n in between):
                return None  # moving the call would reorder it with other calls

    def build(source):
        pair = f"({source.segment(args[0])}, {source.segment(args[1])})"

        def add_pair(expr):
            if existing is None:
                return set_keyword(expr, "auth_data", parse_expression(source, f"[{pair}]"))
            index = keyword_index(expr, "auth_data")
            entries = expr.args[index].value
            text = render(source, entries)
            inner = text[1:-1].rstrip().rstrip(",")
            joined = f"[{inner}, {pair}]" if inner.strip() else f"[{pair}]"
            return set_keyword(expr, "auth_data", parse_expression(source, joined))

        return [expression_edit(source, call, add_pair), _remove_statement(source, stmt)]

    return build


def _auth_arguments(call: ast.Call) -> Optional[Tuple[ast.expr, ast.expr]]:
    if any(isinstance(a, ast.Starred) for a in call.args) or any(kw.arg is None for kw in call.keywords):
        return None
    if len(call.args) + len(call.keywords) != 2:
        return None
    scheme = argument(call, 0, "scheme")
    credential = argument(call, 1, "credential")
    if scheme is None or credential is None:
        return None
    return scheme, credential


def _remove_statement(source, stmt: ast.stmt) -> Edit:
    """Delete a statement's whole lines (its block keeps at least one other statement)."""
    def transform(body):
        if any(line.comment is not None for line in body[0].leading_lines):
            raise FixError("a comment sits above the statement")
        return []
    edit = statements_edit(source, [stmt], transform)
    return Edit(edit.start, edit.end, "")


def _move_start_up(flow: Flow, op: Use, starts: List[Use], uses: List[Use], name: str):
    """A plain ``name.start()`` statement later in the block that holds the first
    operation moves up, just before the statement holding that operation. Everything
    that ran before the operation (listeners added, recipes built) still runs before
    start(); refused when the statements it passes over do anything but operations on
    the client (those would run in another order relative to the connection)."""
    later = [u for u in starts if u.call is not None and before(op.node, u.node) and u.attr == "start"]
    if not later:
        return None
    stmt = _statement_call(flow, later[0].call)
    if stmt is None or later[0].call.args or later[0].call.keywords and not all(
        isinstance(kw.value, ast.Constant) for kw in later[0].call.keywords
    ):
        return None
    block = flow.block_of(stmt)
    holder = flow.sibling_in(block, op.node) if block is not None else None
    if holder is None:
        return None
    run = list(block.stmts[block.index(holder):block.index(stmt) + 1])
    operation_calls = {id(u.call) for u in _called(uses, *OPERATIONS)}
    for other in run[1:-1]:
        for node in walk(other):
            if isinstance(node, ast.Call) and id(node) not in operation_calls:
                return None  # something else would now run after the connection is up
    for use in uses:
        if before(holder, use.node) and before(use.node, stmt) and not (
            use.kind == "attr" and use.attr in OPERATIONS and use.call is not None
        ):
            return None  # a listener, a state read or a hand-off sees the client unstarted today

    def build(source):
        def transform(body):
            if len(body) != len(run):
                raise FixError("several statements share a line")
            start_line, first = body[-1], body[0]
            comments = [line for line in start_line.leading_lines if line.comment is not None]
            moved = start_line.with_changes(leading_lines=list(first.leading_lines) + comments)
            first = first.with_changes(leading_lines=[])
            return [moved, first] + body[1:-1]
        return [statements_edit(source, run, transform)]

    return build


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
        "connected client they assume. Applied to a bare `start_async()` statement, and to "
        "`<event> = start_async()` in a function that never reads <event> (the binding is "
        "dead). When the event is read later (returned, waited on after the operations) "
        "there is no fix: calling start() as well would restart the connection attempt, and "
        "any other object in its place would not track the connection as kazoo's event does."
    )
    limits = (
        "Only an operation that follows the start_async() in straight-line order in the same "
        "function (not in a loop or a try with except handlers). Anything in between that may "
        "wait silences it: a read of the returned event, of client.connected/state, a call "
        "named *wait* or *sleep*, another start, or the client escaping. An event kept in a "
        "variable that is read somewhere (but not waited on before the operations) is "
        "reported without a fix."
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
        elif not self._ever_read(use.scope, event_name):
            # The event is bound and never looked at: the binding is dead, and start()
            # is start_async() plus the wait the code forgot.
            build = lambda source, stmt=stmt, text=text: [  # noqa: E731
                statements_edit(source, [stmt], lambda body: [
                    parse_statement(source, f"{text}.start()").with_changes(
                        leading_lines=body[0].leading_lines, trailing_whitespace=body[0].trailing_whitespace
                    )
                ])
            ]
        return self.finding(use.call, message, "Use start(), which waits for the connection", build)

    def _ever_read(self, scope: Scope, name: str) -> bool:
        """Is `name` read anywhere in the scope's function, nested functions included
        (or declared global/nonlocal, so read elsewhere)?"""
        if scope.kind != "function" or name in scope.global_names or name in scope.nonlocal_names:
            return True
        return any(
            isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load)
            for node in walk(scope.node)
        )

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
