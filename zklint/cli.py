"""The ``zklint`` command: a thin layer of argument parsing, file I/O and printing."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from zklint import __version__
from zklint.config import ConfigError, Settings, load_settings, split_codes
from zklint.engine import FileReport, RuleSelection, UnknownSelector, check_bytes, internal_error
from zklint.files import Excluder, discover
from zklint.rules import all_rules

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
SUBCOMMANDS = ("check", "rule", "server")

EPILOG = """\
examples:
  zklint check .                      lint every Python file below here
  zklint check --fix src/             apply safe fixes in place
  zklint check --fix --unsafe-fixes   also apply fixes that change control flow
  zklint check --diff app.py          show what --fix would change, write nothing
  zklint check --select ZK4 --ignore ZK402 .
  cat app.py | zklint check - --stdin-filename app.py
  zklint check --statistics .         the number of findings per rule
  zklint rule ZK401                   what a rule finds, why, and how to fix it
  zklint server                       the language server for editors (pip install "zklint[server]")
  zklint check --output-format concise src/
  zklint check --output-format sarif . > zklint.sarif
  zklint check --output-format github .
  zklint check --output-format gitlab . > gl-code-quality-report.json

colour: only on a terminal; NO_COLOR=1 turns it off, FORCE_COLOR=1 forces it on.

