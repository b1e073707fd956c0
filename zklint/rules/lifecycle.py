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
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

from zklint.lazy_import import libcst as cst  # imported on first use: fixes only

from zklint.cst_helpers import keyword_index, set_keyword
from zklint.fixer import FixError, expression_edit, parse_expression, parse_statement, render, statements_edit
from zklint.flow import Flow, before, own_descendants, position
from zklint.model import (
    KAZOO_CLIENT, CallIndex, ClientKey, ModuleModel, ReadPlace, Scope, argument, keyword, own_nodes, read_place, walk,
)
from zklint.facts import ENDS, USES
from zklint.findings import Edit, Finding, Import, Safety
from zklint.rules.base import Rule, register
from zklint.rules.index import calls_to


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


class Use(NamedTuple):
    """One read of a client variable (a tuple: the rules make one per read)."""

    node: ast.expr  # the Name or self.<attr> expression
    scope: Scope
    # "attr" (zk.<x>), "patch" (zk.<x> = ...), "test" (if zk / zk is None / a recipe's
    # argument), "escape"
    kind: str
    attr: Optional[str] = None  # for kind "attr"
    call: Optional[ast.Call] = None  # when the attribute is called: zk.<x>(...)
    # a call of a helper that stops and closes the client (`finalize(zk)`): attr "stop",
    # and a close() with it
    ends: bool = False


class _Uses:
    """Every read of every client variable in the module, by client."""

    def __init__(self, model: ModuleModel) -> None:
        self.model = model
        self.by_key: Dict[ClientKey, List[Use]] = {}
        self.attribute_chains = model.attribute_chains
        by_key = self.by_key
        parents = model.parents()
        for node, scope, key in model.client_reads():
            by_key.setdefault(key, []).append(self._classify(node, read_place(node, parents), scope))
        for uses in by_key.values():
            uses.sort(key=lambda u: position(u.node))

    def _classify(self, node: ast.expr, place: ReadPlace, scope: Scope) -> Use:
        if place.kind == "attribute":
            if place.store:
                return Use(node, scope, "patch", place.attr)  # zk.attr = ... / del zk.attr
            return Use(node, scope, "attr", place.attr, place.call)  # called: zk.<x>(...)
        if place.kind == "argument":
            call = place.call
            # Handing the client to a kazoo recipe (DataWatch, Lock, Election...) keeps
            # it with its owner: recipes never stop or close their client.
            if (self.model.qualname(call.func) or "").startswith("kazoo.recipe."):
                return Use(node, scope, "test")
            # A callee the project shows only using the client (no start/stop/close, no
            # listener, not kept anywhere) leaves it with its owner: a use, not a hand-off;
            # one that stops and closes it, and does nothing else that owns it, ends it there.
            effect = self.model.call_effect(call, node, scope)
            if effect == USES:
                return Use(node, scope, "test")
            if effect == ENDS:
                return Use(node, scope, "attr", "stop", call, ends=True)
            return Use(node, scope, "escape")
        return Use(node, scope, "test" if place.kind == "test" else "escape")


def _uses(model: ModuleModel) -> _Uses:
    return model.shared("_zk2_uses", lambda: _Uses(model))


def _factory_assignments(model: ModuleModel) -> List[Tuple[ast.Assign, Scope]]:
    """Every ``<target> = <call>`` (one target) whose call is a factory the project shows
    starting the client it returns, in `model.assignments` order.

    Found once per model: ZK201 (a started client never read) and ZK205 (a start by a
    factory before a fork) both ask.
    """
    return model.shared("_zk2_factory_assignments", lambda: [
        (assign, scope) for assign, scope in model.assignments
        if assign.value.__class__ is ast.Call and len(assign.targets) == 1
        and model.project_factory(assign.value, scope)
    ] if model.facts.factories else [])  # no factory known: no call is one


def _declared_names(model: ModuleModel) -> frozenset:
    """Every name some scope of the module declares ``global`` or ``nonlocal``; kept on the model."""
    return model.shared("_zk2_declared_names", lambda: frozenset(
        name for scope in model.scopes.values() for name in scope.global_names | scope.nonlocal_names
    ))


def _flow(model: ModuleModel, scope: Scope) -> Optional[Flow]:
    if scope.kind not in ("module", "function") or isinstance(scope.node, ast.Lambda):
        return None
    cache = model.__dict__.setdefault("_zk2_flows", {})
    flow = cache.get(id(scope.node))
    if flow is None:
        flow = cache[id(scope.node)] = Flow(scope.node, model.parents())
    return flow


def _owned(model: ModuleModel, uses: List[Use]) -> bool:
    """Is the client built by the code that holds it (not received from a caller)?"""
    use = uses[0]
    constructions = model.constructions(use.node, use.scope, own_only=True)
    if not constructions:
        return False
    return all(model.is_client_expr(call, scope) for call, scope in constructions)


