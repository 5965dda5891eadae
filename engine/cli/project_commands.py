"""``new`` and ``sample``: make a project folder from the command line."""

from __future__ import annotations

import argparse
import sys

from engine.cli.parsing import NEW_PROJECT_HELP, project_command
from engine.errors import UserError


def register(subparsers) -> None:
    new = project_command(
        subparsers, "new",
        help="create an empty project",
        description="Create an empty project folder with the given classes (class 0 first).",
        project_help=NEW_PROJECT_HELP,
    )
    new.add_argument(
        "--classes",
        default="background,foreground",
        help="comma-separated class names, class 0 first (default: background,foreground)",
    )
    new.set_defaults(func=run_new)

    sample = project_command(
        subparsers, "sample",
        help="write the built-in demo project",
        description="Write a small generated demo project (20 images, 3 classes, some labeled).",
        project_help=NEW_PROJECT_HELP,
    )
    sample.set_defaults(func=run_sample)

    remove = project_command(
        subparsers, "remove",
        help="remove images from a project",
        description="Remove images, with their labels and predictions, from PROJECT. Name each "
                    "by its name in the project (as imported) or its id. All or nothing: an "
                    "unknown or ambiguous name removes nothing.",
    )
    remove.add_argument("images", metavar="IMAGE", nargs="+", help="image name or id")
    remove.set_defaults(func=run_remove)


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


def find_images(project, wanted: list[str]) -> list:
    """The image records named by ``wanted`` (names, file names in images/, or ids), in order;
    UserError naming the first unknown or ambiguous one."""
    records = project.images()
    by_id = {r.id: r for r in records}
    chosen, seen = [], set()
    for item in wanted:
        matches = [r for r in records if r.name == item]
        if not matches:
            matches = [r for r in records if r.file.split("/")[-1] == item]
        if not matches and item.strip().isdigit() and int(item) in by_id:
            matches = [by_id[int(item)]]
        if not matches:
            raise UserError(f"no image named {item!r} in the project (give a name or an id; "
                            "nothing removed)", project.path)
        if len(matches) > 1:
            ids = ", ".join(str(r.id) for r in matches)
            raise UserError(f"{len(matches)} images are named {item!r} (ids {ids}); give the id "
                            "(nothing removed)", project.path)
        if matches[0].id not in seen:
            seen.add(matches[0].id)
            chosen.append(matches[0])
    return chosen


def run_remove(args: argparse.Namespace) -> int:
    from engine.project import Project

    with Project.open(args.project) as project:
        chosen = find_images(project, args.images)
        project.remove_images([r.id for r in chosen])
        left = len(project.images())
    names = ", ".join(r.name for r in chosen[:5]) + (", ..." if len(chosen) > 5 else "")
    print(f"removed {len(chosen)} image(s) from {project.path} ({names}); {left} left")
    return 0
