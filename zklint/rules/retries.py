"""ZK4: retry policies and timeouts."""

from __future__ import annotations

import ast
from typing import Iterator, List, Optional, Union

import libcst as cst

from zklint import cst_helpers
from zklint.fixer import FixError, expression_edit, parse_expression
from zklint.model import KAZOO_RETRY, Scope, argument, keyword
from zklint.rules.base import Edit, Finding, Rule, Safety, register

# KazooRetry(max_tries=1, delay=0.1, backoff=2, max_jitter=0.4, max_delay=60.0,
#            ignore_expire=True, sleep_func=time.sleep, deadline=None, interrupt=None)
_MAX_TRIES_POSITION = 0
_DEADLINE_POSITION = 7
# The client's legacy retry keywords and the KazooRetry parameters they stand for.
_LEGACY_KEYWORDS = {"retry_delay": "delay", "retry_backoff": "backoff", "retry_max_delay": "max_delay"}

Policy = Union[ast.Call, ast.Dict]


def int_literal(node: Optional[ast.AST]) -> Optional[int]:
    """The value of an integer literal (``3``, ``-1``), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = int_literal(node.operand)
        return -inner if inner is not None else None
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def _is_none(node: Optional[ast.AST]) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


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
        "leaves max_retries to the command retries). The program's behaviour changes only "
        "where it used to stop reconnecting for good."
    )
    limits = (
        "Policies built from variables the module cannot see (another module, a function "
        "argument, **kwargs) are not checked; a max_tries that is not a literal is trusted. "
        "A KazooRetry subclass passed as connection_retry is ignored by kazoo (see ZK403), "
        "so it is not checked here."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        for site in model.calls:
            call = site.node
            if not model.is_client_construction(call):
                continue
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
                    yield self.finding(
                        legacy,
                        self._message(f"max_retries={tries} also limits reconnection attempts"),
                        "Add an unlimited connection_retry",
                        lambda source, call=call: self._legacy_fix(source, call),
                    )

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
        deadline_by_keyword = deadline is None or isinstance(policy, ast.Dict) or keyword(policy, "deadline") is not None
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

    def _legacy_fix(self, source, call: ast.Call) -> List[Edit]:
        entries = ['"max_tries": -1']
        for legacy, name in _LEGACY_KEYWORDS.items():
            given = keyword(call, legacy)
            if given is not None:
                entries.append(f'"{name}": {source.segment(given.value)}')
        policy = parse_expression(source, "{" + ", ".join(entries) + "}")
        return [expression_edit(source, call, lambda node: cst_helpers.set_keyword(node, "connection_retry", policy))]

