"""bioimage.io model packages: a model trained on the built-in sample is exported with
``export --model bioimageio``; bioimageio.spec validates the zip and bioimageio.core's
test_model reproduces its test tensors, both offline (every socket connection is refused in
these tests); the package's ONNX weights run by onnxruntime, outside Maskloop, give the very
class maps of ``predict --model model.zip``; Maskloop continues training from the zip; a
package is read as untrusted input."""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from engine import bioimageio as bio
from engine.checkpoint import load_checkpoint
from engine.cli import main
from engine.errors import UserError
from engine.project import Project
from engine.project.sample import write_sample
from engine.training import TrainConfig, train_project

torch.set_num_threads(int(os.environ.get("MASKLOOP_TORCH_THREADS", "2")))



def _tiny() -> dict:
    """A tiny plain U-Net. (Where the U-Net has the optional filter-bank stem, it is off: what
    these tests check is the package, and test_model_export covers exporting every model.)"""
    from engine.models import model_defaults

    options = {"base": 8, "depth": 3}
    if "features" in model_defaults("unet"):
        options["features"] = False
    return options


def _yaml(text: str):
    """rdf.yaml as a YAML 1.1 reader (PyYAML, like Fiji's SnakeYAML) reads it, else ruyaml."""
    try:
        import yaml

        return yaml.safe_load(text)
    except ImportError:
        from ruyaml import YAML

        return YAML(typ="safe").load(text)


@pytest.fixture
def offline(monkeypatch, tmp_path_factory):
    """No network: any socket connection fails at once; bioimageio's cache in a temp folder."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("BIOIMAGEIO_CACHE_PATH", str(tmp_path_factory.mktemp("bioimageio-cache")))
    spec = pytest.importorskip("bioimageio.spec")
    monkeypatch.setattr(spec.settings, "cache_path", tmp_path_factory.mktemp("bioimageio-cache"))
    return spec


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The sample project after one short epoch of a tiny U-Net, and its package (by the CLI)."""
    root = tmp_path_factory.mktemp("bioimageio")
    project = write_sample(root / "sample")
    try:
        config = TrainConfig(model="unet", model_options=_tiny(), epochs=1, crop=64,
                             batch_size=4, num_threads=2, init="scratch")
        result = train_project(project, config)
        run = project.run(result.run)
    finally:
        project.close()
    package = root / "model.zip"
    status = main(["export", str(root / "sample"), "--model", "bioimageio", "--out", str(package),
                   "--author", "Ada Lovelace", "--author", "Alan Turing", "--license", "MIT",
                   "--name", "Sample cells (test)"])
    assert status == 0
    return {"project": root / "sample", "run": run, "package": package, "root": root}


