"""Kill -9 a process importing 20 images with their masks, at random moments of the import:
afterwards the project must open and hold either none of the import or all of it (images,
their labels, the classes the masks added), with no stray file and no unfinished journal row."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.project import Project

REPO = Path(__file__).resolve().parents[3]
H, W = 96, 128
COUNT = 20
STEPS = 2 * COUNT  # the store's progress: one per image copied, one per label written
CLASSES = ["background", "cell"]
ADDED = ["class 2", "class 3"]  # what masks with values 2 and 3 add

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")


def mask_of(i: int) -> np.ndarray:
    """Image i's mask: its own band of rows in class i % 4 (so some masks need new classes),
    background elsewhere and an unlabeled corner; every label differs from the others."""
    mask = np.zeros((H, W), np.uint8)
    mask[: 3 + 4 * i] = i % 4
    mask[-8:, -8:] = 255
    return mask


_WORKER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from engine.formats.importer import import_paths
    from engine.project import Project

    def progress(stage, done, total):
        print(stage.replace(" ", "_"), done, total, flush=True)

    project = Project.open({path!r})
    print("ready", flush=True)
    import_paths(project, [{images!r}], masks_dir={masks!r}, progress=progress)
    project.close()
    print("finished", flush=True)
    """
)


def _was_mid_change(path: Path) -> bool:
    """Before any repair: did the kill leave the store's import change half-done?"""
    with Project.open(path, readonly=True) as project:
        return project.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] > 0


def _check_all_or_nothing(path: Path) -> int:
    """Open (which repairs), check the project holds none or all of the import; returns how
    many images it holds."""
    with Project.open(path) as project:
        records = project.images()
        classes = [c.name for c in project.classes]
        assert len(records) in (0, COUNT), [r.name for r in records]
        assert classes == (CLASSES if not records else CLASSES + ADDED)
        for i, record in enumerate(records):
            assert record.name == f"i{i:02d}.png"
            expected = mask_of(i)
            assert np.array_equal(project.read_label(record.id), expected), record
            assert record.labeled_pixels == int(np.count_nonzero(expected != 255)), record
            assert project.read_image(record.id).shape == (H, W, 3)
        assert project.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0
        assert {p.name for p in (path / "images").iterdir()} == {Path(r.file).name for r in records}
        assert {p.name for p in (path / "labels").iterdir()} == {f"{r.id}.png" for r in records}
        return len(records)


def _run_worker(code: str, kill_at: int | None, delay: float) -> bool:
    """Run one import; kill it once the store reports step ``kill_at`` of adding the images
    (0: ``delay`` seconds after it opened the project, while masks are still being read), or let
    it finish (None). Returns whether it was still running when killed."""
    worker = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
        if kill_at is None:
            assert worker.wait(timeout=60) == 0, worker.stderr.read()
            return False
        if kill_at == 0:
            time.sleep(delay)
        else:
            for line in worker.stdout:
                stage, done, _ = line.split()
                if stage == "adding_images" and int(done) >= kill_at:
                    break
            else:
                raise AssertionError(f"the import ended early: {worker.stderr.read()}")
        running = worker.poll() is None
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        return running
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.stdout.close()
        worker.stderr.close()


def test_sigkill_during_an_import_leaves_none_or_all_of_it(tmp_path):
    images, masks = tmp_path / "data" / "images", tmp_path / "data" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(COUNT):
        cv2.imwrite(str(images / f"i{i:02d}.png"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        cv2.imwrite(str(masks / f"i{i:02d}.png"), mask_of(i))

    chooser = random.Random(2024)
    # Early (reading masks), in the copies, in the label writes, at the commit, then untouched.
    plan = [0, chooser.randint(1, COUNT), chooser.randint(1, COUNT),
            chooser.randint(COUNT + 1, STEPS - 1), chooser.randint(COUNT + 1, STEPS - 1), STEPS, None]
    outcomes = []
    for n, kill_at in enumerate(plan):
        path = tmp_path / f"p{n}"
        Project.create(path, CLASSES).close()
        code = _WORKER.format(repo=str(REPO), path=str(path), images=str(images), masks=str(masks))
        running = _run_worker(code, kill_at, chooser.uniform(0.0, 0.1))
        mid_change = _was_mid_change(path)
        outcomes.append((kill_at, running, mid_change, _check_all_or_nothing(path)))
    # The kills really landed inside the store's change (a journal row was left to undo), and
    # the check above saw both outcomes.
    assert sum(mid for _, running, mid, _ in outcomes if running) >= 3, outcomes
    assert outcomes[-1][3] == COUNT and any(held == 0 for *_, held in outcomes), outcomes
