"""``--output-format`` (full, concise, json, sarif, github, gitlab), ``--statistics``, colour."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.cli_support import BAD, run_main, write
from tests.fixture_harness import all_fixtures, engine_findings
from zklint import output
from zklint.engine import lint_source
from zklint.fixer import apply_edits, fix_source
from zklint.rules import all_rules
from zklint.findings import Edit, Finding
from zklint.source import SourceFile

# The official schema, in the shared/ folder beside this checkout.
SARIF_SCHEMA = Path(__file__).resolve().parent.parent.parent / "shared" / "schemas" / "sarif-schema-2.1.0.json"

# Line 4: ZK401 (safe fix) at column 46 and ZK402 (no fix) at column 90.
# Line 7: ZK401 after a tab and wide (two-cell) characters, at column 52.
APP = (
    "from kazoo.client import KazooClient\n"
    "from kazoo.retry import KazooRetry\n"
    "\n"
    'zk = KazooClient(hosts="h", connection_retry=KazooRetry(max_tries=3, delay=0.5), timeout=1)\n'
    "\n"
    "def connect():\n"
    '\tlabel = "日本"; return KazooClient(connection_retry={"max_tries": 2})\n'
)
ZK401 = all_rules()["ZK401"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    write(tmp_path / "app.py", APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    return tmp_path


def check(capsys, *args: str):
    return run_main(["check", "--select", "ZK401,ZK402", *args], capsys)


# ---- text formats ---------------------------------------------------------------------

def test_concise_is_one_line_per_finding_then_the_summary(project, capsys):
    result = check(capsys, "--output-format", "concise", "app.py")
    assert result.code == 1
    lines = result.out.splitlines()
    assert [line.split(" ")[0:2] for line in lines[:-1]] == [
        ["app.py:4:46:", "ZK401"],
        ["app.py:4:90:", "ZK402"],
        ["app.py:7:52:", "ZK401"],
    ]
    assert lines[-1] == "Found 3 errors (2 fixable with --fix)."


def test_every_message_ends_with_its_docs_pointer(project, capsys):
    result = check(capsys, "--output-format", "concise", "app.py")
    for line in result.out.splitlines()[:-1]:
        code = line.split(" ")[1]
        assert line.endswith(f" (zklint rule {code})"), line


def test_full_is_the_default_and_puts_the_caret_under_the_column(project, capsys):
    result = check(capsys, "app.py")
    assert result.code == 1
    blocks = result.out.split("\n\n")
    assert blocks[-1] == "Found 3 errors (2 fixable with --fix).\n"
    first = blocks[0].splitlines()
    assert first[0].startswith("app.py:4:46: ZK401 connection retry can give up")
    assert first[1] == "4 | " + APP.splitlines()[3]
    assert first[2] == "  | " + " " * 45 + "^" * len("KazooRetry(max_tries=3, delay=0.5)")
    assert first[3] == "  = fix: Use max_tries=-1 (safe: --fix)"
    second = blocks[1].splitlines()
    assert second[2] == "  | " + " " * 89 + "^"  # the literal 1
    assert len(second) == 3  # no fix to offer


def test_full_caret_counts_tabs_and_wide_characters(project, capsys):
    third = check(capsys, "app.py").out.split("\n\n")[2].splitlines()
    assert third[0].startswith("app.py:7:52: ZK401 ")
    shown = '    label = "日本"; return KazooClient(connection_retry={"max_tries": 2})'
    assert third[1] == "7 | " + shown
    # a tab shows as four spaces and each CJK character takes two cells
    prefix = '    label = "日本"; return KazooClient(connection_retry='
    assert third[2] == "  | " + " " * (len(prefix) + 2) + "^" * len('{"max_tries": 2}')


def test_no_show_source(project, capsys):
    result = check(capsys, "--no-show-source", "app.py")
    assert " | " not in result.out
    assert result.out.splitlines()[0].startswith("app.py:4:46: ZK401 ")
    assert result.out.rstrip().endswith("Found 3 errors (2 fixable with --fix).")


def test_quiet_drops_the_summary(project, capsys):
    result = check(capsys, "-q", "--output-format", "concise", "app.py")
    assert "Found" not in result.out and len(result.out.splitlines()) == 3


# ---- colour -------------------------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "stream, env, expected",
    [
        (_Terminal(), {}, True),
        (_Terminal(), {"NO_COLOR": "1"}, False),
        (_Terminal(), {"NO_COLOR": ""}, True),  # no-color.org: only a non-empty value counts
        (_Terminal(), {"TERM": "dumb"}, False),
        (io.StringIO(), {}, False),
        (io.StringIO(), {"FORCE_COLOR": "1"}, True),
        (io.StringIO(), {"FORCE_COLOR": "0"}, False),
        (_Terminal(), {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),
    ],
)
def test_use_color(stream, env, expected):
    assert output.use_color(stream, env) is expected


def test_no_colour_when_piped_or_no_color(project, capsys, monkeypatch):
    assert "\x1b[" not in check(capsys, "app.py").out
    monkeypatch.setenv("FORCE_COLOR", "1")
    coloured = check(capsys, "app.py").out
    assert "\x1b[1;31mZK401\x1b[0m" in coloured
    assert coloured.rstrip().endswith("Found 3 errors (2 fixable with --fix).")  # the summary stays plain
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in check(capsys, "app.py").out
    monkeypatch.delenv("NO_COLOR")
    assert "\x1b[" not in check(capsys, "--output-format", "json", "app.py").out  # never in machine formats


# ---- json -------------------------------------------------------------------------------

def test_json_schema_and_no_summary(project, capsys):
    result = check(capsys, "--output-format", "json", "app.py")
    assert result.code == 1
    findings = json.loads(result.out)  # the whole output is the document
    assert [(f["code"], f["location"]["row"], f["location"]["column"]) for f in findings] == [
        ("ZK401", 4, 46), ("ZK402", 4, 90), ("ZK401", 7, 52)
    ]
    first, second = findings[0], findings[1]
    assert set(first) == {"code", "name", "message", "filename", "location", "end_location", "fix", "doc"}
    assert first["name"] == "finite-connection-retry"
    assert first["filename"] == "app.py"
    assert first["end_location"] == {"row": 4, "column": 80}
    assert first["doc"] == "zklint rule ZK401"
    assert first["message"].endswith("(zklint rule ZK401)")
    assert first["fix"] == {
        "applicability": "safe",
        "message": "Use max_tries=-1",
        "edits": [{
            "content": "KazooRetry(max_tries=-1, delay=0.5)",
            "location": {"row": 4, "column": 46},
            "end_location": {"row": 4, "column": 80},
        }],
    }
    assert second["fix"] is None


def _apply(text: str, edits) -> str:
    source = SourceFile(text)

    def offset(location):
        return source.line_starts[location["row"] - 1] + location["column"] - 1

    return apply_edits(text, [Edit(offset(e["location"]), offset(e["end_location"]), e["content"]) for e in edits])


def test_json_edits_do_what_fix_does(project, capsys):
    findings = json.loads(run_main(["check", "--select", "ZK401", "--output-format", "json", "app.py"], capsys).out)
    assert len(findings) == 2
    text = APP
    for finding in reversed(findings):  # later edits first: earlier positions stay valid
        text = _apply(text, finding["fix"]["edits"])
    assert run_main(["check", "--select", "ZK401", "--fix", "app.py"], capsys).code == 0
    assert (project / "app.py").read_text() == text


def test_fix_edits_do_what_the_fixer_does_on_every_fixture():
    """For each fixture with one fixable finding, its edits alone (imports the fix adds
    included) give what --fix writes. (Whether that is the .fixed.py golden is
    test_fixtures.py's business.)"""
    checked = 0
    for fixture in all_fixtures():
        if not fixture.fixed_path.exists():
            continue
        source = fixture.read()
        fixable = [f for f in engine_findings(source, {fixture.code}) if f.fix is not None]
        if len(fixable) != 1:
            continue
        rules = [all_rules()[fixture.code]]
        fixed = fix_source(source, lambda s, rules=rules: lint_source(s, rules, {}), lambda f: f.fix is not None)
        if len(fixed.applied) != 1 or fixed.errors:
            continue  # several passes: no single list of edits describes them
        starts = source.line_starts
        edits = [
            Edit(starts[e.row - 1] + e.column - 1, starts[e.end_row - 1] + e.end_column - 1, e.content)
            for e in output.fix_edits(source, fixable[0])
        ]
        assert edits, fixture.id
        assert apply_edits(source.text, edits) == fixed.text, fixture.id
        checked += 1
    assert checked >= 5


def test_json_with_no_findings_is_an_empty_list(project, capsys):
    write(project / "clean.py", "import kazoo\n")
    result = check(capsys, "--output-format", "json", "clean.py")
    assert result.code == 0 and json.loads(result.out) == []


def test_json_from_stdin(project, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(BAD.encode())))
    result = check(capsys, "--output-format", "json", "-", "--stdin-filename", "app.py")
    (finding,) = json.loads(result.out)
    assert finding["filename"] == "app.py" and finding["fix"]["edits"]


