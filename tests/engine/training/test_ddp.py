"""``torchrun --nproc_per_node=2 main.py train``: two CPU processes (gloo) train one model, each
on its own share of the training images."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from training_data import make_project

from engine.checkpoint import load_checkpoint
from engine.project import Project

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_two_processes_train_one_model(tmp_path, slices_dir):
    make_project(tmp_path / "proj", slices_dir, range(4), size=128).close()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASKLOOP_TORCH_THREADS": "1"}
    epochs, batch, crop = 2, 2, 64
    probe = tmp_path / "probe"
    probe.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "tests" / "engine" / "training" / "ddp_probe.py"), str(probe), "train", str(tmp_path / "proj"), "--epochs", str(epochs), "--device", "cpu",
           "--batch-size", str(batch), "--crop", str(crop), "--option", "base=8",
           "--option", "depth=3", "--json"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    assert kinds.count("TrainStarted") == 1 and kinds.count("TrainFinished") == 1  # rank 0 speaks
    started = events[kinds.index("TrainStarted")]
    # Validation holds out squares, not images: all four images train, some also validate.
    assert started["num_train"] == 4 and 1 <= started["num_val"] <= 4
    # Each epoch's crops are split between the two processes: half the steps of one process.
    samples = max(8, math.ceil(4 * 128 * 128 / crop ** 2))
    steps_per_epoch = math.ceil(samples / (batch * 2))
    assert kinds.count("StepDone") == epochs * steps_per_epoch == started["total_steps"]
    assert kinds.count("EpochDone") == epochs

    with Project.open(tmp_path / "proj", readonly=True) as project:
        (run,) = project.runs()  # one run: only process 0 wrote to the project
        assert run.status == "finished"
        ckpt = load_checkpoint(run.checkpoint)
    assert ckpt.train["world_size"] == 2 and ckpt.train["batch_size"] == batch
    assert not any(k.startswith("module.") for k in ckpt.state_dict)
    assert ckpt.metrics["mean_iou"] is not None

    # Each process put only its own share of the training images on its device: the shares
    # are disjoint and together every training image.
    shares = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    ids = [set(share["ids"]) for share in shares]
    assert all(share["held"] == len(share["ids"]) == len(i) > 0 for share, i in zip(shares, ids))
    assert not ids[0] & ids[1]
    assert ids[0] | ids[1] == set(run.config["train_image_ids"])
