"""Opening, creating, importing into and exporting from projects, with the questions and error
messages around them. The window calls these from its menus, drops and command line.

Every error reaches the user as one dialog with one clear line (``UserError``'s message); a
locked project offers to open read-only; importing and exporting run as jobs of the window's
:class:`gui.jobs.JobRunner` (their result arrives later, by callback), and while one runs,
opening or creating a project is refused; a newer project is refused without being touched; a
folder that is not a project offers to become one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from engine import imageio
from engine.errors import NewerProjectError, ProjectLockedError, UserError
from engine.project import Project
from gui import dialogs
from gui.export_paths import export_start, remember_export
from gui.jobs import JobRunner, count_progress, stage_progress
from gui.settings import Preferences
from gui.workspace import Feedback, Workspace

DB_NAME = "project.db"
DEFAULT_CLASSES = ["background", "foreground"]


def is_project_folder(path: Path) -> bool:
    return path.is_dir() and (path / DB_NAME).is_file()


def folder_has_images(folder: Path, limit: int = 2000) -> bool:
    seen = 0
    for p in folder.rglob("*"):
        seen += 1
        if p.is_file() and imageio.is_image_file(p):
            return True
        if seen > limit:
            return False
    return False


class ProjectActions:
    """``open_project(project) -> bool`` shows a project in the window (False: the one open
    could not be closed); imports and exports run in ``jobs``."""

    def __init__(self, workspace: Workspace, feedback: Feedback, prefs: Preferences,
                 jobs: JobRunner, open_project: Callable[[Project], bool]) -> None:
        self.workspace = workspace
        self.feedback = feedback
        self.prefs = prefs
        self.jobs = jobs
        self._open_project = open_project

    # ----------------------------------------------------------- opening
    def open_dialog(self) -> bool:
        start = self.prefs.last_folder() or str(Path.home())
        path = dialogs.pick_project_folder(self.feedback.parent, start)
        return False if path is None else self.open_path(path)

    def open_path(self, path: Path | str, ask: bool = True) -> bool:
        """Open a project folder (or offer to make one of a folder that is not). True when a
        project was opened."""
        path = Path(path)
        if self.jobs.refuse("Opening a project"):
            return False
        if path.name == DB_NAME:
            path = path.parent
        if path.is_dir() and not is_project_folder(path) and ask:
            return self._not_a_project(path)
        try:
            project = Project.open(path)
        except NewerProjectError as exc:
            self.feedback.error("Made by a newer Maskloop", f"{exc}\n\nThe project was not "
                                "changed. Open it with a newer version of Maskloop.")
            return False
        except ProjectLockedError as exc:
            if not ask or not dialogs.ask_open_read_only(self.feedback.parent, str(exc)):
                if not ask:
                    self.feedback.error("Project in use", str(exc))
                return False
            try:
                project = Project.open(path, readonly=True)
            except UserError as exc2:
                self.feedback.error("Cannot open the project", str(exc2))
                return False
        except UserError as exc:
            self.feedback.error("Cannot open the project", str(exc))
            return False
        return self._opened(project)

    def _opened(self, project: Project) -> bool:
        if not self._open_project(project):
            project.close()
            return False
        self.prefs.add_recent(project.path)
        self.prefs.set_last_folder(project.path.parent)
        return True

    def _not_a_project(self, folder: Path) -> bool:
        choice = dialogs.ask_not_a_project(self.feedback.parent, folder, folder_has_images(folder))
        if choice == dialogs.NOT_A_PROJECT_CREATE:
            return self._create(folder, DEFAULT_CLASSES)
        if choice == dialogs.NOT_A_PROJECT_IMPORT:
            return self.new_project(images=[folder], suggested=f"{folder.name}-project",
                                    start_dir=str(folder.parent))
        return False

    def _create(self, path: Path, classes: list[str]) -> bool:
        try:
            project = Project.create(path, classes or DEFAULT_CLASSES)
        except UserError as exc:
            self.feedback.error("Cannot create the project", str(exc))
            return False
        return self._opened(project)

    def new_project(self, images: list[Path] | None = None, suggested: str = "",
                    start_dir: str = "") -> bool:
        if self.jobs.refuse("A new project"):
            return False
        answer = dialogs.ask_new_project(self.feedback.parent,
                                         start_dir or self.prefs.last_folder(), suggested)
        if answer is None:
            return False
        path, classes = answer
        if not self._create(path, classes):
            return False
        if images:
            self.import_images(images)
        return True

    # --------------------------------------------------------- importing
    def import_images_dialog(self) -> None:
        paths = dialogs.pick_images(self.feedback.parent, self.prefs.last_folder())
        if paths:
            self.import_images(paths)

    def import_folder_dialog(self) -> None:
        folder = dialogs.pick_folder(self.feedback.parent, "Import a folder of images",
                                     self.prefs.last_folder())
        if folder is not None:
            self.import_images([folder])

    def import_images(self, paths: list[Path]) -> bool:
        """Copy images into the project, as a job (see gui/jobs.py); True when it started, or
        when a new project was made for them."""
        project, say = self.workspace.project, self.feedback.status
        if project is None:
            return self.new_project(images=paths, suggested="my-project",
                                    start_dir=str(Path(paths[0]).parent))
        if project.readonly:
            self.feedback.error("Read-only project", "This project is open read-only.")
            return False

        def job(emit, stop):
            return project.add_images(paths, progress=count_progress(emit, "Copying the images"),
                                      stop_event=stop)

        def done(records) -> None:
            self.prefs.set_last_folder(Path(paths[0]).parent)
            self.workspace.images_added([r.id for r in records])
            say(f"Imported {len(records)} image{'s' * (len(records) != 1)}")

        return self.jobs.start("Importing images", job, done,
                               error_title="Cannot import the images",
                               error_note="\n\nNothing was imported.",
                               cancelled=lambda: say("Import cancelled: nothing was imported.",
                                                     8000))

    def import_annotations_dialog(self) -> None:
        if not self.workspace.writable:
            self.feedback.error("No project", "Open or create a project to import into.")
            return
        request = dialogs.ask_import_annotations(self.feedback.parent, self.prefs.last_folder())
        if request is not None:
            self.import_annotations(list(request.paths), fmt=request.fmt,
                                    masks_dir=request.masks_dir,
                                    unlabeled_value=request.unlabeled_value,
                                    uncovered=request.uncovered)

    def import_annotations(self, paths: list[Path], fmt: str | None = None,
                           masks_dir: Path | None = None, unlabeled_value: int | None = None,
                           uncovered: str | None = None) -> bool:
        """Import images with their masks or annotations, as a job; True when it started."""
        from engine.formats import import_paths

        project, say = self.workspace.project, self.feedback.status

        def job(emit, stop):
            return import_paths(project, paths, fmt=fmt, masks_dir=masks_dir,
                                unlabeled_value=unlabeled_value, uncovered=uncovered,
                                progress=stage_progress(emit), stop_event=stop)

        def done(report) -> None:
            self.workspace.labels_changed_on_disk()
            say(report.summary(), 10000)

        return self.jobs.start("Importing", job, done, error_title="Cannot import",
                               error_note="\n\nNothing was imported.", flush=True,
                               cancelled=lambda: say("Import cancelled: nothing was imported.",
                                                     8000))

    # --------------------------------------------------------- exporting
    def export_masks_dialog(self) -> None:
        project = self.workspace.project
        if project is None:
            return
        start = export_start(self.prefs, project, "masks", f"{project.name}-masks")
        classes = project.classes
        request = dialogs.ask_export_masks(self.feedback.parent, str(start),
                                           classes[0].name if classes else "background")
        if request is not None:
            self.export_masks(request.fmt, request.out_dir, unlabeled_as=request.unlabeled_as,
                              include_unlabeled=request.include_unlabeled,
                              overwrite=request.overwrite, regions=request.regions)

    def export_masks(self, fmt: str, out_dir: Path, unlabeled_as: str = "unlabeled",
                     include_unlabeled: bool = False, overwrite: bool = False,
                     regions: str = "instances") -> bool:
        """Write the labels out, as a job (the labels saved first); True when it started."""
        from engine.formats import export_masks

        project, say = self.workspace.project, self.feedback.status
        # What cannot be saved now is exported as last saved (the user was told): an export to
        # another disk is what a full one leaves to do.
        self.workspace.flush_labels()

        def job(emit, stop):
            return export_masks(project, fmt, out_dir, unlabeled_as=unlabeled_as,
                                overwrite=overwrite, include_unlabeled=include_unlabeled,
                                progress=stage_progress(emit), regions=regions, stop_event=stop)

        def done(report) -> None:
            remember_export(self.prefs, project, "masks", Path(out_dir))
            say(report.summary(), 10000)

        return self.jobs.start("Exporting", job, done, error_title="Cannot export",
                               cancelled=lambda: say(f"Export cancelled: the files written so "
                                                     f"far stay in {out_dir}.", 10000))