def test_json_across_worker_processes(project, capsys):
    for i in range(6):
        write(project / f"m{i}.py", APP)
    result = check(capsys, "--output-format", "json", "-j", "2", *[f"m{i}.py" for i in range(6)])
    findings = json.loads(result.out)
    assert len(findings) == 18
    assert all(f["fix"]["edits"] for f in findings if f["code"] == "ZK401")
    full = check(capsys, "-j", "2", *[f"m{i}.py" for i in range(6)]).out
    assert full.count("4 | zk = KazooClient(") == 12  # source lines made it back from the workers


# ---- sarif -------------------------------------------------------------------------------

def _validate_sarif(document: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SARIF_SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)  # the draft the schema declares
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema, format_checker=validator_class.FORMAT_CHECKER).iter_errors(document),
                    key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


@pytest.mark.skipif(not SARIF_SCHEMA.exists(), reason="the SARIF schema is not available")
def test_sarif_is_valid_and_complete(project, capsys):
    result = check(capsys, "--output-format", "sarif", "app.py")
    assert result.code == 1
    log = json.loads(result.out)
    _validate_sarif(log)
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(all_rules())
    for rule in rules:
        assert {"id", "name", "shortDescription", "fullDescription", "help", "defaultConfiguration"} <= set(rule)
        assert rule["help"]["markdown"].startswith(f"# {rule['id']}: {rule['name']}")
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["ZK401", "ZK402", "ZK401"]
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        assert r["level"] == "error"
        location = r["locations"][0]["physicalLocation"]
        assert location["artifactLocation"] == {"uri": "app.py", "uriBaseId": "%SRCROOT%"}
    assert results[0]["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 4, "startColumn": 46, "endLine": 4, "endColumn": 80
    }
    (replacement,) = results[0]["fixes"][0]["artifactChanges"][0]["replacements"]
    assert replacement == {
        "deletedRegion": {"startLine": 4, "startColumn": 46, "endLine": 4, "endColumn": 80},
        "insertedContent": {"text": "KazooRetry(max_tries=-1, delay=0.5)"},
    }
    assert "fixes" not in results[1]
    assert run["columnKind"] == "unicodeCodePoints"
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"].endswith("/")


