"""zklint's own code passes flake8 with its own plugin loaded (the project's .flake8)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_flake8_with_the_zk_plugin_is_clean_on_our_sources() -> None:
    result = subprocess.run(
        # flake8's own checks and zklint's: other plugins installed on the machine (the bench
        # installs flake8-bugbear) bring opinions this project has not adopted
        [sys.executable, "-m", "flake8", "--select", "E,W,F,C90,ZK", "zklint", "tests"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
