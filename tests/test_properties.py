"""Property tests: the engine never raises, and fixes leave code that parses and re-lints clean.

Bounded example counts keep this fast; ``ZKLINT_HYPOTHESIS_EXAMPLES`` raises them for a
longer hunt. Every generated program names kazoo, or the pre-filter would skip it.
"""

from __future__ import annotations

import ast
import os
import warnings

import pytest

hypothesis = pytest.importorskip("hypothesis")
try:  # loaded now: on a failure hypothesis's pytest plugin imports it, and under some
    # import orders libcst.codemod fails there with AttributeError, crashing the session.
    import hypothesis.extra._patching  # noqa: F401
except Exception:  # pragma: no cover
    pass
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from zklint.engine import check_bytes, lint_source  # noqa: E402
from zklint.rules import all_rules  # noqa: E402
from zklint.source import SourceFile  # noqa: E402

EXAMPLES = int(os.environ.get("ZKLINT_HYPOTHESIS_EXAMPLES", "0"))

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):  # keep .hypothesis/ out of the working tree
    import tempfile

    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "zklint-hypothesis"))
ALL_RULES = list(all_rules().values())
ZK401 = [all_rules()["ZK401"]]

bounded = settings(
    max_examples=EXAMPLES or 60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=not EXAMPLES,  # the same examples on every run unless hunting
    database=None,
)


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _assert_engine_is_fine(text: str) -> None:
    raw = text.encode("utf-8")
    for fix in (False, True):
        report = check_bytes(raw, "generated.py", ALL_RULES, fix=fix, unsafe_fixes=True)
        internal = [e for e in report.errors if "internal error" in e or "failed (" in e]
        assert not internal, (internal, text)
        if report.new_bytes is not None:
            assert _parses(report.new_bytes.decode("utf-8")), text


# ---- any parseable program --------------------------------------------------------------------

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import hypothesmith
except ImportError:  # pragma: no cover
    hypothesmith = None

needs_hypothesmith = pytest.mark.skipif(hypothesmith is None, reason="hypothesmith is not installed")


@needs_hypothesmith
@settings(bounded, max_examples=EXAMPLES or 8)  # from_grammar is slow to draw from
@given(st.data())
def test_engine_never_raises_on_grammar_programs(data):
    body = data.draw(hypothesmith.from_grammar())
    text = "import kazoo.client\n" + body
    if not _parses(text):
        return
    _assert_engine_is_fine(text)


@needs_hypothesmith
@settings(bounded, max_examples=EXAMPLES or 25)
@given(st.data())
def test_engine_never_raises_on_cst_programs(data):
    body = data.draw(hypothesmith.from_node())
    text = "from kazoo.client import KazooClient\n" + body
    if not _parses(text):
        return
    _assert_engine_is_fine(text)


# ---- kazoo-shaped programs ---------------------------------------------------------------------

IMPORT_STYLES = {
    "from": ("from kazoo.client import KazooClient\nfrom kazoo.retry import KazooRetry\n"
             "from kazoo.protocol.states import KazooState\n", "KazooClient", "KazooRetry", "KazooState"),
    "alias": ("import kazoo.client as kc\nimport kazoo.retry as kr\nfrom kazoo.protocol import states\n",
              "kc.KazooClient", "kr.KazooRetry", "states.KazooState"),
    "renamed": ("from kazoo.client import KazooClient as ZK\nfrom kazoo.retry import KazooRetry as Retry\n"
                "from kazoo.protocol.states import KazooState as S\n", "ZK", "Retry", "S"),
    "module": ("import kazoo.client\nimport kazoo.retry\nimport kazoo.protocol.states\n",
               "kazoo.client.KazooClient", "kazoo.retry.KazooRetry", "kazoo.protocol.states.KazooState"),
}

numbers = st.sampled_from(["-1", "0", "1", "3", "10", "-5", "retries", "int('3')"])
floats = st.sampled_from(["0.1", "0.5", "2", "1e-3", "None", "delay"])


