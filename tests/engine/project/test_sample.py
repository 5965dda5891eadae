"""The built-in sample: generated, deterministic, partly labeled, and learnable."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import UserError
from engine.project import Project
from engine.project.sample import COUNT, FULLY_LABELED, STROKED, write_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("s") / "demo"
    write_sample(path).close()
    return path


def test_sample_contents(sample):
    with Project.open(sample, readonly=True) as project:
        assert [c.name for c in project.classes] == ["background", "cell", "debris"]
        images = project.images()
        assert len(images) == COUNT
        for record in images:
            assert (record.width, record.height, record.channels, record.dtype) == (256, 256, 3, "uint8")
            assert project.read_image(record.id).std() > 10  # textured, not flat
        full, stroked, unlabeled = (
            images[:FULLY_LABELED],
            images[FULLY_LABELED : FULLY_LABELED + STROKED],
            images[FULLY_LABELED + STROKED :],
        )
        for record in full:
            label = project.read_label(record.id)
            assert record.labeled_pixels == label.size and set(np.unique(label)) == {0, 1, 2}
            assert record.done
        for record in stroked:
            label = project.read_label(record.id)
            fraction = record.labeled_pixels / label.size
            assert 0.002 < fraction < 0.25, fraction  # strokes, not masks
            assert len(set(np.unique(label)) - {255}) >= 2
        assert all(r.labeled_pixels == 0 for r in unlabeled)


def test_sample_is_deterministic(sample, tmp_path):
    write_sample(tmp_path / "again").close()
    for sub in ("images", "labels"):
        first = sorted((sample / sub).iterdir())
        second = sorted((tmp_path / "again" / sub).iterdir())
        assert [p.name for p in first] == [p.name for p in second]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second))


def test_sample_classes_are_learnable_from_the_strokes(sample):
    """A nearest-mean colour rule fitted on the stroked images alone already labels the fully
    labeled ones well: the classes are distinct, so a network trained for a minute will be."""
    with Project.open(sample, readonly=True) as project:
        images = project.images()
        sums = np.zeros((3, 3))
        counts = np.zeros(3)
        for record in images[FULLY_LABELED : FULLY_LABELED + STROKED]:
            image = project.read_image(record.id).astype(np.float64)
            label = project.read_label(record.id)
            for k in range(3):
                sums[k] += image[label == k].sum(axis=0)
                counts[k] += np.count_nonzero(label == k)
        assert (counts > 0).all()
        means = sums / counts[:, None]
        correct = total = 0
        for record in images[:FULLY_LABELED]:
            image = project.read_image(record.id).astype(np.float64)
            label = project.read_label(record.id)
            guess = np.argmin(((image[:, :, None, :] - means) ** 2).sum(-1), axis=2)
            correct += np.count_nonzero(guess == label)
            total += label.size
        assert correct / total > 0.9


def test_sample_refuses_existing_folder(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x.txt").write_text("mine")
    with pytest.raises(UserError, match="not an empty folder"):
        write_sample(tmp_path / "taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