def _members(package) -> dict[str, bytes]:
    with zipfile.ZipFile(package) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_package_contents(trained):
    files = _members(trained["package"])
    assert {"rdf.yaml", "README.md", "cover.png", "weights.onnx", "weights.torchscript.pt",
            "test_input.npy", "test_output.npy", bio.CHECKPOINT_NAME} <= set(files)
    rdf = _yaml(files["rdf.yaml"].decode())
    ckpt = load_checkpoint(trained["run"].checkpoint)
    assert rdf["format_version"].startswith("0.5.") and rdf["type"] == "model"
    assert rdf["name"] == "Sample cells (test)" and rdf["license"] == "MIT"
    assert [a["name"] for a in rdf["authors"]] == ["Ada Lovelace", "Alan Turing"]
    for name in ckpt.class_names:
        assert name in rdf["description"]
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    (pre,) = inp["preprocessing"]
    assert pre["id"] == "fixed_zero_mean_unit_variance" and pre["kwargs"]["axis"] == "channel"
    assert pre["kwargs"]["mean"] == ckpt.normalization["mean"]
    assert pre["kwargs"]["std"] == ckpt.normalization["std"]
    assert out["axes"][1]["channel_names"] == ckpt.class_names
    assert set(rdf["weights"]) == {"torchscript", "onnx"}
    # the test input is a crop of one of the project's own images, raw values as float32
    x = np.load(io.BytesIO(files["test_input.npy"]))
    y = np.load(io.BytesIO(files["test_output.npy"]))
    assert x.dtype == np.float32 and x.shape[:2] == (1, 3)
    pad = rdf["config"]["maskloop"]["pad_multiple"]
    assert pad == 8 and x.shape[2] % pad == 0 and x.shape[3] % pad == 0
    assert min(x.shape[2:]) >= inp["axes"][2]["size"]["min"] == 64
    assert "halo" not in out["axes"][2]  # a halo would make bioimageio.core pad the input
    with Project.open(trained["project"], readonly=True) as project:
        record = next(r for r in project.images() if r.name == rdf["config"]["maskloop"]["test_image"])
        image = project.read_image(record.id)
    h, w = x.shape[2:]
    y0, x0 = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    assert np.array_equal(x[0].transpose(1, 2, 0), image[y0:y0 + h, x0:x0 + w].astype(np.float32))
    assert y.shape == (1, len(ckpt.class_names), h, w)
    assert np.allclose(y.sum(axis=1), 1.0, atol=1e-4)
    # the cover: the crop beside the crop with the prediction over it
    cover = np.asarray(Image.open(io.BytesIO(files["cover.png"])).convert("RGB"))
    assert cover.shape[0] == h and cover.shape[1] == 2 * w + 4
    assert np.array_equal(cover[:, :w], image[y0:y0 + h, x0:x0 + w])
    # the run's metrics and the training data travel along
    maskloop = rdf["config"]["maskloop"]
    assert maskloop["metrics"]["mean_iou"] == pytest.approx(trained["run"].metrics["mean_iou"])
    assert maskloop["training_data"]["images"] == 20 and maskloop["training_data"]["labeled_images"] == 9
    assert "sample" in rdf["training_data"]["description"]
    readme = files["README.md"].decode()
    assert "## Validation" in readme and "mean IoU" in readme and "ilastik" in readme
    assert files[bio.CHECKPOINT_NAME] == trained["run"].checkpoint.read_bytes()


def test_bioimageio_spec_validates_the_package_offline(trained, offline):
    from bioimageio.spec import load_description

    descr = load_description(trained["package"], perform_io_checks=True)
    summary = descr.validation_summary
    errors = [e for d in summary.details for e in d.errors]
    assert summary.status == "valid-format", errors
    assert type(descr).__name__ == "ModelDescr"
    assert [str(c) for c in descr.outputs[0].axes[1].channel_names] == ["background", "cell", "debris"]


