"""Run flake8 with or without zklint's plugin, in the same way, for bench/run.py.

    python bench/flake8_run.py --with-zk|--without-zk FLAKE8-ARGS...

flake8 runs every installed plugin whatever ``--select`` says (select only filters what
is reported), so ``--select=E9`` alone would still pay for zklint. Without the plugin,
this hides zklint's entry point from flake8's plugin discovery; both modes go through
this same wrapper so their startup costs are identical.
"""

from __future__ import annotations

import sys

from flake8.main import cli
from flake8.plugins import finder


def main() -> int:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode not in ("--with-zk", "--without-zk"):
        raise SystemExit(__doc__)
    if mode == "--without-zk":
        original = finder._find_importlib_plugins

        def without_zklint():
            for plugin in original():
                if plugin.package != "zklint" and not plugin.entry_point.value.startswith("zklint."):
                    yield plugin

        finder._find_importlib_plugins = without_zklint
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