exit status: 0 no findings, 1 findings remain, 2 a usage, configuration or I/O error
(a file that cannot be read or parsed is reported on stderr and the others are still checked).
"""

RULE_EPILOG = """\
examples:
  zklint rule ZK401                   what it finds, why it is bad, example, fix safety, options
  zklint rule --all                   every rule with its fix (safe, unsafe or none)
  zklint rule --write-docs docs/rules   the same pages as Markdown files (python -m zklint.docs)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zklint",
        description="Find and fix ZooKeeper (kazoo) hazards in Python code.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"zklint {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser("check", help="lint files (the default command)", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("paths", nargs="*", metavar="PATH", help="files or directories (default: .); - reads stdin")
    fixing = check.add_argument_group("fixing")
    fixing.add_argument("--fix", action="store_true", help="apply safe fixes in place")
    fixing.add_argument("--unsafe-fixes", action="store_true", help="with --fix or --diff, also apply unsafe fixes")
    fixing.add_argument("--diff", action="store_true", help="print the fixes as a unified diff; write nothing")
    fixing.add_argument("--show-fixes", action="store_true", help="list the fixes applied")
    rules = check.add_argument_group("rule selection")
    rules.add_argument("--select", action="append", metavar="CODES",
                       help="comma-separated code prefixes to enable (replaces the configured list)")
    rules.add_argument("--extend-select", action="append", metavar="CODES", help="code prefixes to enable in addition")
    rules.add_argument("--ignore", action="append", metavar="CODES", help="code prefixes to disable")
    files = check.add_argument_group("files")
    files.add_argument("--exclude", action="append", metavar="PATTERNS",
                       help="gitignore-style patterns to skip (replaces the configured list)")
    files.add_argument("--extend-exclude", action="append", metavar="PATTERNS", help="patterns to skip in addition")
    files.add_argument("--no-respect-gitignore", action="store_true", help="do not skip files .gitignore lists")
    files.add_argument("--stdin-filename", metavar="PATH", help="the name of the file read from stdin")
    files.add_argument("--config", metavar="PYPROJECT", help="use this pyproject.toml instead of the nearest one")
    output = check.add_argument_group("output")
    output.add_argument("--exit-zero", action="store_true", help="exit 0 even when findings remain")
    output.add_argument("-q", "--quiet", action="store_true", help="print findings only, no summary")
    output.add_argument("-j", "--jobs", type=int, default=0, metavar="N",
                        help="processes to use (default: the number of cores)")
    output.add_argument("--output-format", choices=output_formats(), default="full", metavar="FORMAT",
                        help="full (default: each finding with its source line), concise (one line each), json, "
                             "sarif (SARIF 2.1.0), github (Actions annotations), gitlab (Code Quality report)")
    output.add_argument("--statistics", action="store_true",
                        help="print the number of findings per rule instead of the findings")
    output.add_argument("--show-source", action=argparse.BooleanOptionalAction, default=True,
                        help="with --output-format full, show the source line under each finding (default: on)")
    rule = commands.add_parser("rule", help="explain a rule", formatter_class=argparse.RawDescriptionHelpFormatter,
                               epilog=RULE_EPILOG)
    rule.add_argument("code", nargs="?", help="a rule code, e.g. ZK401")
    rule.add_argument("--all", action="store_true", help="list every rule: code, name, fix and its safety")
    rule.add_argument("--write-docs", metavar="DIR", help="write DIR/ZKnnn.md for every rule (the docs/rules pages)")
    commands.add_parser("server", help="run the language server (LSP over stdio) for editors",
                        description="The Language Server Protocol over stdin/stdout: diagnostics, quick fixes "
                                    "and hover in your editor. Needs the server extra: pip install \"zklint[server]\".")
    return parser


def output_formats() -> Tuple[str, ...]:
    from zklint.output import FORMATS

    return FORMATS


def _normalise_argv(argv: Sequence[str]) -> List[str]:
    """``zklint PATHS`` and ``zklint --fix PATHS`` mean ``zklint check ...``."""
    argv = list(argv)
    if not argv:
        return ["check"]
    first = argv[0]
    if first in SUBCOMMANDS or first in ("-h", "--help", "--version"):
        return argv
    return ["check"] + argv


@dataclass
class Job:
    """One file to check, with everything a worker process needs (picklable)."""

    path: str
    codes: Tuple[str, ...]
    options: Dict[str, object]
    fix: bool
    unsafe_fixes: bool
    diff: bool
    edits: bool = False  # compute each remaining fix's edits (json and sarif output)


def run_job(job: Job) -> FileReport:
    """Read, check and (for --fix) atomically rewrite one file. Never raises."""
    try:
        return _run_job(job)
    except Exception as exc:  # a bug in a rule must not stop the other files
        report = FileReport(job.path)
        report.errors.append(internal_error(exc))
        return report


def _run_job(job: Job) -> FileReport:
    from zklint.fixer import write_fixed

    registry = all_rules()
    rules = [registry[code] for code in job.codes]
    try:
        with open(job.path, "rb") as handle:
            raw = handle.read()
    except IsADirectoryError:
        return FileReport(job.path, errors=["is a directory"])
    except OSError as exc:
        return FileReport(job.path, errors=[f"cannot read: {exc.strerror or exc}"])
    report = check_bytes(raw, job.path, rules, job.options, fix=job.fix or job.diff, unsafe_fixes=job.unsafe_fixes)
    if report.new_bytes is not None and job.fix and not job.diff:
        problem = write_fixed(job.path, raw, report.new_bytes)
        if problem is not None:
            report.errors.append(problem)
            report.findings = sorted(report.findings + report.fixed, key=lambda f: f.sort_key())
            report.fixed = []
    if not job.diff:
        from zklint.output import annotate

        annotate(report, report.new_bytes if report.new_bytes is not None and report.fixed else raw, job.edits)
        report.old_text = report.new_text = None
    report.new_bytes = None if not job.diff else report.new_bytes
    return report


def _run_jobs(jobs: List[Job], processes: int) -> List[FileReport]:
    if processes <= 1 or len(jobs) < 2 * processes:
        return [_detached(run_job(job)) for job in jobs]
    import multiprocessing

    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    chunk = max(1, min(64, len(jobs) // (processes * 8)))
    # Not multiprocessing.Pool: when a worker dies (killed for memory, a crash in C
    # code) Pool.map waits forever; the executor reports the lost files instead.
    from concurrent.futures import ProcessPoolExecutor

    batches = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    reports: List[FileReport] = []
    import gc

    # Forked workers share the parent's objects; kept out of the collector's reach, the
    # workers' collections neither scan them nor copy their pages (less memory, less CPU).
    gc.freeze()
    try:
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            futures = [pool.submit(_run_batch, batch) for batch in batches]
            for batch, future in zip(batches, futures):
                try:
                    reports.extend(future.result())
                except Exception as exc:  # BrokenProcessPool, or a report that cannot be sent back
                    died = type(exc).__name__ == "BrokenProcessPool"
                    reason = "a worker process died" if died else internal_error(exc)
                    reports.extend(FileReport(job.path, errors=[f"not checked: {reason}"]) for job in batch)
    finally:
        gc.unfreeze()
    return reports


def _detached(report: FileReport) -> FileReport:
    """The report as a worker process sends it back: fixes without their `build`.

    A fix's builder closes over the rule, and so over the file's tree, model and source;
    kept, a serial run would hold every analysed tree in memory until it ends.
    """
    report.__dict__.update(report.__getstate__())
    return report


def _run_batch(batch: List[Job]) -> List[FileReport]:
    # Detached one by one: a batch's reports would otherwise hold all its trees until sent.
    return [_detached(run_job(job)) for job in batch]


def _resolve_settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    for name in ("select", "ignore", "extend_select"):
        values = split_codes(getattr(args, name))
        if values is not None:
            if name == "select":
                settings.select = values
            else:
                setattr(settings, name, getattr(settings, name) + values)
    if args.exclude is not None:
        settings.exclude = [p for value in args.exclude for p in value.split(",") if p]
    if args.extend_exclude is not None:
        settings.extend_exclude += [p for value in args.extend_exclude for p in value.split(",") if p]
    if args.no_respect_gitignore:
        settings.respect_gitignore = False
    return settings


def _selection(settings: Settings, extra_ignore: Sequence[str] = ()) -> RuleSelection:
    # per-file-ignores (extra_ignore) remove codes outright, whatever --select says.
    return RuleSelection(settings.select, settings.ignore, settings.extend_select, per_file_ignore=extra_ignore)


def check_command(args: argparse.Namespace) -> int:
    from zklint import output

    out, err = sys.stdout, sys.stderr
    try:
        settings = _resolve_settings(args)
        _selection(settings)  # unknown selectors are a usage error, before any file is read
    except (ConfigError, UnknownSelector) as exc:
        err.write(f"zklint: error: {exc}\n")
        return EXIT_ERROR
    if args.jobs < 0:
        err.write("zklint: error: --jobs must be 0 (all cores) or more\n")
        return EXIT_ERROR
    paths = args.paths or ["."]
    if "-" in paths:
        if len(paths) > 1:
            err.write("zklint: error: '-' (stdin) cannot be combined with other paths\n")
            return EXIT_ERROR
        return _check_stdin(args, settings, out, err)

    excluder = Excluder(settings.root, settings.exclude + settings.extend_exclude, settings.respect_gitignore)
    jobs: List[Job] = []
    errors: List[Tuple[str, str]] = []
    selections: Dict[Tuple[str, ...], Tuple[str, ...]] = {}
    for path, problem in discover(paths, excluder):
        if problem is not None:
            errors.append((path, problem))
            continue
        ignored = tuple(settings.ignored_for(path))
        if ignored not in selections:
            selections[ignored] = tuple(_selection(settings, ignored).codes)
        jobs.append(Job(path, selections[ignored], settings.options, args.fix, args.unsafe_fixes, args.diff,
                        edits=_wants_edits(args)))
    reports = _run_jobs(jobs, args.jobs or os.cpu_count() or 1)
    for report in reports:
        errors.extend((report.path, message) for message in report.errors)

    if args.diff:
        for report in reports:
            if report.new_text is not None:
                output.write_diff(report, out)
    else:
        _write_findings(args, reports, out)
    if args.show_fixes and args.fix and not args.diff:
        output.write_fixed(reports, err)
    for path, message in errors:
        err.write(f"{path}: error: {message}\n")
    if not args.quiet and (args.diff or args.output_format in output.TEXT_FORMATS):
        if args.diff:
            would = sum(len(r.fixed) for r in reports)
            (err if would else out).write(
                f"Would fix {would} error{'s' if would != 1 else ''}.\n" if would else "No fixes available.\n"
            )
        else:
            for line in output.summary(reports, args.fix, args.unsafe_fixes):
                out.write(line + "\n")
    if errors:
        return EXIT_ERROR
    if args.exit_zero:
        return EXIT_CLEAN
    if args.diff:
        return EXIT_FINDINGS if any(r.fixed for r in reports) else EXIT_CLEAN
    return EXIT_FINDINGS if any(r.findings for r in reports) else EXIT_CLEAN


def _wants_edits(args: argparse.Namespace) -> bool:
    from zklint.output import EDIT_FORMATS

    return args.output_format in EDIT_FORMATS and not args.statistics


def _write_findings(args: argparse.Namespace, reports: List[FileReport], out) -> None:
    """The findings (or, with --statistics, their counts) in the chosen --output-format."""
    from zklint import output

    if args.statistics:
        output.write_statistics(reports, out, args.output_format, args.unsafe_fixes)
    else:
        output.write_report(reports, out, args.output_format, args.show_source, output.use_color(out))


def _check_stdin(args, settings: Settings, out, err) -> int:
    """Lint stdin; with --fix the fixed source goes to stdout and findings to stderr."""
    from zklint import output

    name = args.stdin_filename or "-"
    raw = sys.stdin.buffer.read()
    ignored = settings.ignored_for(name) if args.stdin_filename else []
    codes = _selection(settings, ignored).rules()
    report = check_bytes(raw, name, codes, settings.options, fix=args.fix or args.diff, unsafe_fixes=args.unsafe_fixes)
    for message in report.errors:
        err.write(f"{name}: error: {message}\n")
    if not args.diff:
        output.annotate(report, report.new_bytes if report.new_bytes is not None else raw, _wants_edits(args))
    if args.diff:
        if report.new_text is not None:
            output.write_diff(report, out)
    elif args.fix:
        sys.stdout.flush()
        sys.stdout.buffer.write(report.new_bytes if report.new_bytes is not None else raw)
        sys.stdout.flush()
        _write_findings(args, [report], err)
    else:
        _write_findings(args, [report], out)
        if not args.quiet and args.output_format in output.TEXT_FORMATS:
            for line in output.summary([report], False, args.unsafe_fixes):
                out.write(line + "\n")
    if report.errors:
        return EXIT_ERROR
    if args.exit_zero:
        return EXIT_CLEAN
    if args.diff:
        return EXIT_FINDINGS if report.fixed else EXIT_CLEAN
    return EXIT_FINDINGS if report.findings else EXIT_CLEAN


def rule_command(args: argparse.Namespace) -> int:
    from zklint import docs

    registry = all_rules()
    if args.write_docs:
        for path in docs.write_docs(args.write_docs):
            print(f"updated {path}")
        return EXIT_CLEAN
    if args.all or not args.code:
        for line in docs.rule_table(registry):
            print(line)
        return EXIT_CLEAN
    code = args.code.upper()
    if code not in registry:
        sys.stderr.write(f"zklint: error: unknown rule {args.code!r}\n")
        return EXIT_ERROR
    from zklint.docs import rule_markdown

    print(rule_markdown(registry[code]))
    return EXIT_CLEAN


SERVER_EXTRA = ("pygls", "lsprotocol", "cattrs", "attrs")


def server_command() -> int:
    try:
        from zklint.server import serve
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_EXTRA:
            raise
        sys.stderr.write('zklint: error: the language server needs the server extra: pip install "zklint[server]"\n')
        return EXIT_ERROR
    return serve()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_normalise_argv(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "rule":
            return rule_command(args)
        if args.command == "server":
            return server_command()
        return check_command(args)
    except KeyboardInterrupt:
        sys.stderr.write("zklint: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_CLEAN
