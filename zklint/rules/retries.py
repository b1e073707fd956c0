"""ZK4: retry policies and timeouts."""

from __future__ import annotations

import ast
from typing import Iterator, List, Optional, Union

from zklint.lazy_import import libcst as cst  # imported on first use: fixes only

from zklint import cst_helpers
from zklint.fixer import FixError, expression_edit, insert_lines_edit, parse_expression
from zklint.model import KAZOO_CLIENT, KAZOO_RETRY, CallIndex, CallSite, ModuleModel, Scope, argument, keyword
from zklint.findings import Edit, Finding, Safety
from zklint.rules.options import options_of
from zklint.rules.base import Rule, register
from zklint.rules.index import calls_to

# KazooRetry(max_tries=1, delay=0.1, backoff=2, max_jitter=0.4, max_delay=60.0,
#            ignore_expire=True, sleep_func=time.sleep, deadline=None, interrupt=None)
_MAX_TRIES_POSITION = 0
_DEADLINE_POSITION = 7
# The client's legacy retry keywords and the KazooRetry parameters they stand for.
_LEGACY_KEYWORDS = {"retry_delay": "delay", "retry_backoff": "backoff", "retry_max_delay": "max_delay"}

# KazooClient(hosts, timeout, client_id, handler, default_acl, auth_data, sasl_options,
#             read_only, randomize_hosts, connection_retry, ...)
_HANDLER_POSITION = 3
_CONNECTION_RETRY_POSITION = 9
_THREADING_HANDLER = "kazoo.handlers.threading.SequentialThreadingHandler"

Policy = Union[ast.Call, ast.Dict]


def int_literal(node: Optional[ast.AST]) -> Optional[int]:
    """The value of an integer literal (``3``, ``-1``), else None."""
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):  # a loop: ---3 nests
        sign = -sign
        node = node.operand
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return sign * node.value
    return None


def _is_none(node: Optional[ast.AST]) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def client_constructions(model: ModuleModel) -> List[CallSite]:
    """Every call of the module that constructs a client, in `model.calls` order.

    Found once per model: ZK401, ZK402 and ZK403 each look at the constructions only.
    """
    return model.shared("_zk4_client_constructions", lambda: _find_client_constructions(model))


def _find_client_constructions(model: ModuleModel) -> List[CallSite]:
    # `is_client_class` accepts a callee whose qualified name is a client class's, or the
    # bare name of a client class of the module: only those calls are asked about.
    classes = model.client_classes | model.facts.client_classes
    candidates = CallIndex.of(model).calls(names=model.client_classes, qualified=classes)
    return [site for site in candidates if model.is_client_construction(site.node)]


