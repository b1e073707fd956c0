"""A fix changes the bytes of its edit and nothing else.

Line endings (CRLF, CR), the encoding (a latin-1 coding cookie, a UTF-8 BOM), tabs,
comments around the edit, trailing whitespace and a missing final newline all survive
``--fix``. The ZK401 fixtures are run through each transformation: fixing the
transformed file must give exactly the transformed expected output.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Dict

import pytest

from tests.cli_support import BAD, run_main, zk401_bad_fixtures
from zklint.engine import check_bytes
from zklint.rules import all_rules

ZK401 = [all_rules()["ZK401"]]


def fix_bytes(raw: bytes, unsafe: bool = False) -> bytes:
    report = check_bytes(raw, "sample.py", ZK401, fix=True, unsafe_fixes=unsafe)
    assert not report.errors, report.errors
    assert report.new_bytes is not None, "nothing was fixed"
    return report.new_bytes


def _crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def _cr(text: str) -> str:
    return text.replace("\n", "\r")


def _no_final_newline(text: str) -> str:
    return text.rstrip("\n")


def _tabs(text: str) -> str:
    return re.sub(r"(?m)^((?:    )+)", lambda m: "\t" * (len(m.group(1)) // 4), text)


def _trailing_whitespace(text: str) -> str:
    return re.sub(r"(?m)^(.*\S)$", lambda m: m.group(1) + (" \t " if not m.group(1).rstrip().endswith("\\") else ""), text)


def _cookie_line(text: str) -> str:
    lines = text.split("\n")
    position = 1 if lines[0].startswith("#!") else 0
    lines.insert(position, "# -*- coding: latin-1 -*-")
    return "\n".join(lines) + "# caf\xe9 \xbfs\xed? na\xefve \xa9\n"


TEXT_TRANSFORMS: Dict[str, Callable[[str], str]] = {
    "crlf": _crlf,
    "cr": _cr,
    "no_final_newline": _no_final_newline,
    "crlf_no_final_newline": lambda t: _crlf(_no_final_newline(t)),
    "tabs": _tabs,
    "tabs_crlf": lambda t: _crlf(_tabs(t)),
    "trailing_whitespace": _trailing_whitespace,
    "form_feed": lambda t: "\f\n" + t,
}

ENCODINGS: Dict[str, Callable[[str], bytes]] = {
    "utf8": lambda t: t.encode("utf-8"),
    "bom": lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"),
    "latin1_cookie": lambda t: _cookie_line(t).encode("latin-1"),
    "latin1_cookie_crlf": lambda t: _crlf(_cookie_line(t)).encode("latin-1"),
    "bom_crlf": lambda t: b"\xef\xbb\xbf" + _crlf(t).encode("utf-8"),
}

FIXTURES = [p for p in zk401_bad_fixtures() if p.with_name(p.stem + ".fixed.py").exists()]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
@pytest.mark.parametrize("transform", sorted(TEXT_TRANSFORMS))
def test_fixtures_under_text_transforms(fixture: Path, transform: str):
    change = TEXT_TRANSFORMS[transform]
    source = change(fixture.read_text(encoding="utf-8"))
    expected = change(fixture.with_name(fixture.stem + ".fixed.py").read_text(encoding="utf-8"))
    assert fix_bytes(source.encode("utf-8"), unsafe=True) == expected.encode("utf-8")


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_fixtures_under_encodings(fixture: Path, encoding: str):
    encode = ENCODINGS[encoding]
    source = encode(fixture.read_text(encoding="utf-8"))
    expected = encode(fixture.with_name(fixture.stem + ".fixed.py").read_text(encoding="utf-8"))
    assert fix_bytes(source, unsafe=True) == expected


# ---- hand-written cases: exactly one span changes -----------------------------------------------

HEADER = "from kazoo.client import KazooClient\nfrom kazoo.retry import KazooRetry\n"

CASES = {
    "comments_around_the_edit": (
        HEADER
        + "zk = KazooClient(  # the client\n"
        + "    hosts='h',  # where\n"
        + "    # before the policy\n"
        + "    connection_retry=KazooRetry(  # policy\n"
        + "        max_tries=3,  # three is not enough\n"
        + "        # between\n"
        + "        delay=0.5,  # half a second\n"
        + "    ),  # after\n"
        + ")  # end\n"
        + "# trailing comment\n"
    ),
    "non_ascii_before_the_edit_on_the_same_line": (
        HEADER + "zk = KazooClient(hosts='\u00f1\u2014\U0001f600', connection_retry=KazooRetry(max_tries=3))  # \u00e9\n"
    ),
    "no_final_newline_and_the_edit_on_the_last_line": HEADER + "zk = KazooClient(connection_retry=KazooRetry(max_tries=3))",
    "mixed_line_endings": HEADER.replace("\n", "\r\n", 1) + "zk = KazooClient(connection_retry=KazooRetry(max_tries=3))\r\n# x\n",
    "tab_indented_method": (
        HEADER + "class Svc:\n\tdef __init__(self):\n\t\tself.zk = KazooClient(\n\t\t\tconnection_retry=KazooRetry(\n"
        "\t\t\t\tmax_tries=3,\t# tabs\n\t\t\t),\n\t\t)\n"
    ),
    "backslash_continuation": HEADER + "zk = \\\n    KazooClient(connection_retry=\\\n        KazooRetry(max_tries=3))\n",
    "semicolons": HEADER + "a = 1; zk = KazooClient(connection_retry=KazooRetry(max_tries=3)); b = 2\n",
    "odd_spacing": HEADER + "zk = KazooClient ( connection_retry = KazooRetry ( max_tries = 3 , delay = 0.5 ) )\n",
    "zero_tries": HEADER + "zk = KazooClient(connection_retry=KazooRetry(max_tries=0))\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_only_the_edit_changes(name: str, encoding: str):
    text = CASES[name]
    if encoding.startswith("latin1") and not text.encode("utf-8").isascii():
        pytest.skip("not latin-1 text")
    raw = ENCODINGS[encoding](text)
    fixed = fix_bytes(raw)
    old = b"max_tries = 3" if b"max_tries = 3" in raw else (b"max_tries=0" if b"max_tries=0" in raw else b"max_tries=3")
    new = old.replace(b"3", b"-1").replace(b"=0", b"=-1")
    assert raw.count(old) == 1
    assert fixed == raw.replace(old, new)


def test_edit_adding_an_argument_uses_the_files_line_ending():
    raw = (HEADER + "zk = KazooClient(\n    hosts='h',\n    max_retries=3,\n)\n").replace("\n", "\r\n").encode()
    fixed = fix_bytes(raw)
    assert b"\r\n" in fixed and fixed.count(b"\n") == fixed.count(b"\r\n")  # no bare LF slipped in
    assert fixed.startswith(raw[: raw.index(b"zk = ")])
    assert b'connection_retry={"max_tries": -1}' in fixed


def test_cli_fix_and_diff_on_a_crlf_latin1_file(capsys, monkeypatch, tmp_path):
    raw = ("# -*- coding: latin-1 -*-\r\n" + BAD.replace("\n", "\r\n") + "# \xe9t\xe9\r\n").encode("latin-1")
    path = tmp_path / "app.py"
    path.write_bytes(raw)
    diff = run_main(["check", "--diff", "--select", "ZK401", "app.py"], capsys, cwd=tmp_path, monkeypatch=monkeypatch)
    assert path.read_bytes() == raw and diff.code == 1
    assert "+zk = KazooClient" in diff.out
    fixed = run_main(["check", "--fix", "--select", "ZK401", "app.py"], capsys, cwd=tmp_path, monkeypatch=monkeypatch)
    assert fixed.code == 0, fixed.err
    assert path.read_bytes() == raw.replace(b"max_tries=3", b"max_tries=-1")


def test_fix_is_idempotent_on_bytes():
    raw = ("\ufeff" + CASES["comments_around_the_edit"]).replace("\n", "\r\n").encode("utf-8")
    once = fix_bytes(raw)
    report = check_bytes(once, "sample.py", ZK401, fix=True)
    assert report.new_bytes is None and not report.findings and not report.errors
