"""Run flake8 with exactly the plugins asked for, for bench/run.py.

    python bench/flake8_run.py --plugins zklint FLAKE8-ARGS...        # flake8's own + zklint
    python bench/flake8_run.py --plugins "" FLAKE8-ARGS...            # flake8's own only
    python bench/flake8_run.py --plugins flake8-bugbear FLAKE8-ARGS...

flake8 runs every installed plugin whatever ``--select`` says (select only filters what
is reported), so ``--select=E9`` alone would still pay for zklint and for any other
plugin installed. This hides from flake8's plugin discovery every distribution but
flake8's own checkers (pyflakes, pycodestyle) and the ones listed; every mode goes
through this same wrapper so startup costs are identical.
"""

from __future__ import annotations

import sys

from flake8.main import cli
from flake8.plugins import finder

FLAKE8_OWN = ("flake8", "pyflakes", "pycodestyle")


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] != "--plugins":
        raise SystemExit(__doc__)
    wanted = {name.strip() for name in sys.argv[2].split(",") if name.strip()}
    original = finder._find_importlib_plugins

    def only_wanted():
        for plugin in original():
            if plugin.package in FLAKE8_OWN or plugin.package in wanted:
                yield plugin

    finder._find_importlib_plugins = only_wanted
    return cli.main(sys.argv[3:])


if __name__ == "__main__":
    sys.exit(main())
