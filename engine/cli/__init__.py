"""The command line of ``main.py``: ``new``, ``import``, ``export``, ``sample``, ``remove``,
``train``, ``predict``, ``eval``.

Modules: ``project_commands`` (new, sample, remove), ``format_commands`` (import, export),
``model_commands`` (train, predict, eval).

Each group of subcommands lives in its own module that exposes ``register(subparsers)``; the
parser built there sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and
returning an exit status). Modules are imported here, but heavy libraries (torch) are imported
only inside the ``func`` that needs them, so ``new`` or ``import`` start in a blink.

Exit status: 0 success, 2 bad input or usage (one line on stderr naming the file and the
reason), 1 an unexpected fault (traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Sequence

from engine.errors import UserError

SUBCOMMANDS = ("new", "import", "export", "sample", "remove", "train", "predict", "eval")


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and one line, as every other bad input does."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from engine.cli import format_commands, model_commands, project_commands

    parser = _Parser(prog="maskloop", description="Maskloop command line")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    project_commands.register(sub)
    format_commands.register(sub)
    model_commands.register(sub)
    return parser


def one_line(text: str) -> str:
    """``text`` as one printable line: file names may hold newlines, control characters or
    bytes that are not UTF-8 (surrogates), any of which would break the one-line promise or
    make printing itself fail."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join("\ufffd" if ord(c) < 32 or ord(c) == 127 else c for c in text)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"maskloop {args.command}: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"maskloop {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a fault of ours: say so in one line unless asked for more
        if args.debug:
            traceback.print_exc()
        else:
            print(
                f"maskloop {args.command}: internal error: {type(exc).__name__}: {one_line(str(exc))} "
                "(run with --debug for details)",
                file=sys.stderr,
            )
        return 1