def _brings_own(model: ModuleModel, uses: List[Use]) -> bool:
    """Does the variable also hold a client the code was given (bring your own client)?"""
    everything = model.constructions(uses[0].node, uses[0].scope) if uses else None
    owned = model.constructions(uses[0].node, uses[0].scope, own_only=True) if uses else None
    return everything is None and owned is not None


def _started_by_factory(model: ModuleModel, key: ClientKey, uses: List[Use]) -> List[Use]:
    """``zk = connect(hosts)`` where the project shows `connect` starting the client it
    returns: the call is the start (as a use of its own, at the call)."""
    if not uses:
        return []
    constructions = model.constructions(uses[0].node, uses[0].scope, own_only=True)
    if not constructions or (key.kind == "name" and len(constructions) != 1):
        return []
    # a local takes its start from its one construction; an attribute (`self.zk =
    # get_started_client()` in some method) from any factory call that starts it
    return [Use(call, scope, "attr", "start", call) for call, scope in constructions
            if model.project_factory(call, scope)][:1]


def _text(key: ClientKey, use: Use) -> str:
    if key.kind == "attr":
        owner = getattr(use.node, "value", None)
        # a start by a factory call (no `<self>.<attr>` read at hand) reads as self.<attr>
        return f"{owner.id if isinstance(owner, ast.Name) else 'self'}.{key.name}"
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
        "__exit__), so the fix only adds the stop at process exit; a close() method remains "
        "the better end. The atexit fix is not offered for a client the program restart()s: "
        "restarting ends the session on purpose to drop its ephemeral nodes (a leader key), "
        "so the program decides when they go and may mean them to outlive an exit (patroni "
        "keeps its leader key when it stops while paused); a stop at exit would delete them."
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
        "followed by stop() is not reported. A class that uses the caller's client or builds "
        "its own (`self.zk = zk` in one branch) is reported when it never stops the one it "
        "builds, without a fix: a stop registered after start() would stop the caller's too."
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
        yield from self._never_read(index)

    def _never_read(self, index: _Uses) -> Iterator[Finding]:
        """``zk = connect(hosts)`` (a factory that starts the client) and `zk` never read
        again: nothing can stop it. (A client that is read has its uses above.)"""
        model = self.model
        for assign, scope in _factory_assignments(model):
            call = assign.value
            if assign.targets[0].__class__ is not ast.Name:
                continue
            key = model.client_key(assign.targets[0], scope)
            if key is None or key in index.by_key or key.scope is not scope:
                continue
            if len(scope.bindings.get(key.name, ())) != 1:
                continue
            start = [Use(call, scope, "attr", "start", call)]
            finding = None
            if scope.kind == "function":
                finding = self._check_function(key, start, start)
            elif scope.kind == "module":
                finding = self._check_module(key, start, start)
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
            build, imports = _atexit_fix(self.model, flow, start, name, uses)
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
        stmt = _statement_call(flow, start.call)
        build = None
        if stmt is not None and _runs_to_function_end(flow, stmt) and list(flow.following(stmt)):
            build = lambda source: self._function_fix(source, flow, key, start)  # noqa: E731
        # else no fix rather than one that fails when applied (start() inside a try with
        # handlers, or a client from a factory whose call is not a statement of its own)
        return self.finding(start.call, message, "Stop and close the client in a finally block", build)

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
        build, imports = _atexit_fix(self.model, flow, start, key.name, uses)
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
        build, imports = _atexit_fix(self.model, flow, starts[0], text, uses) if flow is not None else (None, ())
        if _brings_own(self.model, uses):
            # `self.zk = zk` in one branch: a stop registered after start() would stop the
            # caller's client too; which one to stop is the class's decision
            build, imports = None, ()
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


