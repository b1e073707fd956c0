from zklint.cli import run

run()