@st.composite
def retry_policies(draw, retry_name: str) -> str:
    kind = draw(st.sampled_from(["call", "dict", "dict_call", "positional", "empty", "name"]))
    if kind == "empty":
        return f"{retry_name}()"
    if kind == "name":
        return "POLICY"
    items = []
    if draw(st.booleans()):
        items.append(("max_tries", draw(numbers)))
    if draw(st.booleans()):
        items.append(("delay", draw(floats)))
    if draw(st.booleans()):
        items.append(("backoff", draw(st.sampled_from(["2", "1.5"]))))
    if draw(st.booleans()):
        items.append(("deadline", draw(st.sampled_from(["None", "30", "120.0"]))))
    if draw(st.booleans()):
        items.append(("max_delay", draw(floats)))
    multiline = draw(st.booleans())
    sep = ",\n        " if multiline else ", "
    trailing = "," if multiline and items and draw(st.booleans()) else ""
    if kind == "call":
        inner = sep.join(f"{k}={v}" for k, v in items)
        return f"{retry_name}({inner}{trailing})"
    if kind == "dict_call":
        inner = sep.join(f"{k}={v}" for k, v in items)
        return f"dict({inner}{trailing})"
    if kind == "dict":
        quote = draw(st.sampled_from(["'", '"']))
        inner = sep.join(f"{quote}{k}{quote}: {v}" for k, v in items)
        return "{" + inner + trailing + "}"
    positional = [draw(numbers), draw(floats), "2", "0.4", "60.0", "True", "None"]
    count = draw(st.integers(min_value=1, max_value=len(positional)))
    return f"{retry_name}({', '.join(positional[:count])})"


@st.composite
def client_constructions(draw, client_name: str, retry_name: str) -> str:
    args = [draw(st.sampled_from(['hosts="127.0.0.1:2181"', "hosts=HOSTS", "HOSTS"]))]
    if draw(st.booleans()):
        args.append(f"connection_retry={draw(retry_policies(retry_name))}")
    if draw(st.booleans()):
        args.append(f"command_retry={draw(retry_policies(retry_name))}")
    if draw(st.booleans()):
        args.append(f"max_retries={draw(numbers)}")
    if draw(st.booleans()):
        args.append(f"retry_delay={draw(floats)}")
    if draw(st.booleans()):
        args.append(f"timeout={draw(st.sampled_from(['1', '10.0', '30', '120', 'T']))}")
    if draw(st.booleans()):
        args.append("**extra")
    order = draw(st.permutations(args[1:]))
    args = args[:1] + list(order)
    if draw(st.booleans()):
        return f"{client_name}(\n    " + ",\n    ".join(args) + ",\n)"
    return f"{client_name}({', '.join(args)})"


def _statements(var: str, state: str) -> st.SearchStrategy:
    return st.lists(
        st.sampled_from([
            f"{var}.start()",
            f"{var}.start(timeout=5)",
            f"{var}.start_async()",
            f"{var}.add_listener(on_state)",
            f"{var}.add_listener(lambda s: print(s))",
            f'{var}.create("/svc/node", b"x", ephemeral=True)',
            f'{var}.create("/svc/node-", b"x", ephemeral=True, sequence=True)',
            f'{var}.ensure_path("/svc")',
            f'{var}.get("/svc", watch=on_watch)',
            f'{var}.exists("/svc", watch=lambda e: None)',
            f'{var}.get_children("/svc")',
            f'{var}.set("/svc", b"v")',
            f'{var}.delete("/svc", recursive=True)',
            "tx = " + var + '.transaction()\n{i}tx.create("/a")\n{i}tx.commit()',
            f"{var}.stop()",
            f"{var}.close()",
            f'lock = {var}.Lock("/lock")\n{{i}}with lock:\n{{i}}    work()',
            f"if {var}.state == {state}.LOST:\n{{i}}    print('lost')",
            f"try:\n{{i}}    {var}.start()\n{{i}}finally:\n{{i}}    {var}.stop()",
        ]),
        max_size=6,
    )


LISTENER = (
    "def on_state(state):\n"
    "    if state == {state}.LOST:\n"
    "        print('lost')\n"
    "    elif state == {state}.SUSPENDED:\n"
    "        print('suspended')\n\n\n"
    "def on_watch(event):\n"
    "    print(event)\n\n\n"
)


def _indent(lines, indent: str) -> str:
    return "".join(indent + line.replace("{i}", indent) + "\n" for line in lines)