@register
class FiniteConnectionRetry(Rule):
    code = "ZK401"
    name = "finite-connection-retry"
    summary = "A client's connection retry policy can give up, leaving it disconnected for good."
    why = (
        "kazoo reconnects through its connection retry policy. When the policy runs out "
        "(max_tries reached or deadline passed) the connection loop stops: the client goes "
        "to LOST and never tries again, even after ZooKeeper is back. The process looks alive "
        "but every operation fails with ConnectionClosedError until it is restarted. "
        "`KazooRetry()` without max_tries means max_tries=1: one attempt, no retry. The "
        "client's own default (no connection_retry at all) retries forever and is fine; the "
        "legacy `max_retries=` keyword applies its limit to the connection too."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "from kazoo.retry import KazooRetry\n"
        "\n"
        "zk = KazooClient(hosts=HOSTS, connection_retry=KazooRetry(max_tries=3, delay=0.5))\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "from kazoo.retry import KazooRetry\n"
        "\n"
        "zk = KazooClient(hosts=HOSTS, connection_retry=KazooRetry(max_tries=-1, delay=0.5))\n"
    )
    fix_safety = Safety.SAFE
    fix_safety_reason = (
        "The fix only makes the connection policy unlimited (max_tries=-1) and drops its "
        "deadline; delays and backoff stay as written, and command retries are untouched "
        "(for the legacy max_retries= keyword it adds an unlimited connection_retry and "
        "leaves max_retries to the command retries; with a handler held in a variable the "
        "added policy sleeps with `<handler>.sleep_func`, as kazoo requires). The program's "
        "behaviour changes only where it used to stop reconnecting for good."
    )
    limits = (
        "Policies built from variables the module cannot see (another module, a function "
        "argument, **kwargs) are not checked; a max_tries that is not a literal is trusted. "
        "A KazooRetry subclass passed as connection_retry is ignored by kazoo (see ZK403), "
        "so it is not checked here. The legacy max_retries= shape is not fixed when the "
        "client's handler is an expression other than a variable or a plain "
        "SequentialThreadingHandler() (`handler=SequentialGeventHandler()`, "
        "`handler=make_handler()`): the added policy must sleep with that handler's "
        "sleep_func or kazoo raises ConfigurationError, and the expression cannot be "
        "evaluated twice."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        for site in client_constructions(model):
            call = site.node
            connection_retry = keyword(call, "connection_retry")
            if connection_retry is not None:
                policy = self._resolve_policy(connection_retry.value, site.scope)
                if policy is not None:
                    finding = self._check_policy(policy)
                    if finding is not None:
                        yield finding
            elif not any(kw.arg is None for kw in call.keywords):
                legacy = keyword(call, "max_retries")
                tries = int_literal(legacy.value) if legacy is not None else None
                if tries is not None and tries >= 0:
                    sleep_func = self._handler_sleep_func(call)
                    build = None
                    if sleep_func is not None:
                        build = lambda source, call=call, sleep_func=sleep_func: self._legacy_fix(  # noqa: E731
                            source, call, sleep_func)
                    yield self.finding(
                        legacy,
                        self._message(f"max_retries={tries} also limits reconnection attempts"),
                        "Add an unlimited connection_retry",
                        build,
                    )

    def _handler_sleep_func(self, call: ast.Call) -> Optional[ast.AST]:
        """What the added policy's sleep_func must be: kazoo refuses (ConfigurationError) a
        connection_retry whose sleep_func is not the handler's, and a dict policy sleeps with
        time.sleep. The threading handler (the default) needs nothing (returns the call
        itself as a marker); a handler held in a variable gives ``<handler>.sleep_func``; any
        other handler expression (a gevent or eventlet handler built in place, a call the
        module cannot see into) cannot be named twice, so there is no fix (None)."""
        handler = keyword(call, "handler")
        if handler is not None:
            handler = handler.value
        elif len(call.args) > _HANDLER_POSITION:
            if self.model.qualname(call.func) != KAZOO_CLIENT:
                return None  # a subclass's own positional parameters
            handler = call.args[_HANDLER_POSITION]
        if len(call.args) > _CONNECTION_RETRY_POSITION or any(isinstance(a, ast.Starred) for a in call.args):
            return None
        if handler is None or _is_none(handler):
            return call
        if isinstance(handler, ast.Call) and not handler.args and not handler.keywords and (
            self.model.qualname(handler.func) == _THREADING_HANDLER
        ):
            return call
        node = handler
        while isinstance(node, ast.Attribute):
            node = node.value
        return handler if isinstance(node, ast.Name) else None

    def _resolve_policy(self, expr: ast.AST, scope: Scope, depth: int = 0) -> Optional[Policy]:
        """The KazooRetry(...) call or dict literal that `expr` is (through one variable)."""
        model = self.model
        if isinstance(expr, ast.Call):
            if model.qualname(expr.func) == KAZOO_RETRY:
                return expr
            if isinstance(expr.func, ast.Name) and expr.func.id == "dict" and model.lookup("dict", scope) is None:
                return expr
            return None
        if isinstance(expr, ast.Dict):
            return expr
        if isinstance(expr, ast.Name) and depth < 3:
            owner = model.lookup(expr.id, scope)
            values = owner.bindings.get(expr.id, ()) if owner is not None else ()
            if len(values) == 1 and isinstance(values[0], ast.expr) and expr.id not in owner.params:
                return self._resolve_policy(values[0], owner, depth + 1)
        return None

    def _check_policy(self, policy: Policy) -> Optional[Finding]:
        if isinstance(policy, ast.Dict):
            if any(key is None for key in policy.keys):  # {**base}: cannot see the keys
                return None
            entries = {
                key.value: value for key, value in zip(policy.keys, policy.values)
                if isinstance(key, ast.Constant) and isinstance(key.value, str)
            }
            if len(entries) != len(policy.keys):
                return None
            max_tries, deadline = entries.get("max_tries"), entries.get("deadline")
            has_max_tries = "max_tries" in entries
        else:
            if any(kw.arg is None for kw in policy.keywords) or any(isinstance(a, ast.Starred) for a in policy.args):
                return None
            if isinstance(policy.func, ast.Name) and policy.func.id == "dict":
                if policy.args:
                    return None
                max_tries, deadline = keyword(policy, "max_tries"), keyword(policy, "deadline")
                max_tries = max_tries.value if max_tries is not None else None
                deadline = deadline.value if deadline is not None else None
            else:
                max_tries = argument(policy, _MAX_TRIES_POSITION, "max_tries")
                deadline = argument(policy, _DEADLINE_POSITION, "deadline")
            has_max_tries = max_tries is not None
        reasons = []
        if not has_max_tries:
            reasons.append("no max_tries means a single attempt")
        else:
            tries = int_literal(max_tries)
            if tries is not None and tries >= 0:
                reasons.append(f"max_tries={tries}")
        if deadline is not None and not _is_none(deadline):
            reasons.append("a deadline")
        if not reasons:
            return None
        deadline_by_keyword = (
            deadline is None or isinstance(policy, ast.Dict) or keyword(policy, "deadline") is not None
        )
        build = (lambda source, policy=policy: self._policy_fix(source, policy)) if deadline_by_keyword else None
        return self.finding(
            policy,
            self._message(" and ".join(reasons) + " gives up reconnecting"),
            "Use max_tries=-1" + (" and drop the deadline" if deadline is not None and not _is_none(deadline) else ""),
            build,
        )

    @staticmethod
    def _message(reason: str) -> str:
        return (
            f"connection retry can give up ({reason}): after a longer outage the client stays "
            "LOST for good, even once ZooKeeper is back; use max_tries=-1"
        )

    def _policy_fix(self, source, policy: Policy) -> List[Edit]:
        minus_one = parse_expression(source, "-1")

        def transform(node):
            if isinstance(node, cst.Dict):
                node = cst_helpers.set_dict_entry(node, "max_tries", minus_one)
                return cst_helpers.remove_dict_entry(node, "deadline")
            if not isinstance(node, cst.Call):
                raise FixError("unexpected retry policy shape")
            if cst_helpers.keyword_index(node, "max_tries") is None and node.args and node.args[0].keyword is None:
                node = cst_helpers.set_positional(node, _MAX_TRIES_POSITION, minus_one)
            else:
                node = cst_helpers.set_keyword(node, "max_tries", minus_one)
            return cst_helpers.remove_keyword(node, "deadline")

        return [expression_edit(source, policy, transform)]

    def _legacy_fix(self, source, call: ast.Call, sleep_func: ast.AST) -> List[Edit]:
        entries = ['"max_tries": -1']
        for legacy, name in _LEGACY_KEYWORDS.items():
            given = keyword(call, legacy)
            if given is not None:
                entries.append(f'"{name}": {source.segment(given.value)}')
        if sleep_func is not call:
            entries.append(f'"sleep_func": {source.segment(sleep_func)}.sleep_func')
        policy = parse_expression(source, "{" + ", ".join(entries) + "}")
        return [expression_edit(source, call, lambda node: cst_helpers.set_keyword(node, "connection_retry", policy))]


# ---- shared by ZK402 and ZK403 ------------------------------------------------------------

_DEF_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef)
_CONSTRUCTOR_METHODS = ("__init__", "__new__")
# KazooClient(hosts, timeout, ...)
_TIMEOUT_POSITION = 1


