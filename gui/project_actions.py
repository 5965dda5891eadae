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
from typing import TYPE_CHECKING

from engine import imageio
from engine.errors import NewerProjectError, ProjectLockedError, UserError
from engine.project import Project
from gui import dialogs
from gui.export_paths import export_start, remember_export
from gui.jobs import count_progress, stage_progress

if TYPE_CHECKING:
    from gui.main_window import MainWindow

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
    def __init__(self, window: MainWindow) -> None:
        self.window = window

    @property
    def prefs(self):
        return self.window.prefs

    @property
    def jobs(self):
        """The window's :class:`gui.jobs.JobRunner`: imports and exports run there."""
        return self.window.jobs

    # ----------------------------------------------------------- opening
    def open_dialog(self) -> bool:
        start = self.prefs.last_folder() or str(Path.home())
        path = dialogs.pick_project_folder(self.window, start)
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
            self.window.show_error("Made by a newer Maskloop", f"{exc}\n\nThe project was not "
                                   "changed. Open it with a newer version of Maskloop.")
            return False
        except ProjectLockedError as exc:
            if not ask or not dialogs.ask_open_read_only(self.window, str(exc)):
                if not ask:
                    self.window.show_error("Project in use", str(exc))
                return False
            try:
                project = Project.open(path, readonly=True)
            except UserError as exc2:
                self.window.show_error("Cannot open the project", str(exc2))
                return False
        except UserError as exc:
            self.window.show_error("Cannot open the project", str(exc))
            return False
        return self._opened(project)

    def _opened(self, project: Project) -> bool:
        if not self.window.set_project(project):
            project.close()
            return False
        self.prefs.add_recent(project.path)
        self.prefs.set_last_folder(project.path.parent)
        return True

    def _not_a_project(self, folder: Path) -> bool:
        choice = dialogs.ask_not_a_project(self.window, folder, folder_has_images(folder))
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
            self.window.show_error("Cannot create the project", str(exc))
            return False
        return self._opened(project)

    def new_project(self, images: list[Path] | None = None, suggested: str = "",
                    start_dir: str = "") -> bool:
        if self.jobs.refuse("A new project"):
            return False
        answer = dialogs.ask_new_project(self.window, start_dir or self.prefs.last_folder(),
                                         suggested)
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
        paths = dialogs.pick_images(self.window, self.prefs.last_folder())
        if paths:
            self.import_images(paths)

    def import_folder_dialog(self) -> None:
        folder = dialogs.pick_folder(self.window, "Import a folder of images",
                                     self.prefs.last_folder())
        if folder is not None:
            self.import_images([folder])

    def import_images(self, paths: list[Path]) -> bool:
        """Copy images into the project, as a job (see gui/jobs.py); True when it started, or
        when a new project was made for them."""
        window = self.window
        if window.project is None:
            return self.new_project(images=paths, suggested="my-project",
                                    start_dir=str(Path(paths[0]).parent))
        if window.project.readonly:
            window.show_error("Read-only project", "This project is open read-only.")
            return False
        project = window.project

        def job(emit, stop):
            return project.add_images(paths, progress=count_progress(emit, "Copying the images"),
                                      stop_event=stop)

        def done(records) -> None:
            self.prefs.set_last_folder(Path(paths[0]).parent)
            window.images_added([r.id for r in records])
            window.status_message(f"Imported {len(records)} image{'s' * (len(records) != 1)}")

        return self.jobs.start("Importing images", job, done,
                               error_title="Cannot import the images",
                               error_note="\n\nNothing was imported.",
                               cancelled=lambda: window.status_message(
                                   "Import cancelled: nothing was imported.", 8000))

    def import_annotations_dialog(self) -> None:
        window = self.window
        if window.project is None or window.project.readonly:
            window.show_error("No project", "Open or create a project to import into.")
            return
        request = dialogs.ask_import_annotations(window, self.prefs.last_folder())
        if request is not None:
            self.import_annotations(**request)

    def import_annotations(self, paths: list[Path], fmt: str | None = None,
                           masks_dir: Path | None = None, unlabeled_value: int | None = None,
                           uncovered: str | None = None) -> bool:
        """Import images with their masks or annotations, as a job; True when it started."""
        from engine.formats import import_paths

        window = self.window
        project = window.project

        def job(emit, stop):
            return import_paths(project, paths, fmt=fmt, masks_dir=masks_dir,
                                unlabeled_value=unlabeled_value, uncovered=uncovered,
                                progress=stage_progress(emit), stop_event=stop)

        def done(report) -> None:
            window.labels_changed_on_disk()
            window.status_message(report.summary(), 10000)

        return self.jobs.start("Importing", job, done, error_title="Cannot import",
                               error_note="\n\nNothing was imported.", flush=True,
                               cancelled=lambda: window.status_message(
                                   "Import cancelled: nothing was imported.", 8000))

    # --------------------------------------------------------- exporting
    def export_masks_dialog(self) -> None:
        window = self.window
        project = window.project
        if project is None:
            return
        start = export_start(self.prefs, project, "masks", f"{project.name}-masks")
        classes = project.classes
        request = dialogs.ask_export_masks(window, str(start),
                                           classes[0].name if classes else "background")
        if request is not None:
            self.export_masks(**request)

    def export_masks(self, fmt: str, out_dir: Path, unlabeled_as: str = "unlabeled",
                     include_unlabeled: bool = False, overwrite: bool = False,
                     regions: str = "instances") -> bool:
        """Write the labels out, as a job (the labels saved first); True when it started."""
        from engine.formats import export_masks

        window = self.window
        project = window.project
        # What cannot be saved now is exported as last saved (the user was told): an export to
        # another disk is what a full one leaves to do.
        window.flush_labels()

        def job(emit, stop):
            return export_masks(project, fmt, out_dir, unlabeled_as=unlabeled_as,
                                overwrite=overwrite, include_unlabeled=include_unlabeled,
                                progress=stage_progress(emit), regions=regions, stop_event=stop)

        def done(report) -> None:
            remember_export(self.prefs, project, "masks", Path(out_dir))
            window.status_message(report.summary(), 10000)

        return self.jobs.start("Exporting", job, done, error_title="Cannot export",
                               cancelled=lambda: window.status_message(
                                   f"Export cancelled: the files written so far stay in {out_dir}.",
                                   10000))