@st.composite
def kazoo_programs(draw) -> str:
    imports, client_name, retry_name, state = IMPORT_STYLES[draw(st.sampled_from(sorted(IMPORT_STYLES)))]
    out = [imports, "\nHOSTS = '127.0.0.1:2181'\n"]
    if draw(st.booleans()):
        out.append(f"POLICY = {draw(retry_policies(retry_name))}\n")
    out.append("\n\n" + LISTENER.format(state=state))
    construction = draw(client_constructions(client_name, retry_name))
    where = draw(st.sampled_from(["module", "function", "method", "main"]))
    if where == "module":
        out.append(f"zk = {construction}\n")
        out.append(_indent(draw(_statements("zk", state)), ""))
    elif where == "function":
        out.append("def run(extra):\n")
        out.append(_indent([f"zk = {construction}"] + draw(_statements("zk", state)) + ["return zk"], "    "))
    elif where == "main":
        out.append('if __name__ == "__main__":\n')
        out.append(_indent([f"zk = {construction}"] + draw(_statements("zk", state)), "    "))
    else:
        out.append("class Service:\n    def __init__(self, extra):\n")
        out.append(_indent([f"self.zk = {construction}"], "        "))
        out.append("\n    def run(self):\n")
        out.append(_indent(draw(_statements("self.zk", state)) + ["pass"], "        "))
    text = "".join(out)
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return text.replace("\n", newline)


def test_kazoo_program_strategy_makes_valid_python():
    @settings(max_examples=30, deadline=None, derandomize=True, database=None)
    @given(kazoo_programs())
    def check(text):
        ast.parse(text)

    check()


def _fix(text: str, rules, unsafe: bool):
    return check_bytes(text.encode("utf-8"), "generated.py", rules, fix=True, unsafe_fixes=unsafe)


@bounded
@given(kazoo_programs())
def test_zk401_fixes_parse_and_relint_clean(text):
    report = _fix(text, ZK401, unsafe=False)
    assert not report.errors, (report.errors, text)
    if report.new_bytes is None:
        assert all(f.fix is None for f in report.findings), text
        return
    fixed = report.new_bytes.decode("utf-8")
    ast.parse(fixed)
    again = lint_source(SourceFile(fixed, "generated.py"), ZK401, {})
    assert [f for f in again if f.fix is not None] == [], (text, fixed)
    assert again == report.findings  # the unfixable ones, and only those, remain
    second = _fix(fixed, ZK401, unsafe=False)
    assert second.new_bytes is None and not second.errors  # idempotent


@bounded
@given(kazoo_programs())
def test_all_fixes_parse_and_relint_clean_for_the_fixed_codes(text):
    report = _fix(text, ALL_RULES, unsafe=True)
    internal = [e for e in report.errors if "internal error" in e or "failed (" in e or "did not settle" in e]
    assert not internal, (internal, text)
    if report.new_bytes is None:
        return
    fixed = report.new_bytes.decode("utf-8")
    ast.parse(fixed)
    fixed_codes = {f.code for f in report.fixed}
    remaining = lint_source(SourceFile(fixed, "generated.py"), ALL_RULES, {})
    refused = " ".join(report.errors)
    still_fixable = [f for f in remaining if f.code in fixed_codes and f.fix is not None and f.code not in refused]
    assert still_fixable == [], (still_fixable, text, fixed)
    if "\r\n" in text:  # generated code follows the file's line endings
        assert fixed.count("\n") == fixed.count("\r\n"), fixed


@bounded
@given(kazoo_programs())
def test_engine_never_raises_on_kazoo_programs(text):
    _assert_engine_is_fine(text)


# Texts built from the marker's letters, so that "z"s, near misses and markers abound, and
# long enough to pass the probes `mentions_kazoo` makes before it searches the usual way.
_MARKER_TEXTS = st.lists(
    st.sampled_from(["a", "z", "o", "azo", "zoo", "azoo", "Kazoo", "zz", "\u00e9", "x" * 40]), max_size=400
).map("".join)


@settings(bounded, max_examples=EXAMPLES or 300)
@given(_MARKER_TEXTS)
def test_mentions_kazoo_answers_as_a_substring_search(text):
    from zklint.project import KAZOO_MARKER, mentions_kazoo

    assert mentions_kazoo(text) == ("azoo" in text)
    raw = text.encode("utf-8")
    assert mentions_kazoo(raw) == (KAZOO_MARKER in raw)


def test_mentions_kazoo_past_its_probes():
    from zklint.project import _MARKER_PROBES, mentions_kazoo

    many = "z" * (_MARKER_PROBES * 2)
    texts = [many, many + "azoo", "azoo" + many, "a" + many + "oo", many + "azo"]
    # the marker's "z" just before, at and just after the last probe, and the first unprobed
    texts += ["x" + "z" * count + "azoo" + tail for count in range(_MARKER_PROBES - 2, _MARKER_PROBES + 3)
              for tail in ("", "x")]
    for text in texts:
        assert mentions_kazoo(text) == ("azoo" in text), text
        assert mentions_kazoo(text.encode()) == (b"azoo" in text.encode()), text