def _atexit_fix(model: ModuleModel, flow: Flow, start: Use, name: str, uses: List[Use]):
    """``atexit.register`` of close() then stop() right after the ``start()`` statement:
    atexit runs the last registered first, so the client is stopped, then closed."""
    stmt = _statement_call(flow, start.call)
    if stmt is None or _called(uses, "restart"):
        # restart() ends the session on purpose to drop its ephemerals (patroni's
        # _delete_leader): the program decides when they go, and may mean them to
        # outlive an exit (a leader key kept while paused); a stop at exit would not.
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
                parent = parents.get(parents.get(use.node))
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
            call = parents.get(use.node)
            call = parents.get(call) if isinstance(call, ast.keyword) else call
            if not isinstance(call, ast.Call):
                continue
            recipe = (model.qualname(call.func) or "").rpartition(".")[2]
            if recipe in _LEFT_BY_RECIPE:
                return _LEFT_BY_RECIPE[recipe]
        else:
            continue
        if call is None or recipe not in _LOCK_RECIPES | _PARTY_RECIPES | {"Election"}:
            continue
        holder = parents.get(call)
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
    parent = parents.get(attribute)
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
                if stop.ends:
                    continue  # a helper that closes what it stops
                if local:
                    if stop.scope is not key.scope and closes:
                        continue
                    escapes = [u for u in uses if u.kind == "escape"]
                    if any(before(stop.node, u.node) for u in closes + restarts + escapes):
                        continue  # closed, restarted, or handed on after the stop
                elif any(r.scope is stop.scope and before(stop.node, r.node) for r in restarts):
                    # stop(); set_hosts(...); start(): a restart (kazoo reuses the stopped
                    # client's resources), not a shutdown
                    continue
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
            if key.name in _declared_names(model):
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


# ---- ZK206 ----------------------------------------------------------------------------

_CLOSING = "contextlib.closing"


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
                            self.model.parents().get(close.node, close.node),
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
        return bool(_refs(uses, *START_METHODS)) or bool(_started_by_factory(self.model, key, uses))

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


# ---- ZK205 ----------------------------------------------------------------------------

# multiprocessing's start methods that do not fork the parent (the child builds its own state).
_NON_FORK_METHODS = frozenset({"spawn", "forkserver"})
_FUNCTION_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)
_PROCESS_CLASSES = frozenset({"multiprocessing.Process", "multiprocessing.context.Process"})
_POOL_CLASSES = frozenset({"multiprocessing.Pool", "multiprocessing.pool.Pool"})
_EXECUTOR_CLASSES = frozenset({
    "concurrent.futures.ProcessPoolExecutor", "concurrent.futures.process.ProcessPoolExecutor",
})
_GET_CONTEXT = frozenset({"multiprocessing.get_context", "multiprocessing.context.get_context"})
_SET_START_METHOD = frozenset({"multiprocessing.set_start_method"})
# Pool / executor methods whose first argument runs in a worker process.
_POOL_TASK_METHODS = frozenset({
    "apply", "apply_async", "map", "map_async", "imap", "imap_unordered", "starmap", "starmap_async", "submit",
})
_CELERY_APPS = frozenset({"celery.Celery"})
_CELERY_SHARED_TASK = frozenset({"celery.shared_task"})
_PROCESS_EXITS = frozenset({"os._exit", "sys.exit", "os.abort", "os.execv", "os.execvp", "os.execl", "os.execlp"})
# Calls on an inherited client that do not wait for a reply: listeners, start() (a no-op on a
# live client) and the lifecycle calls (stop() stalls for its timeout, then raises: not "never").
_NOT_HANGING = frozenset({"add_listener", "remove_listener", "start", "start_async", "stop", "close", "restart"})


@dataclass(frozen=True)
class _Child:
    """Code that runs in a forked child: a function, or the child branch of an ``os.fork()``."""

    fork: ast.AST  # the os.fork()/Process/pool task call, the Process subclass, or the task function
    scope: Scope  # where the fork happens (for a task: the module, which the server imports first)
    how: str  # "a child forked by os.fork() (line 12)", for messages
    advice: str
    function: Optional[ast.AST] = None  # the function the child runs
    statements: Tuple[ast.stmt, ...] = ()  # or the child branch, in `scope`
    client_params: Tuple[Tuple[str, ClientKey], ...] = ()  # target parameters handed a parent's client
    initializers: Tuple[ast.AST, ...] = ()  # pool initializers: they run in the child first
    import_time_only: bool = False  # only a client started at import time is started before it


_FORK_ADVICE = "build and start a new client in the child"
_PROCESS_ADVICE = (
    "build and start the client in the child process (its target or run()) or use "
    "multiprocessing.get_context(\"spawn\")"
)
_POOL_ADVICE = (
    "build and start the client in the worker (e.g. a Pool initializer) or use "
    "multiprocessing.get_context(\"spawn\")"
)
_TASK_ADVICE = "start the client in each worker process (celery's worker_process_init signal) instead"


