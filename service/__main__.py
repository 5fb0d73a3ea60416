"""``python -m service``: see ``service.cli``."""

import sys

from service.cli import main

# Guarded: ``serve --workers N`` spawns its workers as fresh interpreters, which import this
# module again (as ``__mp_main__``) and must not run the command line a second time.
if __name__ == "__main__":
    sys.exit(main())