@pytest.mark.skipif(not SARIF_SCHEMA.exists(), reason="the SARIF schema is not available")
def test_sarif_without_findings_and_in_subdirectories(project, capsys):
    write(project / "pkg" / "sub mod.py", APP)
    log = json.loads(check(capsys, "--output-format", "sarif", "pkg").out)
    _validate_sarif(log)
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in log["runs"][0]["results"]}
    assert uris == {"pkg/sub%20mod.py"}
    write(project / "clean.py", "import kazoo\n")
    empty = json.loads(check(capsys, "--output-format", "sarif", "clean.py").out)
    _validate_sarif(empty)
    assert empty["runs"][0]["results"] == []


# ---- github, gitlab -------------------------------------------------------------------------

def test_github_workflow_commands(project, capsys):
    result = check(capsys, "--output-format", "github", "app.py")
    assert result.code == 1
    lines = result.out.splitlines()
    assert len(lines) == 3  # no summary
    message = next(f for f in json.loads(check(capsys, "--output-format", "json", "app.py").out))["message"]
    assert lines[0] == (
        "::error title=zklint (ZK401),file=app.py,line=4,col=46,endLine=4,endColumn=80::" + message
    )
    assert lines[1].startswith("::error title=zklint (ZK402),file=app.py,line=4,col=90,endLine=4,endColumn=91::")