@register
class ClientSharedAcrossFork(Rule):
    code = "ZK205"
    name = "client-shared-across-fork"
    summary = "A client started before the process forks is used in the child process."
    why = (
        "kazoo does nothing at fork. The child process gets a copy of the started client "
        "object but not its connection thread (fork copies only the thread that called it), "
        "so every synchronous call in the child queues its request and waits for a reply no "
        "thread will ever read: it never returns. Meanwhile parent and child share one TCP "
        "socket and one session, so a request written by one can be answered to the other "
        "(kazoo issues 519, 554, 628). This happens with os.fork(), with "
        "multiprocessing.Process/Pool and ProcessPoolExecutor under the fork start method "
        "(the default on Linux before Python 3.14), and with prefork servers that import "
        "the application before forking their workers, such as Celery's default prefork "
        "pool: a client started at import time is inherited by every worker. Start the "
        "client in the child (after the fork), or use the spawn start method."
    )
    example = (
        "import multiprocessing\n"
        "\n"
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "zk.start()\n"
        "\n"
        "\n"
        "def load(name):\n"
        "    data, _ = zk.get(\"/jobs/\" + name)\n"
        "    return len(data)\n"
        "\n"
        "\n"
        "if __name__ == \"__main__\":\n"
        "    with multiprocessing.Pool(4) as pool:\n"
        "        print(pool.map(load, [\"a\", \"b\", \"c\"]))\n"
    )
    use_instead = (
        "import multiprocessing\n"
        "\n"
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = None\n"
        "\n"
        "\n"
        "def connect():\n"
        "    global zk\n"
        "    zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "    zk.start()\n"
        "\n"
        "\n"
        "def load(name):\n"
        "    data, _ = zk.get(\"/jobs/\" + name)\n"
        "    return len(data)\n"
        "\n"
        "\n"
        "if __name__ == \"__main__\":\n"
        "    with multiprocessing.Pool(4, initializer=connect) as pool:\n"
        "        print(pool.map(load, [\"a\", \"b\", \"c\"]))\n"
    )
    fix_safety = None
    limits = (
        "Within one module. The fork: `os.fork()` whose child branch is recognised (`if pid == 0:`, "
        "`if not pid:`, the `else` of `if pid:`/`if pid != 0:`/`if pid > 0:`, and what follows a parent "
        "branch that always exits); `multiprocessing.Process(target=...)` (a client handed to it in "
        "`args=(...)` included) and `Process` subclasses' `run`; `Pool`/`ProcessPoolExecutor` task "
        "methods (`map`, `imap`, `starmap`, `apply_async`, `submit`...) on a pool built in the same "
        "function or bound to one name; Celery tasks (`@app.task` of a `Celery(...)` app, "
        "`@shared_task`), whose prefork worker imports the module before forking, unless the module "
        "sets `worker_pool` to another pool (a worker started with `-P solo`/`threads`/`gevent` on the "
        "command line does not fork either: a false alarm there). A `get_context(\"spawn\"/"
        "\"forkserver\")` context, `mp_context=` of that kind, or `set_start_method(\"spawn\"/"
        "\"forkserver\")` anywhere in the module silences multiprocessing; an unknown context or "
        "start method too. The rule assumes the fork default of Linux before Python 3.14 (macOS and "
        "Windows spawn by default). The client: started (`start()`/`start_async()`, or bound to a call "
        "of a module function that starts the client it returns) at import time (module-level code "
        "outside `if __name__ == \"__main__\":`), in straight-line code of the function that forks "
        "before the fork, or as `self.<attr>` in `__init__` of the class whose method forks (or whose "
        "`run` is the child). A client started lazily by a getter the parent happened to call before "
        "forking (kazoo issue 628) is not followed. The use: a call on that client in the child's "
        "code, or in a same-module function the child calls directly (on the client it names, or on "
        "one the child hands it as an argument); stop()/close() are not counted (they stall, then "
        "raise). Silent when the child (or a pool initializer, or that function) rebinds the client. "
        "Web applications are not flagged: gunicorn imports the application after forking unless "
        "`preload_app` is set, uWSGI before unless `lazy-apps` is set, which the module does not show. "
        "A client imported from another module of the project is seen when that module starts it at "
        "import time (the project layer says so); a fork in another module that runs this module's "
        "functions in its children is not followed."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        starts: Dict[ClientKey, List[ast.Call]] = {}
        by_scope: Dict[int, List[Tuple[ast.Call, ClientKey, str]]] = {}
        for site, key, method in model.client_calls():
            if method in ("start", "start_async"):
                starts.setdefault(key, []).append(site.node)
            by_scope.setdefault(id(site.scope.node), []).append((site.node, key, method))
        self._by_scope = by_scope
        self._add_factory_starts(starts)
        if not starts and not model.facts.module_clients:
            return
        self._starts = starts
        reported = set()
        for child in self._children():
            for node, message in self._hits(child):
                if id(node) not in reported:
                    reported.add(id(node))
                    yield self.finding(node, message)

    def _add_factory_starts(self, starts: Dict[ClientKey, List[ast.Call]]) -> None:
        """``zk = connect()`` where connect() (in this module or another of the project)
        starts the client it returns: the call starts `zk` (kazoo issue 519's shape)."""
        model = self.model
        for assign, scope in _factory_assignments(model):
            call = assign.value
            key = model.client_key(assign.targets[0], scope)
            if key is not None:
                starts.setdefault(key, []).append(call)

    # -- where the process forks ---------------------------------------------------------

    def _children(self) -> Iterator[_Child]:
        model = self.model
        default = self._default_start_method()
        # only calls of a fork, a process or a pool task (by name) can start a child
        for site in CallIndex.of(model).calls(
            names={"Process"} | _POOL_TASK_METHODS, qualified={"os.fork"} | _PROCESS_CLASSES,
        ):
            call, scope = site.node, site.scope
            qual = model.qualname(call.func)
            if qual == "os.fork":
                child = self._fork_child(call, scope)
                if child is not None:
                    yield child
            elif self._is_process(call, scope, default):
                target = argument(call, 1, "target")
                function = model.resolve_function(target, scope) if target is not None else None
                if function is not None:
                    yield _Child(
                        call, scope, f"a multiprocessing child process (line {call.lineno}, fork start method)",
                        _PROCESS_ADVICE, function, client_params=self._client_params(call, target, function, scope),
                    )
            elif isinstance(call.func, ast.Attribute) and call.func.attr in _POOL_TASK_METHODS and call.args:
                pool = self._pool(call.func.value, scope, default)
                if pool is None:
                    continue
                function = model.resolve_function(call.args[0], scope)
                if function is not None:
                    yield _Child(
                        call, scope,
                        f"a pool worker process ({call.func.attr}() on line {call.lineno}, fork start method)",
                        _POOL_ADVICE, function, initializers=pool,
                    )
        prefork: Optional[bool] = None  # asked once there is a task
        for node, scope in model.scopes.items():
            if isinstance(node, ast.ClassDef) and default == "fork" and any(
                model.qualname(base) in _PROCESS_CLASSES for base in node.bases
            ):
                run = next((s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "run"), None)
                if run is not None:
                    yield _Child(node, scope, f"the child process of {node.name} (a multiprocessing.Process)",
                                 _PROCESS_ADVICE, run)
            elif isinstance(node, _FUNCTION_DEFS) and self._is_celery_task(node):
                if prefork is None:
                    prefork = not self._celery_without_fork()
                if not prefork:
                    continue
                yield _Child(
                    node, model.module_scope,
                    f"a Celery prefork worker, forked after importing this module ({node.name} is a task)",
                    _TASK_ADVICE, node, import_time_only=True,
                )

    def _default_start_method(self) -> Optional[str]:
        """multiprocessing's start method for this module: fork unless it sets another."""
        method: Optional[str] = "fork"
        for site in calls_to(self.model, _SET_START_METHOD):
            chosen = argument(site.node, 0, "method")
            if isinstance(chosen, ast.Constant) and chosen.value in _NON_FORK_METHODS:
                return chosen.value
            if not (isinstance(chosen, ast.Constant) and chosen.value == "fork"):
                method = None
        return method

    def _context_method(self, expr: ast.AST, scope: Scope, default: Optional[str]) -> Optional[str]:
        """The start method of a multiprocessing context expression (None: unknown)."""
        values = self.model.constructions(expr, scope)
        if not values or len(values) != 1:
            return None
        call = values[0][0]
        if self.model.qualname(call.func) not in _GET_CONTEXT:
            return None
        chosen = argument(call, 0, "method")
        if chosen is None or (isinstance(chosen, ast.Constant) and chosen.value is None):
            return default
        return chosen.value if isinstance(chosen, ast.Constant) and isinstance(chosen.value, str) else None

    def _made_by(self, call: ast.Call, scope: Scope, classes: frozenset, factory: str, default: Optional[str]) -> bool:
        """``Cls(...)`` of the fork start method, or ``<context>.<factory>(...)`` of a fork context."""
        if self.model.qualname(call.func) in classes:
            return default == "fork"
        if isinstance(call.func, ast.Attribute) and call.func.attr == factory:
            return self._context_method(call.func.value, scope, default) == "fork"
        return False

    def _is_process(self, call: ast.Call, scope: Scope, default: Optional[str]) -> bool:
        return self._made_by(call, scope, _PROCESS_CLASSES, "Process", default)

    def _pool(self, expr: ast.AST, scope: Scope, default: Optional[str]) -> Optional[Tuple[ast.AST, ...]]:
        """For a fork-method pool `expr`: its initializers (possibly none). None: not such a pool."""
        constructions = self._pool_constructions(expr, scope)
        if not constructions:
            return None
        initializers: List[ast.AST] = []
        for call, call_scope in constructions:
            if self._made_by(call, call_scope, _POOL_CLASSES, "Pool", default):
                init = argument(call, 1, "initializer")
            elif self.model.qualname(call.func) in _EXECUTOR_CLASSES:
                context = argument(call, 1, "mp_context")
                if context is None or (isinstance(context, ast.Constant) and context.value is None):
                    if default != "fork":
                        return None
                elif self._context_method(context, call_scope, default) != "fork":
                    return None
                init = argument(call, 2, "initializer")
            else:
                return None
            if init is not None and not (isinstance(init, ast.Constant) and init.value is None):
                function = self.model.resolve_function(init, call_scope)
                if function is None:
                    return None  # an initializer we cannot read may build the child's client
                initializers.append(function)
        return tuple(initializers)

    def _pool_constructions(self, expr: ast.AST, scope: Scope) -> Optional[List[Tuple[ast.Call, Scope]]]:
        """The calls that built the pool `expr` names: assignments, or ``with Pool() as pool``."""
        if isinstance(expr, ast.Call):
            return [(expr, scope)]
        if not isinstance(expr, ast.Name):
            return None
        owner = self.model.lookup(expr.id, scope)
        if owner is None:
            return None
        found: List[Tuple[ast.Call, Scope]] = []
        for stmt, with_scope in self.model.withs:
            if with_scope is not owner:
                continue
            for item in stmt.items:
                var = item.optional_vars
                if isinstance(var, ast.Name) and var.id == expr.id and isinstance(item.context_expr, ast.Call):
                    found.append((item.context_expr, owner))
        bindings = owner.bindings.get(expr.id, ())
        assigned = [v for v in bindings if isinstance(v, ast.Call)]
        if len(found) + len(assigned) != len(bindings):
            return None  # bound to something else too (a parameter, a loop target...)
        return found + [(v, owner) for v in assigned]

    def _client_params(
        self, call: ast.Call, target: ast.AST, function: ast.AST, scope: Scope
    ) -> Tuple[Tuple[str, ClientKey], ...]:
        """Parameters of the Process target that ``args=(...)`` hands a client."""
        args = argument(call, 3, "args")
        if not isinstance(args, (ast.Tuple, ast.List)):
            return ()
        return tuple(self._clients_for_params(args.elts, function, isinstance(target, ast.Attribute), scope).items())

    def _celery_without_fork(self) -> bool:
        """The module configures a Celery pool that does not fork (``worker_pool = "solo"``...)."""
        for assign, _ in self.model.assignments:
            if any(isinstance(t, ast.Attribute) and t.attr == "worker_pool" for t in assign.targets) and not (
                isinstance(assign.value, ast.Constant) and assign.value.value == "prefork"
            ):
                return True
        for site in self.model.calls:
            pool = keyword(site.node, "worker_pool")
            if pool is not None and not (isinstance(pool.value, ast.Constant) and pool.value.value == "prefork"):
                return True
        return False

    def _is_celery_task(self, func: ast.AST) -> bool:
        model = self.model
        for deco in func.decorator_list:
            target = deco.func if isinstance(deco, ast.Call) else deco
            if model.qualname(target) in _CELERY_SHARED_TASK:
                return True
            if isinstance(target, ast.Attribute) and target.attr == "task" and isinstance(target.value, ast.Name):
                values = model.constructions(target.value, model.module_scope)
                if values and all(model.qualname(call.func) in _CELERY_APPS for call, _ in values):
                    return True
        return False

    def _fork_child(self, call: ast.Call, scope: Scope) -> Optional[_Child]:
        """The child branch of ``pid = os.fork()`` / ``if os.fork() == 0:``."""
        flow = _flow(self.model, scope)
        if flow is None or not flow.contains(call):
            return None
        stmt = flow.statement_of(call)
        test_stmt, is_pid = None, None
        if isinstance(stmt, ast.If) and any(node is call for node in own_descendants(stmt.test)):
            test_stmt, is_pid = stmt, (lambda e: e is call)
        elif (
            isinstance(stmt, ast.Assign) and stmt.value is call
            and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
        ):
            pid = stmt.targets[0].id
            for following in flow.following(stmt):
                if any(isinstance(n, ast.Name) and n.id == pid for n in own_descendants(following)):
                    if isinstance(following, ast.If):
                        test_stmt = following
                        is_pid = lambda e, pid=pid: isinstance(e, ast.Name) and e.id == pid  # noqa: E731
                    break
        if test_stmt is None:
            return None
        branch = _child_branch(test_stmt.test, is_pid)
        if branch is None:
            return None
        child, parent = (test_stmt.body, test_stmt.orelse) if branch == "body" else (test_stmt.orelse, test_stmt.body)
        statements = list(child)
        if not self._leaves(child) and self._leaves(parent):
            statements.extend(flow.following(test_stmt))
        return _Child(call, scope, f"a child forked by os.fork() (line {call.lineno})", _FORK_ADVICE,
                      statements=tuple(statements))

    def _leaves(self, stmts: List[ast.stmt]) -> bool:
        """Does this branch always end the process or leave the block?"""
        if not stmts:
            return False
        last = stmts[-1]
        if isinstance(last, ast.Expr) and isinstance(last.value, ast.Call):
            return self.model.qualname(last.value.func) in _PROCESS_EXITS
        return isinstance(last, (ast.Return, ast.Raise, ast.Continue, ast.Break))

    # -- the client the child uses ---------------------------------------------------------

    def _hits(self, child: _Child) -> Iterator[Tuple[ast.AST, str]]:
        for node, key, method, via in self._uses(child):
            start = self._started_before(key, child)
            if start is None or self._rebound_in_child(key, child, via):
                continue
            subject = f"{ast.unparse(node.func)}()"
            if via is not None:
                subject += f" (calls {ast.unparse(via[1].func)}() on line {via[1].lineno})"
            yield node, (
                f"{subject} runs in {child.how} on a client started before the fork (line "
                f"{start.lineno}): the child has no connection thread, so the call never returns, and "
                f"both processes share one socket and session; {child.advice}"
            )

    def _uses(self, child: _Child) -> Iterator[Tuple[ast.Call, ClientKey, str, Optional[Tuple[ast.AST, ast.Call]]]]:
        """(call, client, method, via) for each client call the child's code makes; via is
        (helper, its call) when the call is in a same-module function the child calls (on a
        client it names, or on one the child hands it as an argument)."""
        for node, key, method in self._direct_uses(child):
            yield node, key, method, None
        scope = child.scope if child.function is None else self.model.function_scope(child.function)
        if scope is None:
            return
        for node in self._child_nodes(child):
            if not isinstance(node, ast.Call) or not isinstance(node.func, (ast.Name, ast.Attribute)):
                continue
            target = self.model.resolve_function(node.func, scope)
            if target is None or target is child.function or isinstance(target, ast.Lambda):
                continue
            # a call on a parameter this call hands the client to is a call on that client
            # (the project layer may know the parameter as a client of its own: the
            # caller's binding is the one that says whether it was started before the fork)
            handed = list(self._parameter_calls(target, self._handed_clients(node, target, scope)))
            seen = {id(inner) for inner, _, _ in handed}
            inner_calls = [(inner, key, method) for inner, key, method in self._calls_in(target)
                           if method not in _NOT_HANGING and id(inner) not in seen] + handed
            for inner, key, method in sorted(inner_calls, key=lambda c: position(c[0])):
                yield node, key, method, (target, inner)
                break

    def _direct_uses(self, child: _Child) -> Iterator[Tuple[ast.Call, ClientKey, str]]:
        if child.function is not None:
            for node, key, method in self._calls_in(child.function):
                if method not in _NOT_HANGING:
                    yield node, key, method
            yield from self._parameter_calls(child.function, dict(child.client_params))
            return
        inside = {id(n) for stmt in child.statements for n in own_descendants(stmt)}
        for node, key, method in self._by_scope.get(id(child.scope.node), ()):
            if id(node) in inside and method not in _NOT_HANGING:
                yield node, key, method

    def _parameter_calls(
        self, function: ast.AST, params: Dict[str, ClientKey]
    ) -> Iterator[Tuple[ast.Call, ClientKey, str]]:
        """Calls on the parameters of `function` that the caller hands a client (never rebound)."""
        scope = self.model.function_scope(function)
        if not params or scope is None:
            return
        for node in own_descendants(function):
            if (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id in params
                and node.func.attr not in _NOT_HANGING
                and len(scope.bindings.get(node.func.value.id, ())) == 1
            ):
                yield node, params[node.func.value.id], node.func.attr

    def _handed_clients(self, call: ast.Call, target: ast.AST, scope: Scope) -> Dict[str, ClientKey]:
        """Parameters of `target` that `call` passes a client to, by position."""
        return self._clients_for_params(call.args, target, isinstance(call.func, ast.Attribute), scope)

    def _clients_for_params(
        self, values: List[ast.expr], function: ast.AST, bound: bool, scope: Scope
    ) -> Dict[str, ClientKey]:
        """Parameter name -> client for the positional `values` a call hands `function`
        (`bound`: called as a method, so self is not among them)."""
        if isinstance(function, ast.Lambda) or any(isinstance(v, ast.Starred) for v in values):
            return {}
        params = function.args.posonlyargs + function.args.args
        if bound:
            params = params[1:]
        found = {}
        for param, value in zip(params, values):
            key = self.model.read_key(value, scope)
            if key is not None:
                found[param.arg] = key
        return found

    def _calls_in(self, function: ast.AST) -> List[Tuple[ast.Call, ClientKey, str]]:
        return self._by_scope.get(id(function), [])

    def _child_nodes(self, child: _Child) -> Iterator[ast.AST]:
        if child.function is not None:
            yield from own_descendants(child.function)
        else:
            for stmt in child.statements:
                yield from own_descendants(stmt)

    def _started_before(self, key: ClientKey, child: _Child) -> Optional[ast.AST]:
        """A start() of `key` that runs before the fork, if the module shows one (or the
        import of a client another module of the project starts when it is imported)."""
        model = self.model
        if model.imported_client_started(key):
            return self._import_of(key.name)
        for start in self._starts.get(key, ()):
            start_scope = self._scope_of_call(start)
            if start_scope is None:
                continue
            flow = _flow(model, start_scope)
            if flow is None or not flow.contains(start):
                continue
            if start_scope is child.scope and not child.import_time_only:
                # the fork is in the same code: the start must run first, in straight line
                if flow.contains(child.fork) and flow.straight_line_after(flow.statement_of(start), child.fork):
                    return start
            elif start_scope is model.module_scope:
                # a fork in a function (or a prefork server's) comes after the module's import
                if key.scope is model.module_scope and self._at_import_time(flow, start):
                    return start
            elif (
                not child.import_time_only and key.kind == "attr"
                and getattr(start_scope.node, "name", None) == "__init__"
                and start_scope.enclosing_class is key.scope and self._in_class(child, key.scope)
                and flow.block_of(flow.statement_of(start)).owner is None
            ):
                return start  # __init__ runs before any other method of the instance forks
        return None

    def _import_of(self, name: str) -> Optional[ast.stmt]:
        for stmt in self.model.tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)) and any(
                (alias.asname or alias.name.partition(".")[0]) == name for alias in stmt.names
            ):
                return stmt
        return None

    def _in_class(self, child: _Child, cls: Scope) -> bool:
        """Does the fork happen in a method of `cls` (or is the child `cls`'s own run())?"""
        if child.fork is cls.node:
            return True
        scope: Optional[Scope] = child.scope
        while scope is not None and scope.kind == "function":
            if scope.enclosing_class is cls:
                return True
            scope = scope.parent
        return False

    def _scope_of_call(self, call: ast.Call) -> Optional[Scope]:
        scopes = self.__dict__.get("_call_scopes")
        if scopes is None:
            scopes = self.__dict__["_call_scopes"] = {id(site.node): site.scope for site in self.model.calls}
        return scopes.get(id(call))

    @staticmethod
    def _at_import_time(flow: Flow, node: ast.AST) -> bool:
        """Module-level code that runs when the module is imported (not under ``__main__``)."""
        return not any(
            isinstance(block.owner, ast.If) and _is_main_guard(block.owner.test) for block in flow.blocks(node)
        )

    def _rebound_in_child(self, key: ClientKey, child: _Child, via) -> bool:
        """The child (a pool initializer, the helper it calls) binds the client variable anew."""
        functions = list(child.initializers) + ([child.function] if child.function is not None else [])
        if via is not None:
            functions.append(via[0])
        for function in functions:
            scope = self.model.function_scope(function)
            if scope is None:
                continue
            if key.kind == "name" and key.name in scope.bindings and (
                key.name in scope.global_names or key.scope is scope
            ):
                return True
            if key.kind == "attr" and any(t.attr == key.name for t, _ in self.model.attribute_stores.get(scope, ())):
                return True
        for stmt in child.statements:
            for node in own_descendants(stmt):
                if isinstance(node, ast.Name) and node.id == key.name and isinstance(node.ctx, ast.Store):
                    return True
                if isinstance(node, ast.Attribute) and node.attr == key.name and isinstance(node.ctx, ast.Store):
                    return True
        return False


def _is_main_guard(test: ast.AST) -> bool:
    """``__name__ == "__main__"`` (either side)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides
    )


def _child_branch(test: ast.AST, is_pid) -> Optional[str]:
    """Which branch of ``if <test>:`` the fork's child takes: "body", "orelse" or None (unknown)."""
    if is_pid(test):
        return "orelse"  # if pid: parent
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and is_pid(test.operand):
        return "body"  # if not pid: child
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, op, right = test.left, test.ops[0], test.comparators[0]
        if is_pid(right) and isinstance(left, ast.Constant):
            left, right = right, left
            op = {ast.Gt: ast.Lt(), ast.Lt: ast.Gt()}.get(type(op), op)
        if is_pid(left) and isinstance(right, ast.Constant) and right.value == 0:
            if isinstance(op, (ast.Eq, ast.Is)):
                return "body"
            if isinstance(op, (ast.NotEq, ast.IsNot, ast.Gt)):
                return "orelse"
    return None
