"""``import`` and ``export``: masks, annotations and models in and out of a project.

Heavy modules (OpenCV, pycocotools, torch) load inside the commands, so that building the
parser for any subcommand stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.parsing import project_command
from engine.errors import UserError
from engine.formats import registry

IMPORT_FORMATS = registry.keys(registry.IMPORT_FORMATS)
MASK_FORMATS = registry.keys(registry.MASK_EXPORT_FORMATS)
MODEL_FORMATS = registry.keys(registry.MODEL_EXPORT_FORMATS)


def register(subparsers) -> None:
    imp = project_command(
        subparsers, "import",
        help="import images, with masks or annotations",
        description=(
            "Copy images (files, folders searched recursively) into the project, with their "
            "labels from mask images (--masks DIR), COCO or LabelMe JSON, or a Pascal VOC folder. "
            "All or nothing: on a bad file nothing is imported. See docs/formats.md."
        ),
    )
    imp.add_argument(
        "paths", metavar="PATH", nargs="+", help="image files or folders, annotation files, a VOC folder"
    )
    imp.add_argument("--masks", metavar="DIR", help="folder of mask images named like the images")
    imp.add_argument(
        "--unlabeled-value",
        metavar="V",
        type=int,
        help="mask value meaning unlabeled (Pascal VOC void 255, CamVid 11); turns off binary 0/255 reading",
    )
    imp.add_argument("--format", choices=IMPORT_FORMATS, help="the label format (default: told from the inputs)")
    imp.add_argument(
        "--uncovered",
        choices=("background", "unlabeled"),
        help="COCO/LabelMe: what pixels no annotation covers become (default: background, "
        "or what the file says)",
    )
    imp.set_defaults(func=run_import)

    exp = project_command(
        subparsers, "export",
        help="export masks or a model",
        description="Export label masks (--masks) or a trained model (--model). See docs/formats.md.",
    )
    what = exp.add_mutually_exclusive_group(required=True)
    what.add_argument("--masks", choices=MASK_FORMATS, help="mask format")
    what.add_argument("--model", choices=MODEL_FORMATS, help="model format")
    exp.add_argument("--out", metavar="PATH", required=True, help="folder for masks; file for a model")
    exp.add_argument("--run", metavar="RUN", help="training run whose model to export (default: the last)")
    exp.add_argument(
        "--unlabeled-as",
        choices=("unlabeled", "background"),
        default="unlabeled",
        help="masks: keep unlabeled pixels (255 / transparent) or make them class 0",
    )
    exp.add_argument("--all", action="store_true", help="masks: every image, not only labeled ones")
    exp.add_argument(
        "--with-images",
        action="store_true",
        help="masks: copy the images too (into OUT/images/; LabelMe: beside its JSON files)",
    )
    exp.add_argument(
        "--semantic",
        action="store_true",
        help="masks, COCO and LabelMe: one annotation per class and image (COCO iscrowd 1, RLE) "
        "instead of one object per connected region",
    )
    exp.add_argument("--overwrite", action="store_true", help="replace files that exist already")
    package = exp.add_argument_group("bioimage.io model package (--model bioimageio --out model.zip)")
    package.add_argument("--name", help="the model's name: 5-128 letters, digits, spaces, _+-() "
                                        "(default: Maskloop ARCHITECTURE PROJECT)")
    package.add_argument("--author", action="append", default=[], metavar="NAME",
                         help="an author (repeatable; default: your account's name)")
    package.add_argument("--license", default="CC-BY-4.0", metavar="SPDX",
                         help="SPDX licence identifier (default: CC-BY-4.0)")
    package.add_argument("--image", metavar="IMAGE",
                         help="the project image (name or id) for the test tensors and cover "
                              "(default: a validation image of the run)")
    exp.set_defaults(func=run_export)


def _progress_printer(enabled: bool):
    if not enabled:
        return None
    last = {"stage": None}

    def show(stage: str, done: int, total: int) -> None:
        if done == total or done % 50 == 0 or last["stage"] != stage:
            print(f"\r{stage}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
        last["stage"] = stage

    return show


def run_import(args: argparse.Namespace) -> int:
    from engine.formats.importer import import_paths
    from engine.project import Project

    with Project.open(args.project) as project:
        report = import_paths(
            project,
            [Path(p) for p in args.paths],
            fmt=args.format,
            masks_dir=args.masks,
            unlabeled_value=args.unlabeled_value,
            uncovered=args.uncovered,
            progress=_progress_printer(sys.stderr.isatty()),
        )
    print(report.summary())
    if report.images_without_mask:
        missing = report.images_without_mask
        print(f"{len(missing)} images had no mask and stay unlabeled, e.g. {missing[0]}")
    if report.masks_without_image:
        unused = report.masks_without_image
        print(f"{len(unused)} masks matched no image and were not used, e.g. {unused[0]}")
    if report.skipped_shapes:
        print(f"{report.skipped_shapes} line/point shapes were skipped (they cover no area)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from engine.project import Project

    if args.model:
        return _export_model(args)
    from engine.formats.export import export_masks

    with Project.open(args.project, readonly=True) as project:
        report = export_masks(
            project,
            args.masks,
            args.out,
            unlabeled_as=args.unlabeled_as,
            overwrite=args.overwrite,
            include_unlabeled=args.all,
            with_images=args.with_images,
            progress=_progress_printer(sys.stderr.isatty()),
            regions="semantic" if args.semantic else "instances",
        )
    print(report.summary())
    return 0


def _export_model(args: argparse.Namespace) -> int:
    from engine.project import Project
    from engine.project.integrity import refuse_inside

    with Project.open(args.project, readonly=True) as project:
        if args.run:
            run = project.run(args.run)
        else:
            run = project.last_run()
            if run is None:
                raise UserError("no trained model yet: train first (maskloop train PROJECT)", project.path)
        if run.checkpoint is None or not Path(run.checkpoint).is_file():
            raise UserError(f"run {run.name!r} has no checkpoint", project.path)
        checkpoint = Path(run.checkpoint)
        out = Path(args.out)
        refuse_inside(project.path, out, "export the model")
        if out.exists() and not args.overwrite:
            raise UserError("already exists; nothing written (add --overwrite to replace)", out)
        if args.model == "bioimageio":
            from engine.bioimageio import package_source

            source = package_source(project, run.name, _image_id(project, args.image))
    if args.model == "bioimageio":
        from engine.bioimageio import export_bioimageio  # torch loads here, not at start-up

        written = export_bioimageio(source, out, name=args.name, authors=args.author,
                                    license_id=args.license)
        print(f"exported run {run.name} as a bioimage.io model package to {written} "
              f"(test image {source.image_name})")
        return 0
    if args.name or args.author or args.image or args.license != "CC-BY-4.0":
        raise UserError("--name, --author, --license and --image are for --model bioimageio")
    from engine.model_export import export_model  # torch loads here, not at start-up

    written = export_model(checkpoint, args.model, out)
    print(f"exported run {run.name} as {args.model} to {written if written is not None else out}")
    return 0


def _image_id(project, image: str | None) -> int | None:
    """``--image``: an image's name or id in the project (None: let the export choose)."""
    if image is None:
        return None
    records = project.images()
    for r in records:
        if r.name == image:
            return r.id
    if image.isdigit() and any(r.id == int(image) for r in records):
        return int(image)
    raise UserError(f"no image named {image!r} in the project (give a name or an id)", project.path)