def _module_class(model, name: str, scope: Scope) -> Optional[ast.ClassDef]:
    """The module-level class `name` read in `scope` names, when it is bound only once."""
    if model.lookup(name, scope) is not model.module_scope:
        return None
    cls = model.classes.get(name)
    if cls is None or len(model.module_scope.bindings.get(name, ())) != 1:
        return None
    return cls


def has_kazoo_constructor(model, call: ast.Call, scope: Scope) -> bool:
    """A client construction whose arguments mean what KazooClient.__init__ says.

    ``KazooClient(...)`` itself, or a module class that reaches it through single
    inheritance without defining ``__init__``/``__new__`` anywhere on the way (a
    subclass with its own constructor may rename, consume or convert arguments).
    """
    if not model.is_client_construction(call):
        return False
    func = call.func
    seen = set()
    while True:
        if model.qualname(func) == KAZOO_CLIENT:
            return True
        if not isinstance(func, ast.Name) or func.id in seen:
            return False
        seen.add(func.id)
        cls = _module_class(model, func.id, scope)
        if cls is None or len(cls.bases) != 1 or cls.keywords:
            return False
        if any(isinstance(stmt, _DEF_TYPES) and stmt.name in _CONSTRUCTOR_METHODS for stmt in cls.body):
            return False
        func, scope = cls.bases[0], model.module_scope


