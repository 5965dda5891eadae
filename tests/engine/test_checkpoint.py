"""Checkpoints: round trip, atomic writes, and every way a file can be wrong."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from engine.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from engine.errors import UserError
from engine.models import build_model

torch.set_num_threads(int(os.environ.get("MASKLOOP_TORCH_THREADS", "2")))


def _meta(model, classes=("background", "cell", "nucleus"), in_channels=1):
    return {
        "model": {"name": "unet", "options": model.maskloop_options,
                  "num_classes": len(classes), "in_channels": in_channels},
        "classes": [{"index": i, "name": n, "color": (i * 40, 200, 10)} for i, n in enumerate(classes)],
        "normalization": {"mean": [118.5], "std": [41.25]},
        "metrics": {"mean_iou": 0.81, "per_class": {"cell": {"iou": 0.9}}},
        "train": {"epoch": 3, "step": 120, "crop": (256, 256), "out": Path("/x/y")},
    }


@pytest.fixture
def small_unet():
    torch.manual_seed(0)
    model = build_model("unet", 3, 1, depth=2, base=4)
    # Non-trivial BatchNorm statistics must survive the round trip too.
    model.train()
    model(torch.randn(2, 1, 16, 16))
    return model.eval()


def test_round_trip_predicts_the_same(tmp_path, small_unet):
    path = save_checkpoint(tmp_path / "run" / "checkpoint.pt", small_unet, _meta(small_unet))
    ckpt = load_checkpoint(path)
    assert ckpt.model_name == "unet" and ckpt.num_classes == 3 and ckpt.in_channels == 1
    assert ckpt.class_names == ["background", "cell", "nucleus"]
    assert ckpt.class_colors[1] == (40, 200, 10)
    assert ckpt.normalization == {"mean": [118.5], "std": [41.25]}
    assert ckpt.metrics["per_class"]["cell"]["iou"] == 0.9
    assert ckpt.train["crop"] == [256, 256] and ckpt.train["out"] == "/x/y"
    assert ckpt.format_version == FORMAT_VERSION and ckpt.program_version
    model = ckpt.build_model("cpu")
    assert not model.training
    x = torch.randn(1, 1, 23, 19)
    with torch.no_grad():
        assert torch.equal(model(x), small_unet(x))
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temp file left


def test_wrapped_model_saves_plain_names(tmp_path, small_unet):
    wrapped = {"module." + k: v for k, v in small_unet.state_dict().items()}
    path = save_checkpoint(tmp_path / "c.pt", wrapped, _meta(small_unet))
    assert all(not k.startswith("module.") for k in load_checkpoint(path).state_dict)


def test_failed_save_keeps_the_previous_file(tmp_path, small_unet, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", small_unet, _meta(small_unet))
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(UserError, match="no space left"):
        save_checkpoint(path, small_unet, _meta(small_unet))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_corrupt_files_are_user_errors_naming_the_file(tmp_path, small_unet):
    good = save_checkpoint(tmp_path / "good.pt", small_unet, _meta(small_unet)).read_bytes()
    cases = {"truncated.pt": good[: len(good) // 2], "empty.pt": b"", "text.pt": b"hello, world\n",
             "flipped.pt": good[:100] + bytes(b ^ 0xFF for b in good[100:400]) + good[400:]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError) as err:
            load_checkpoint(tmp_path / name)
        assert name in str(err.value)
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_other_torch_files_are_not_checkpoints(tmp_path, small_unet):
    torch.save(small_unet.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(UserError, match="not a Maskloop checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    data = torch.load(save_checkpoint(tmp_path / "c.pt", small_unet, _meta(small_unet)), weights_only=True)
    del data["model"]
    torch.save(data, tmp_path / "nomodel.pt")
    with pytest.raises(UserError, match="damaged"):
        load_checkpoint(tmp_path / "nomodel.pt")


class _Payload:
    """Unpickling this would create the marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "maskloop-checkpoint", "format_version": 1, "x": _Payload(marker)},
               tmp_path / "evil.pt")
    (tmp_path / "evil_legacy.pt").write_bytes(pickle.dumps({"x": _Payload(marker)}, protocol=2))
    for name in ("evil.pt", "evil_legacy.pt"):
        with pytest.raises(UserError) as err:
            load_checkpoint(tmp_path / name)
        assert name in str(err.value)
        assert not marker.exists()
    # The payload is real: plain pickle would have run it.
    pickle.loads((tmp_path / "evil_legacy.pt").read_bytes())
    assert marker.exists()


def test_newer_format_is_refused(tmp_path, small_unet):
    path = save_checkpoint(tmp_path / "c.pt", small_unet, _meta(small_unet))
    data = torch.load(path, weights_only=True)
    data["format_version"] = FORMAT_VERSION + 1
    torch.save(data, path)
    with pytest.raises(UserError, match="newer Maskloop") as err:
        load_checkpoint(path)
    assert "c.pt" in str(err.value)


def test_finetune_to_more_classes_reinitialises_only_the_head(tmp_path, small_unet):
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "c.pt", small_unet, _meta(small_unet)))
    model, fresh = ckpt.build_for_finetune(5, in_channels=1)
    assert sorted(fresh) == ["head.bias", "head.weight", "pixel_head.bias", "pixel_head.weight"]
    assert model.training and model.head.out_channels == 5
    assert torch.equal(model.encoder.levels[1][1][0].weight, small_unet.encoder.levels[1][1][0].weight)
    same, fresh = ckpt.build_for_finetune(3, in_channels=1, model_name="unet")
    assert fresh == [] and torch.equal(same.head.weight, small_unet.head.weight)


def test_incompatible_finetune_is_a_user_error(tmp_path, small_unet):
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "c.pt", small_unet, _meta(small_unet)))
    with pytest.raises(UserError, match="not a fcn8s"):
        ckpt.build_for_finetune(3, in_channels=1, model_name="fcn8s")
    with pytest.raises(UserError, match="1-channel images, these have 3"):
        ckpt.build_for_finetune(3, in_channels=3)
    with pytest.raises(UserError, match="classes"):
        ckpt.check_compatible("unet", 4, 1, allow_new_classes=False)


def test_weights_that_do_not_fit_the_architecture(tmp_path, small_unet):
    meta = _meta(small_unet)
    meta["model"]["options"] = dict(meta["model"]["options"], base=8)
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "c.pt", small_unet, meta))
    with pytest.raises(UserError, match="do not fit"):
        ckpt.build_model("cpu")


def test_a_checkpoint_from_before_the_filter_bank_still_loads_as_it_was_built(tmp_path):
    """Checkpoints written before the ``features`` option rebuild without the filter bank."""
    import torch

    from engine.models import build_model

    old = build_model("unet", 2, 1, base=8, depth=2, features=False)
    meta = _meta(old, classes=("a", "b"))
    meta["model"]["options"] = {k: v for k, v in meta["model"]["options"].items() if k != "features"}
    path = save_checkpoint(tmp_path / "old.pt", old, meta)
    model = load_checkpoint(path).build_model()
    assert model.stem is None
    x = torch.randn(1, 1, 32, 32)
    old.eval()
    with torch.no_grad():
        assert torch.equal(model(x), old(x))
