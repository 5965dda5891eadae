"""What every command's parser shares: a subcommand whose first argument is a project folder."""

from __future__ import annotations

PROJECT_HELP = "the project folder"
NEW_PROJECT_HELP = "folder to create (must not exist, or be empty)"


def project_command(subparsers, name: str, help: str, description: str,
                    project_help: str = PROJECT_HELP):
    """The parser of ``main.py NAME PROJECT ...``: PROJECT is its first positional argument."""
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.add_argument("project", metavar="PROJECT", help=project_help)
    return parser