def _single_value(model, name: ast.Name, scope: Scope) -> Optional[tuple]:
    """(value, scope) of a variable bound exactly once to an expression, else None.

    Parameters, names also assigned through ``global`` in a function, and anything
    bound more than once are unknown.
    """
    owner = model.lookup(name.id, scope)
    if owner is None:
        return None
    if name.id in owner.params:
        return _kept_default(model, owner, name.id)
    values = owner.bindings.get(name.id, ())
    if len(values) != 1 or not isinstance(values[0], ast.expr):
        return None
    if owner is model.module_scope and any(
        name.id in other.global_names and name.id in other.bindings for other in model.scopes.values()
    ):
        return None
    return values[0], owner


def _kept_default(model, owner: Scope, param: str) -> Optional[tuple]:
    """(default, scope it is evaluated in) of a parameter whose default every call site in
    the project keeps (the project layer says so), never rebound in the function."""
    node = owner.node
    if len(owner.bindings.get(param, ())) != 1 or isinstance(node, ast.Lambda) or owner.parent is None:
        return None
    qual = model.local_qualname(node)
    if qual is None or (qual, param) not in model.facts.kept_defaults:
        return None
    args = node.args
    positional = args.posonlyargs + args.args
    defaults = dict(zip([a.arg for a in positional[len(positional) - len(args.defaults):]], args.defaults))
    defaults.update((a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None)
    default = defaults.get(param)
    return (default, owner.parent) if default is not None else None


_FOLDABLE = {ast.Add: float.__add__, ast.Sub: float.__sub__, ast.Mult: float.__mul__, ast.Div: float.__truediv__}


def number_value(model, node: Optional[ast.AST], scope: Scope, depth: int = 0) -> Optional[float]:
    """The value of a numeric literal, simple arithmetic on literals (``5 * 60``) or a
    variable bound once to one (``SESSION_TIMEOUT = 90``); None when unknown."""
    if node is None or depth > 4:
        return None
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = number_value(model, node.operand, scope, depth + 1)
        if inner is None:
            return None
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLDABLE:
        left = number_value(model, node.left, scope, depth + 1)
        right = number_value(model, node.right, scope, depth + 1)
        if left is None or right is None or (isinstance(node.op, ast.Div) and right == 0):
            return None
        return _FOLDABLE[type(node.op)](left, right)
    if isinstance(node, ast.Name):
        bound = _single_value(model, node, scope)
        if bound is not None:
            return number_value(model, bound[0], bound[1], depth + 1)
    return None


@register
class SessionTimeoutOutOfRange(Rule):
    code = "ZK402"
    name = "session-timeout-out-of-range"
    summary = "A client's session timeout is outside sane bounds (by default 4 to 60 seconds)."
    why = (
        "The session timeout is how long ZooKeeper keeps a silent client's session, and with "
        "it its ephemeral nodes, locks and election seats. Too long: a crashed or partitioned "
        "process stays registered and keeps its locks for that long, so peers route work to a "
        "dead member and wait on its locks. Too short: a GC pause, a busy host or a brief "
        "network blip expires the session, its ephemerals vanish and every lock it held is "
        "lost mid-work. (The server also clamps the request to its minSessionTimeout and "
        "maxSessionTimeout, by default 2 and 20 ticks: 4 s and 40 s.)"
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=HOSTS, timeout=600)\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=HOSTS, timeout=15)\n"
    )
    fix_safety_reason = (
        "No faithful rewrite exists: the session timeout trades how fast peers see a dead "
        "process against how long a pause (GC, swap, a slow network) a live one survives, and "
        "the value in the code was chosen by someone; replacing it with the nearest bound "
        "would silently change that decision (and the server still clamps it to its own "
        "min/max session timeout). The bounds are options: raise or lower them where the "
        "value is deliberate."
    )
    limits = (
        "Only values the module spells out are checked: a numeric literal, arithmetic on "
        "literals, or a variable bound once to one; timeouts read from configuration, "
        "parameters or **kwargs are not. Clients built through a KazooClient subclass that "
        "defines its own __init__ are skipped (its parameters may mean something else). The "
        "bounds are project settings (session-timeout-min, session-timeout-max), not the "
        "server's negotiated limits, which the linter cannot see."
    )
    options = options_of("session-timeout-min", "session-timeout-max")

    def check(self) -> Iterator[Finding]:
        model = self.model
        low, high = float(self.option("session-timeout-min")), float(self.option("session-timeout-max"))
        for site in client_constructions(model):
            call = site.node
            if not has_kazoo_constructor(model, call, site.scope):
                continue
            given = argument(call, _TIMEOUT_POSITION, "timeout")
            value = number_value(model, given, site.scope)
            if value is None:
                continue
            shown = f"{value:g} s" + (" (kazoo takes seconds, not ms)" if value >= 1000 else "")
            if value < low:
                message = (
                    f"session timeout {shown} is below {low:g} s: a GC pause or network blip "
                    "expires the session and drops its ephemeral nodes and locks mid-work"
                )
            elif value > high:
                message = (
                    f"session timeout {shown} is above {high:g} s: a crashed process keeps its "
                    "ephemeral nodes and locks that long, so peers wait on a dead member"
                )
            else:
                continue
            yield self.finding(given, message)


