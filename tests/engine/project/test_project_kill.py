"""Kill -9 a process that is busy saving labels and editing the index, many times at random
moments: afterwards the project must open, every label file must be a complete version, and the
index must agree with the files."""

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
H, W = 192, 256
KILLS = 20

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")


def label_version(v: int) -> np.ndarray:
    """Version v of a label: its first v % H rows are class (v // 7) % 2, the rest unlabeled.
    Every version has its own pixel count, so a stale count is caught."""
    mask = np.full((H, W), 255, np.uint8)
    mask[: v % H] = (v // 7) % 2
    return mask


_WORKER = textwrap.dedent(
    """
    import shutil, sys
    sys.path.insert(0, {repo!r})
    import numpy as np
    from engine.project import Project
    sys.path.insert(0, {tests!r})
    from test_project_kill import H, W, label_version

    project = Project.open({path!r})
    v = project.get_setting("v", 0)
    print("ready", flush=True)
    base = [r.id for r in project.images()[:3]]
    while True:
        v += 1
        project.write_label(base[v % 3], label_version(v))
        project.set_setting("v", v)
        project.set_done(base[(v + 1) % 3], v % 2 == 0)
        if v % 3 == 0:
            classmap = np.full((H, W), v % 2, np.uint8)
            confidence = np.full((H, W), v % 250, np.uint8)
            project.write_prediction(base[(v + 2) % 3], classmap, confidence, "r%d" % v, float(v))
        if v % 4 == 0:
            project.add_images([{src!r}], labels=[label_version(v)])
            extra = [r.id for r in project.images()[3:]]
            if len(extra) > 2:
                project.remove_image(extra[0])
    """
)


def _check_project(path: Path) -> int:
    """Open (which repairs), then check that files and index agree; returns the version count."""
    with Project.open(path) as project:
        records = project.images()
        ids = {r.id for r in records}
        for record in records:
            label = project.read_label(record.id)  # raises on a half-written file
            rows = int(np.count_nonzero((label != 255).any(axis=1)))
            value = int(label[0, 0]) if rows else 0
            assert np.array_equal(label[:rows], np.full((rows, W), value, np.uint8)), record
            assert (label[rows:] == 255).all(), record
            assert record.labeled_pixels == rows * W, (record, rows)
            if record.prediction_run is not None:
                classmap, confidence = project.read_prediction(record.id)
                k = int(confidence[0, 0])
                assert (confidence == k).all() and (classmap == k % 2).all(), record
                assert record.prediction_run == f"r{int(record.uncertainty)}"
                assert k == int(record.uncertainty) % 250
            assert project.read_image(record.id).shape == (H, W, 3)
        # No orphans: every file belongs to a row, no temporary or staged file survived.
        assert {p.name for p in (path / "images").iterdir()} == {Path(r.file).name for r in records}
        for p in (path / "labels").iterdir():
            assert p.suffix == ".png" and int(p.stem) in ids, p
        for p in (path / "predictions").iterdir():
            assert int(p.name.split(".")[0]) in ids and not p.name.endswith(".tmp"), p
        assert project.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0
        return project.get_setting("v", 0)


def test_sigkill_at_random_moments_never_corrupts(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    files = []
    for i in range(3):
        files.append(src / f"base{i}.png")
        cv2.imwrite(str(files[-1]), image)
    extra = src / "extra.png"
    cv2.imwrite(str(extra), image)
    path = tmp_path / "p"
    with Project.create(path, ["bg", "fg"]) as project:
        project.add_images(files)

    code = _WORKER.format(repo=str(REPO), tests=str(Path(__file__).parent), path=str(path), src=str(extra))
    rng = random.Random(1234)
    versions = []
    for _ in range(KILLS):
        worker = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            line = worker.stdout.readline()
            assert line.strip() == "ready", worker.stderr.read()
            time.sleep(rng.uniform(0.01, 0.25))
            assert worker.poll() is None, worker.stderr.read()  # still busy when killed
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            worker.stdout.close()
            worker.stderr.close()
        versions.append(_check_project(path))
    # The workers really were writing between kills (not killed before doing anything).
    assert versions[-1] >= KILLS, versions
    assert len(set(versions)) > KILLS // 2


_CRASHING_IMPORT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {repo!r})
    import numpy as np
    import engine.atomic as atomic
    from engine.project import Project
    calls = [0]
    real_replace = atomic.replace
    def replace(a, b):
        calls[0] += 1
        if calls[0] == {crash_at}:
            os._exit(9)
        real_replace(a, b)
    atomic.replace = replace
    project = Project.open({path!r})
    masks = [np.full(({h}, {w}), k % 2, np.uint8) for k in range(3)]
    project.add_images({files!r}, labels=masks)
    os._exit(0)
    """
)


@pytest.mark.parametrize("crash_at", [2, 5, 6])
def test_import_with_labels_killed_midway_leaves_nothing(tmp_path, crash_at):
    """Renames 1-3 copy the images, 4-6 write their labels; a crash anywhere before the rows
    are committed must leave neither copies nor labels behind."""
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for i in range(3):
        files.append(str(src / "i{i}.png".format(i=i)))
        cv2.imwrite(files[-1], np.zeros((H, W, 3), np.uint8))
    path = tmp_path / "p"
    Project.create(path, ["bg", "fg"]).close()
    code = _CRASHING_IMPORT.format(repo=str(REPO), crash_at=crash_at, path=str(path), files=files, h=H, w=W)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 9, result.stderr
    with Project.open(path) as project:
        assert project.images() == []
        assert project.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0
    assert list((path / "images").iterdir()) == [] and list((path / "labels").iterdir()) == []