def test_github_escapes_properties_and_data():
    assert output._escape_property("a,b:c%\n") == "a%2Cb%3Ac%25%0A"
    assert output._escape_data("50%: a, b\r\n") == "50%25: a, b%0D%0A"


def test_gitlab_code_quality(project, capsys):
    result = check(capsys, "--output-format", "gitlab", "app.py")
    report = json.loads(result.out)
    assert [(i["check_name"], i["location"]["lines"]["begin"]) for i in report] == [
        ("ZK401", 4), ("ZK402", 4), ("ZK401", 7)
    ]
    for issue in report:
        assert set(issue) >= {"description", "check_name", "fingerprint", "severity", "location"}
        assert issue["severity"] == "major"
        assert issue["location"]["path"] == "app.py"
        assert issue["description"].endswith(f"(zklint rule {issue['check_name']})")
    assert len({i["fingerprint"] for i in report}) == 3
    # fingerprints survive unrelated edits that move the code down
    write(project / "app.py", "# a comment\n\n" + APP)
    moved = json.loads(check(capsys, "--output-format", "gitlab", "app.py").out)
    assert [i["location"]["lines"]["begin"] for i in moved] == [6, 6, 9]
    assert [i["fingerprint"] for i in moved] == [i["fingerprint"] for i in report]


def test_identical_findings_get_distinct_fingerprints(project, capsys):
    write(project / "twice.py", BAD + BAD.splitlines()[-1] + "\n")
    report = json.loads(check(capsys, "--output-format", "gitlab", "twice.py").out)
    assert len(report) == 2 and report[0]["fingerprint"] != report[1]["fingerprint"]


# ---- statistics -------------------------------------------------------------------------

def test_statistics(project, capsys):
    result = check(capsys, "--statistics", "app.py")
    assert result.code == 1
    assert result.out.splitlines() == [
        "2  ZK401  [*] finite-connection-retry",
        "1  ZK402      session-timeout-out-of-range",
        "Found 3 errors (2 fixable with --fix).",
    ]
    rows = json.loads(check(capsys, "--statistics", "--output-format", "json", "app.py").out)
    assert rows == [
        {"code": "ZK401", "name": "finite-connection-retry", "count": 2, "fixable": 2},
        {"code": "ZK402", "name": "session-timeout-out-of-range", "count": 1, "fixable": 0},
    ]


def test_unknown_format_is_a_usage_error(project, capsys):
    result = check(capsys, "--output-format", "xml", "app.py")
    assert result.code == 2 and "invalid choice" in result.err


def test_control_characters_in_the_source_line_are_not_sent_to_the_terminal():
    finding = Finding("ZK401", "m", 3, 12, 3, 14)
    shown, carets = output.source_excerpt("x = '\x1b[31m\x0c'; zk", finding)
    assert "\x1b" not in shown and "\x0c" not in shown
    assert carets == "  | " + " " * 12 + "^^"