@register
class RetrySubclassIgnored(Rule):
    code = "ZK403"
    name = "retry-subclass-ignored"
    summary = "A KazooRetry subclass given as connection_retry or command_retry is silently ignored."
    why = (
        "KazooClient.__init__ accepts a retry policy only as a dict or as an object whose type "
        "is exactly KazooRetry (`type(x) is KazooRetry`). An instance of a subclass matches "
        "neither test and is dropped without a warning: the client runs kazoo's default policy "
        "(unlimited retries, 0.1 s delay doubling up to an hour) and the subclass's overrides "
        "(its delays, its limits, its logging) never run. Checked with kazoo 2.11."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "from kazoo.retry import KazooRetry\n"
        "\n"
        "class LoggingRetry(KazooRetry):\n"
        "    def __call__(self, func, *args, **kwargs):\n"
        "        log.info(\"retrying %s\", func)\n"
        "        return super().__call__(func, *args, **kwargs)\n"
        "\n"
        "zk = KazooClient(hosts=HOSTS, connection_retry=LoggingRetry(max_tries=-1, delay=0.5))\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "from kazoo.retry import KazooRetry\n"
        "\n"
        "zk = KazooClient(hosts=HOSTS, connection_retry=KazooRetry(max_tries=-1, delay=0.5))\n"
        "# or pass the settings as a dict: connection_retry={\"max_tries\": -1, \"delay\": 0.5}\n"
        "# behaviour kazoo's policy lacks goes around calls: zk.retry(func) / a state listener\n"
    )
    fix_safety = Safety.UNSAFE
    fix_safety_reason = (
        "For a subclass (and its local ancestors) whose body defines nothing but __init__ (a "
        "preset of settings: delays, limits, jitter), the fix appends `.copy()`: KazooRetry.copy() "
        "returns an exact KazooRetry with the instance's settings (max_tries, delay, backoff, "
        "max_jitter, max_delay, deadline, sleep_func, interrupt, retry_exceptions), which kazoo "
        "accepts. The client then runs the policy the code configured instead of kazoo's "
        "default: the intent, but a real change in behaviour (a finite max_tries now gives up), "
        "so the fix is unsafe. A subclass that overrides other methods (__call__, copy, "
        "logging, metrics) gets no fix: its policy lives in code kazoo never calls, and no "
        "KazooRetry or dict can express it; wrap calls in it instead (`policy(zk.get, path)`)."
    )
    limits = (
        "Only subclasses defined in the same module are recognised (a class imported from "
        "elsewhere cannot be resolved), and only instances passed directly or through a variable "
        "bound once (not attributes such as self.policy, parameters or **kwargs). Clients built "
        "through a KazooClient subclass that defines its own __init__ are skipped: it may convert "
        "the policy before kazoo sees it."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        subclasses = self._retry_subclasses()
        if not subclasses:
            return
        for site in client_constructions(model):
            call = site.node
            if not has_kazoo_constructor(model, call, site.scope):
                continue
            for name in ("connection_retry", "command_retry"):
                given = keyword(call, name)
                if given is None:
                    continue
                cls = self._subclass_instance(given.value, site.scope, subclasses)
                if cls is None:
                    continue
                build = None
                if self._settings_only(cls, subclasses):
                    end = given.value
                    build = lambda source, end=end: [  # noqa: E731
                        Edit(source.node_span(end)[1], source.node_span(end)[1], ".copy()")
                    ]
                yield self.finding(
                    given.value,
                    f"{cls} is a KazooRetry subclass: kazoo silently ignores it as {name} (only an "
                    "exact KazooRetry or a dict counts) and runs its default policy instead",
                    "Pass an exact KazooRetry with the same settings (.copy())",
                    build,
                )

    def _settings_only(self, name: str, subclasses: set) -> bool:
        """Does the class, and each local ancestor, define nothing but __init__ (settings
        that KazooRetry.copy() carries over)?"""
        cls = self.model.classes.get(name)
        if cls is None:
            return False
        for stmt in cls.body:
            if isinstance(stmt, ast.Pass) or (
                isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ):
                continue
            if isinstance(stmt, ast.FunctionDef) and stmt.name == "__init__" and not stmt.decorator_list:
                continue
            return False
        if cls.decorator_list or cls.keywords:
            return False
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id in subclasses:
                if not self._settings_only(base.id, subclasses - {name}):
                    return False
            elif self.model.qualname(base) != KAZOO_RETRY:
                return False  # a mixin the fix cannot see into
        return True

    def _retry_subclasses(self) -> set:
        """Names of module classes with KazooRetry among their ancestors (through local classes)."""
        model = self.model
        found: set = set()
        changed = True
        while changed:
            changed = False
            for name, cls in model.classes.items():
                if cls is None or name in found or len(model.module_scope.bindings.get(name, ())) != 1:
                    continue
                for base in cls.bases:
                    if model.qualname(base) == KAZOO_RETRY or (
                        isinstance(base, ast.Name) and base.id in found
                        and _module_class(model, base.id, model.module_scope) is not None
                    ):
                        found.add(name)
                        changed = True
                        break
        return found

    def _subclass_instance(self, expr: ast.AST, scope: Scope, subclasses: set, depth: int = 0) -> Optional[str]:
        """The subclass `expr` is an instance of (a call of it, or a variable bound once to one)."""
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in subclasses:
            if _module_class(self.model, expr.func.id, scope) is not None:
                return expr.func.id
            return None
        if isinstance(expr, ast.Name) and depth < 3:
            bound = _single_value(self.model, expr, scope)
            if bound is not None:
                return self._subclass_instance(bound[0], bound[1], subclasses, depth + 1)
        return None


# ---- ZK404 ------------------------------------------------------------------------------

# KazooClient(hosts, timeout, client_id, handler, ...)
_HANDLER_POSITION = 3
# The handler each cooperative runtime needs: (qualified name of the class, runtime).
_GEVENT_HANDLER = "kazoo.handlers.gevent.SequentialGeventHandler"
_EVENTLET_HANDLER = "kazoo.handlers.eventlet.SequentialEventletHandler"
_PATCH_CALLS = {
    "gevent.monkey.patch_all": "gevent",
    "eventlet.monkey_patch": "eventlet",
    "eventlet.patcher.monkey_patch": "eventlet",
}
# gunicorn's worker classes (config setting `worker_class`), by the runtime they patch in.
_WORKER_CLASSES = {
    "gevent": "gevent",
    "gevent_wsgi": "gevent",
    "gevent_pywsgi": "gevent",
    "gunicorn.workers.ggevent.GeventWorker": "gevent",
    "gunicorn.workers.ggevent.GeventPyWSGIWorker": "gevent",
    "eventlet": "eventlet",
    "gunicorn.workers.geventlet.EventletWorker": "eventlet",
}


@register
class ThreadingHandlerUnderGevent(Rule):
    code = "ZK404"
    name = "threading-handler-under-gevent"
    summary = "A client built without handler= in a program that monkey-patches with gevent or eventlet."
    why = (
        "KazooClient's default handler, SequentialThreadingHandler, runs the connection loop and "
        "the callback workers on threads and blocks on sockets and thread queues. After "
        "gevent.monkey.patch_all() (or eventlet.monkey_patch(), or a gevent/eventlet gunicorn "
        "worker, which patches before loading the app) those threads are greenlets and those "
        "sockets cooperative, so the handler runs on a runtime it was not written for; kazoo's "
        "documentation says: 'Do not use SequentialThreadingHandler with applications using "
        "asynchronous event loops (like gevent). Use the SequentialGeventHandler instead.' "
        "Users of gevent programs with the default handler report hangs and lost connections "
        "(reddit/baseplate.py issues 659 and 668). kazoo ships a handler per runtime, written "
        "for its primitives: SequentialGeventHandler (kazoo.handlers.gevent) and "
        "SequentialEventletHandler (kazoo.handlers.eventlet)."
    )
    example = (
        "from gevent import monkey\n"
        "\n"
        "monkey.patch_all()\n"
        "\n"
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181\")\n"
        "zk.start()\n"
    )
    use_instead = (
        "from gevent import monkey\n"
        "\n"
        "monkey.patch_all()\n"
        "\n"
        "from kazoo.client import KazooClient\n"
        "from kazoo.handlers.gevent import SequentialGeventHandler\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181\", handler=SequentialGeventHandler())\n"
        "zk.start()\n"
    )
    fix_safety = Safety.SAFE
    fix_safety_reason = (
        "The fix passes the handler kazoo provides for the runtime the program already patched "
        "in (`handler=SequentialGeventHandler()` or `handler=SequentialEventletHandler()`) and "
        "imports it. The client's API, retries and callbacks stay the same; only the "
        "concurrency primitives underneath change to the ones the patched program runs on."
    )
    limits = (
        "The patch must be in the same file as the client: a call of gevent.monkey.patch_all() or "
        "eventlet.monkey_patch() anywhere in it (however imported), or a module-level "
        "`worker_class = \"gevent\"` (or another gevent/eventlet gunicorn worker) in a gunicorn "
        "config file that builds the client (e.g. in post_fork). A program that patches in its "
        "entry point and builds the client in another module is not seen yet, nor are "
        "`gunicorn -k gevent` on a command line, patch_socket()/patch_thread() alone, or "
        "gevent-based servers started without patching. Only direct KazooClient(...) calls are "
        "checked (a subclass may pass its own handler), and not those with **kwargs. A file that "
        "patches with both runtimes is reported without a fix. Whether the threading handler "
        "hangs under the patch depends on the versions and the load: with gevent 26.9 and "
        "kazoo 2.11 on an idle machine the failure did not reproduce (see the proof); the rule "
        "follows kazoo's documented requirement."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        runtimes = self._runtimes()
        if not runtimes:
            return
        runtime = next(iter(runtimes)) if len(runtimes) == 1 else None
        for site in calls_to(model, [KAZOO_CLIENT]):
            call = site.node
            if keyword(call, "handler") is not None or len(call.args) > _HANDLER_POSITION:
                continue
            if any(kw.arg is None for kw in call.keywords) or any(isinstance(a, ast.Starred) for a in call.args):
                continue
            what = " and ".join(sorted(runtimes))
            handler = "SequentialGeventHandler" if runtime == "gevent" else "SequentialEventletHandler"
            message = (
                f"KazooClient without handler= in a program patched by {what}: the default "
                "SequentialThreadingHandler then runs on patched threads and sockets, which kazoo "
                f"says not to do (hangs, lost connections); pass handler={handler}()"
            )
            if runtime is None:
                yield self.finding(call, message)
                continue
            qualified = _GEVENT_HANDLER if runtime == "gevent" else _EVENTLET_HANDLER
            yield self.finding(
                call, message, f"Pass handler={handler}()",
                lambda source, call=call, qualified=qualified: self._fix(source, call, qualified),
            )

    def _runtimes(self) -> set:
        """The cooperative runtimes this file patches in: {"gevent"}, {"eventlet"}, both or none."""
        model = self.model
        found = {_PATCH_CALLS[model.qualname(site.node.func)] for site in calls_to(model, _PATCH_CALLS)}
        for stmt in model.tree.body:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                value = stmt.value
                if (
                    any(isinstance(t, ast.Name) and t.id == "worker_class" for t in targets)
                    and isinstance(value, ast.Constant) and isinstance(value.value, str)
                ):
                    runtime = _WORKER_CLASSES.get(value.value)
                    if runtime is not None:
                        found.add(runtime)
        return found

    def _fix(self, source, call: ast.Call, qualified: str) -> List[Edit]:
        module, _, handler = qualified.rpartition(".")
        edits = []
        local = self.model.local_name_for(qualified)
        if local is None:
            if handler in self.model.module_scope.bindings:
                raise FixError(f"{handler} names something else here")
            # The import goes right after the one that brings KazooClient in, never at the top
            # of the file: importing kazoo's handlers before monkey.patch_all() would import
            # ssl and socket unpatched. (kazoo.client already imports them, so next to it
            # nothing new runs before the patch.)
            anchor = self._client_import(call)
            if anchor is None:
                raise FixError("KazooClient is not imported at module level")
            edits.append(insert_lines_edit(source, anchor.end_lineno + 1, [f"from {module} import {handler}"]))
            local = handler
        value = parse_expression(source, f"{local}()")
        edits.append(expression_edit(source, call, lambda node: cst_helpers.set_keyword(node, "handler", value)))
        return edits

    def _client_import(self, call: ast.Call) -> Optional[ast.stmt]:
        """The module-level import statement that binds the name `call` starts with."""
        root = call.func
        while isinstance(root, ast.Attribute):
            root = root.value
        if not isinstance(root, ast.Name):
            return None
        for stmt in self.model.tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                for alias in stmt.names:
                    bound = alias.asname or alias.name.partition(".")[0]
                    if bound == root.id:
                        return stmt
        return None
