import sys

from zklint.cli import main

sys.exit(main())