def test_bioimageio_core_test_model_passes_offline(trained, offline):
    from bioimageio.core import test_model

    summary = test_model(trained["package"], devices=["cpu"])
    failed = [d.name for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed
    tested = " ".join(d.name for d in summary.details)
    assert "onnx" in tested and "torchscript" in tested


def _images(trained, tmp_path) -> list:
    """Project images, and one of a size no multiple of the network's pooling."""
    with Project.open(trained["project"], readonly=True) as project:
        records = project.images()
        paths = [project.image_path(r.id) for r in records[:3] + records[-3:]]
        odd = project.read_image(records[10].id)[3:236, 1:251]
    odd_path = tmp_path / "odd.png"
    Image.fromarray(odd).save(odd_path)
    return paths + [odd_path]


def _onnx_classes(files: dict[str, bytes], image: np.ndarray) -> np.ndarray:
    """What another program does with the package: rdf.yaml's preprocessing, the ONNX graph,
    argmax of the probabilities. No Maskloop code."""
    import onnxruntime as ort

    rdf = _yaml(files["rdf.yaml"].decode())
    kwargs = rdf["inputs"][0]["preprocessing"][0]["kwargs"]
    mean = np.asarray(kwargs["mean"], np.float32)[:, None, None]
    std = np.asarray(kwargs["std"], np.float32)[:, None, None]
    x = image.astype(np.float32).transpose(2, 0, 1)
    x = ((x - mean) / (std + 1e-6))[None].astype(np.float32)  # eps as bioimageio.core adds it
    session = ort.InferenceSession(files[rdf["weights"]["onnx"]["source"]],
                                   providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert probabilities.shape == (1, 3) + image.shape[:2]
    return probabilities[0].argmax(axis=0).astype(np.uint8)


def test_package_onnx_weights_predict_what_predict_model_predicts(trained, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    paths = _images(trained, tmp_path)
    out = tmp_path / "masks"
    assert main(["predict", "--model", str(trained["package"]), *map(str, paths), "--out", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    files = _members(trained["package"])
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        ours = np.asarray(Image.open(out / f"{path.stem}.png"))
        theirs = _onnx_classes(files, image)
        assert ours.shape == theirs.shape == image.shape[:2]
        assert np.array_equal(ours, theirs), f"{path.name}: {(ours != theirs).sum()} pixels differ"
        assert len(np.unique(ours)) > 1  # a trained model, not a constant map


def test_bioimageio_core_predicts_what_predict_model_predicts(trained, tmp_path, offline):
    """The package as the consumers built on bioimageio.core (ilastik, napari's plugins) run
    it: whole images, the description's preprocessing, each weights format."""
    from bioimageio.core import create_prediction_pipeline, load_model_description, predict

    paths = _images(trained, tmp_path)[-3:]  # two project images and the odd-sized one
    out = tmp_path / "masks"
    assert main(["predict", "--model", str(trained["package"]), *map(str, paths), "--out", str(out)]) == 0
    model = load_model_description(trained["package"])
    for weights in ("onnx", "torchscript"):
        pipeline = create_prediction_pipeline(model, weight_format=weights, devices=["cpu"])
        for path in paths:
            image = np.asarray(Image.open(path).convert("RGB"))
            x = image.transpose(2, 0, 1)[None].astype(np.float32)
            sample = predict(model=pipeline, inputs={"image": x})
            probabilities = sample.members["probabilities"].data.to_numpy()
            theirs = probabilities[0].argmax(axis=0)
            ours = np.asarray(Image.open(out / f"{path.stem}.png"))
            assert np.array_equal(ours, theirs), f"{weights} {path.name}: {(ours != theirs).sum()} differ"


def test_predict_from_the_package_equals_predict_from_the_checkpoint(trained, tmp_path):
    paths = _images(trained, tmp_path)[:2]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["predict", "--model", str(trained["package"]), *map(str, paths), "--out", str(a)]) == 0
    assert main(["predict", "--model", str(trained["run"].checkpoint), *map(str, paths), "--out", str(b)]) == 0
    for path in paths:
        assert (a / f"{path.stem}.png").read_bytes() == (b / f"{path.stem}.png").read_bytes()


def test_training_continues_from_a_package(trained, tmp_path):
    from engine.project.sample import write_sample as sample

    package = load_checkpoint(trained["package"])
    original = load_checkpoint(trained["run"].checkpoint)
    assert package.path == trained["package"] and package.meta == original.meta
    model, fresh = package.build_for_finetune(3, 3)
    assert fresh == []
    for key, value in original.state_dict.items():
        assert torch.equal(model.state_dict()[key], value)
    project = sample(tmp_path / "colleague")
    try:
        config = TrainConfig(model="unet", model_options=_tiny(), epochs=1, crop=64, batch_size=4,
                             num_threads=2, init=str(trained["package"]))
        result = train_project(project, config)
        run = project.run(result.run)
        assert run.config["init_kind"] not in ("scratch", "pretrained")
        assert str(trained["package"]) in json.dumps(run.config)
    finally:
        project.close()


def test_export_errors_are_one_line(trained, tmp_path, capsys):
    project, package = str(trained["project"]), str(trained["package"])
    cases = [
        (["--out", package], "already exists"),
        (["--out", str(tmp_path / "m.zip"), "--license", "Not a licence"], "SPDX"),
        (["--out", str(tmp_path / "m.zip"), "--name", "a/b"], "name"),
        (["--out", str(tmp_path / "m.zip"), "--name", "abc"], "5 to 128"),
        (["--out", str(tmp_path / "m.zip"), "--image", "no-such.png"], "no-such.png"),
        (["--out", str(tmp_path / "m.zip"), "--author", "x/y"], "author"),
    ]
    for args, what in cases:
        status = main(["export", project, "--model", "bioimageio", *args])
        _, err = capsys.readouterr()
        assert status == 2 and what in err and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
    assert not (tmp_path / "m.zip").exists()
    status = main(["export", project, "--model", "onnx", "--out", str(tmp_path / "m.onnx"),
                   "--author", "Someone"])
    assert status == 2 and "bioimageio" in capsys.readouterr().err


def test_export_defaults_and_chosen_image(trained, tmp_path, capsys):
    out = tmp_path / "default.zip"
    assert main(["export", str(trained["project"]), "--model", "bioimageio", "--out", str(out),
                 "--image", "sample-12.png"]) == 0
    assert "sample-12.png" in capsys.readouterr().out
    rdf = _yaml(_members(out)["rdf.yaml"].decode())
    assert rdf["name"] == "Maskloop U-Net sample" and rdf["license"] == bio.DEFAULT_LICENSE
    assert rdf["authors"][0]["name"] == bio.default_author()
    assert rdf["config"]["maskloop"]["test_image"] == "sample-12.png"


# -- untrusted packages ---------------------------------------------------------------------------

def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_package_is_untrusted_input(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = _members(trained["package"])
    foreign = _zip(tmp_path / "zoo.zip", {"rdf.yaml": files["rdf.yaml"], "weights.onnx": b"x"})
    with pytest.raises(UserError, match="did not export"):
        load_checkpoint(foreign)
    buffer = io.BytesIO()
    torch.save({"format": "maskloop-checkpoint", "evil": _Evil()}, buffer)
    evil = _zip(tmp_path / "evil.zip", {"rdf.yaml": b"type: model\n", bio.CHECKPOINT_NAME: buffer.getvalue()})
    with pytest.raises(UserError, match="refused"):
        load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()
    raw = pickle.dumps({"format": "maskloop-checkpoint"})
    with pytest.raises(UserError):
        load_checkpoint(_zip(tmp_path / "raw.zip", {"rdf.yaml": b"", bio.CHECKPOINT_NAME: raw}))
    # members with paths that point outside: never used as paths, nothing lands anywhere
    sneaky = _zip(tmp_path / "sneaky.zip", {"rdf.yaml": files["rdf.yaml"],
                                             "../../outside.pt": files[bio.CHECKPOINT_NAME],
                                             "/abs/outside.pt": files[bio.CHECKPOINT_NAME]})
    with pytest.raises(UserError, match="did not export"):
        load_checkpoint(sneaky)
    assert not (tmp_path.parent / "outside.pt").exists() and not os.path.exists("/abs/outside.pt")
    # a size limit on what is unpacked, whatever the zip declares
    with pytest.raises(UserError, match="MiB"):
        bio.read_package_checkpoint(trained["package"], limit=1 << 10)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("rdf.yaml", b"")
        zf.writestr(bio.CHECKPOINT_NAME, b"\0" * (4 << 20))
    with pytest.raises(UserError, match="MiB"):
        bio.read_package_checkpoint(bomb, limit=1 << 20)
    # a damaged zip
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(trained["package"].read_bytes()[: 200_000])
    with pytest.raises(UserError):
        load_checkpoint(damaged)


# -- the YAML we write --------------------------------------------------------------------------

def test_yaml_reads_back_the_same_in_yaml_1_1_and_1_2():
    data = {
        "name": 'quotes " and \\ backslash', "yes": "no", "on": True, "off": None, "n": "y",
        "floats": [1e-06, 2.5e+20, 0.1, 3.0, -0.0], "ints": [0, -3, 255], "empty": [], "none": {},
        "unicode": "Zellkern – noyau 🔬", "multi": "line one\nline two\ttab",
        "nested": [{"a": 1, "b": [{"c": "d"}]}, [1, 2], {"deeper": {"x": "1e-06"}}],
        "weird key: with colon": "value", "123": "numeric key",
    }
    text = bio.to_yaml(data)
    yaml = pytest.importorskip("yaml")  # PyYAML reads YAML 1.1, the strictest about floats
    assert yaml.safe_load(text) == data
    from ruyaml import YAML  # bioimageio.spec's reader, YAML 1.2

    assert YAML(typ="safe").load(text) == data


def test_names_licences_and_test_crops():
    assert bio.default_name("my cells/2024: ünïcode!", "fcn8s") == "Maskloop FCN-8s my cells 2024 n code"
    assert bio.check_name("  Cells   (v2) ") == "Cells (v2)"
    with pytest.raises(UserError):
        bio.check_name("Zellkern ü")
    assert bio.check_license("CC0-1.0") == "CC0-1.0"
    assert bio.tile_sizes(16) == (64, 1) and bio.tile_sizes(128) == (128, 1)
    grey = np.arange(300 * 50, dtype=np.uint16).reshape(300, 50)
    crop = bio._test_crop(grey, 1, 64, 16)
    assert crop.shape == (256, 64, 1)  # mirrored out to the smallest size
    assert np.array_equal(crop[:, :50, 0], grey[22:278])
    rgb = bio._test_crop(np.zeros((100, 1000, 4), np.uint8), 3, 64, 16)
    assert rgb.shape == (96, 256, 3)


def test_a_grey_16_bit_fcn_package_passes_bioimageio_core(tmp_path, offline):
    """Another architecture, one channel, 16-bit raw values far from 0..1."""
    from bioimageio.core import test_model

    from engine.checkpoint import save_checkpoint
    from engine.models import build_model

    torch.manual_seed(0)
    model = build_model("fcn8s", 2, 1, fc_channels=16)
    with torch.no_grad():  # FCN score layers start at zero; make the whole graph matter
        for name, p in model.named_parameters():
            if name.startswith("score"):
                p.normal_(0, 0.1)
    meta = {"model": {"name": "fcn8s", "options": model.maskloop_options, "num_classes": 2,
                      "in_channels": 1},
            "classes": [{"index": 0, "name": "background", "color": [0, 0, 0]},
                        {"index": 1, "name": "nucleus", "color": [255, 0, 0]}],
            "normalization": {"mean": [12000.0], "std": [3000.0]}, "metrics": {}}
    checkpoint = save_checkpoint(tmp_path / "fcn.pt", model, meta)
    rng = np.random.default_rng(0)
    image = rng.normal(12000, 3000, (150, 210)).clip(0, 65535).astype(np.uint16)
    source = bio.PackageSource(checkpoint=checkpoint, run="r1", image=image, image_name="n.tif",
                               project_name="nuclei 16-bit")
    out = bio.export_bioimageio(source, tmp_path / "fcn.zip")
    files = _members(out)
    x = np.load(io.BytesIO(files["test_input.npy"]))
    assert x.shape == (1, 1, 128, 192) and x.max() > 255  # raw values, a multiple of 32
    rdf = _yaml(files["rdf.yaml"].decode())
    assert rdf["name"] == "Maskloop FCN-8s nuclei 16-bit"
    assert rdf["inputs"][0]["axes"][1]["channel_names"] == ["grey"]
    assert "unet" not in rdf["tags"] and "10.1109/CVPR.2015.7298965" == rdf["cite"][0]["doi"]
    assert "no validation images" in files["README.md"].decode()
    summary = test_model(out, devices=["cpu"])
    assert summary.status == "passed", [d.name for d in summary.details if d.status == "failed"]
