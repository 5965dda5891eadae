"""``new`` and ``sample``: make a project folder from the command line."""

from __future__ import annotations

import argparse
import sys

from engine.errors import UserError


def register(subparsers) -> None:
    new = subparsers.add_parser(
        "new",
        help="create an empty project",
        description="Create an empty project folder with the given classes (class 0 first).",
    )
    new.add_argument("project", metavar="PROJECT", help="folder to create (must not exist, or be empty)")
    new.add_argument(
        "--classes",
        default="background,foreground",
        help="comma-separated class names, class 0 first (default: background,foreground)",
    )
    new.set_defaults(func=run_new)

    sample = subparsers.add_parser(
        "sample",
        help="write the built-in demo project",
        description="Write a small generated demo project (20 images, 3 classes, some labeled).",
    )
    sample.add_argument("project", metavar="PROJECT", help="folder to create (must not exist, or be empty)")
    sample.set_defaults(func=run_sample)


def parse_classes(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not names or any(not n for n in names):
        raise UserError(f"--classes wants names separated by commas, like background,cell (got {text!r})")
    return names


def run_new(args: argparse.Namespace) -> int:
    from engine.project import Project

    with Project.create(args.project, parse_classes(args.classes)) as project:
        names = ", ".join(f"{c.index}={c.name}" for c in project.classes)
        print(f"created {project.path} with classes {names}", file=sys.stdout)
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from engine.project.sample import write_sample

    with write_sample(args.project) as project:
        images = project.images()
        labeled = sum(1 for r in images if r.labeled_pixels)
        print(f"wrote the sample project {project.path}: {len(images)} images, {labeled} labeled")
    return 0
