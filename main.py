"""Maskloop's entry point.

``python main.py``            opens the window (the last project, or the built-in sample)
``python main.py PROJECT``    opens the window on PROJECT
``python main.py SUBCOMMAND`` runs the command line (see ``python main.py --help``)
``python main.py --self-test`` checks an installed or frozen program end to end, no display
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from engine.cli import SUBCOMMANDS

    if argv and argv[0] == "--self-test":
        from gui.selftest import main as self_test

        return self_test(argv[1:])
    if argv and (argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help", "--debug")):
        from engine.cli import main as cli_main

        return cli_main(argv)
    try:
        from gui.app import main as gui_main
    except ImportError as exc:
        # A machine with only Python lacks libraries PySide6's own modules need (GLib, EGL,
        # ...): one line naming all of them, not a traceback naming the first.
        import os

        from gui.xcb_check import import_problem

        problem = import_problem(exc, os.environ, sys.platform)
        if problem is None:
            raise
        print(f"maskloop: cannot open the window: {problem}", file=sys.stderr)
        return 2
    return gui_main(argv)


if __name__ == "__main__":
    sys.exit(main())
