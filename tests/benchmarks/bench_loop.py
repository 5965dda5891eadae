"""The labeling loop, robot against robot: our defaults against an ilastik-style forest.

    python tests/benchmarks/bench_loop.py [--rounds 4] [--epochs 3 | --minutes 2]
                                          [--dataset ../shared/data/membrane] [--which both]
                                          [--train-args "--lr 1e-3 ..."]

The workplace's robot annotator (``../shared/tools/sim_loop.py``: scribbles in every class, then
corrections of the largest wrong regions, RootPainter's protocol) is imported, not copied, from
``../shared/tools``, with its forest features (``ref_ilastik_rf.py``). Both learners get exactly the
same strokes in round 1; from round 2 each one's corrections follow its own mistakes, as in
``sim_loop.py``. Membrane slices 0-23 train, 24-29 are scored (mean IoU, sim_loop's rule).

What differs from ``sim_loop.py --mode maskloop``: everything runs in this one process (torch is
imported once; ``main.py`` start-up is not paid each round), and the default budget is a fixed
number of epochs per round (``--epochs``), so that a figure does not depend on the machine's
load and a change to the defaults can be judged by one run. ``--minutes`` gives sim_loop's
wall-clock budget instead. Ours trains with ``train`` defaults otherwise (continuing from the
last run from round 2). The forest: ``RandomForestClassifier(100)`` on the reference features at
every labeled pixel (at most 20000 per image), sim_loop's learner.

Needs scikit-learn and scipy for the forest (not Maskloop's dependencies); ``--which ours``
runs without them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
TOOLS = (REPO / ".." / "shared" / "tools").resolve()
DATA = (REPO / ".." / "shared" / "data" / "membrane").resolve()


def robot():
    """sim_loop's module (its robot, loader and score), or exit with a message."""
    if not (TOOLS / "sim_loop.py").is_file():
        sys.exit(f"bench_loop: {TOOLS / 'sim_loop.py'} is absent: this benchmark needs the workplace's robot")
    sys.path.insert(0, str(TOOLS))
    import sim_loop

    return sim_loop


class Ours:
    """Maskloop's defaults through its command line, in this process."""

    def __init__(self, args, train_paths: list[str], classes: int, work: str):
        from engine.cli import main as cli
        from engine.project import Project

        self.cli, self.Project, self.args = cli, Project, args
        self.proj = os.path.join(work, "proj")
        self._run(["new", self.proj, "--classes", ",".join(f"c{i}" for i in range(classes))])
        self._run(["import", self.proj, *train_paths])
        with Project.open(self.proj) as p:
            ids = {r.name: r.id for r in p.images()}
        self.ids = [ids[os.path.basename(x)] for x in train_paths]
        self.steps = None

    def _run(self, argv: list[str]) -> None:
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            rc = self.cli(argv)
        if rc != 0:
            sys.exit(f"bench_loop: `main.py {' '.join(argv)}` failed ({rc}): {quiet.getvalue()[-800:]}")

    def train(self, labels) -> None:
        with self.Project.open(self.proj) as p:
            for i, lab in zip(self.ids, labels):
                p.write_label(i, lab)
        budget = ["--epochs", str(self.args.epochs)] if self.args.minutes is None else ["--minutes", str(self.args.minutes)]
        self._run(["train", self.proj, *budget, "--device", "cpu", *self.args.train_args.split()])
        with self.Project.open(self.proj, readonly=True) as p:
            run = p.last_run()
        self.steps = run.metrics.get("steps")

    def predict_train(self):
        self._run(["predict", self.proj, "--all"])
        with self.Project.open(self.proj, readonly=True) as p:
            return [p.read_prediction(i)[0] for i in self.ids]

    def predict_eval(self, paths: list[str]):
        from engine.inference import Predictor

        with self.Project.open(self.proj, readonly=True) as p:
            checkpoint = p.last_run().checkpoint
        predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
        return [predictor.predict(self.load(x)).classmap for x in paths]

    @staticmethod
    def load(path: str) -> np.ndarray:
        from engine.imageio import read_image

        return read_image(path)


def run_learner(sim, learner, gts, eval_paths, eval_gts, args, classes: int,
                replay: list | None = None) -> list[dict]:
    """The loop; with ``replay`` (another learner's rows), that learner's labels of each round
    instead of corrections of this one's mistakes."""
    unl = sim.UNL
    labels = [np.full(g.shape, unl, np.uint8) for g in gts]
    rows, strokes = [], 0
    for rnd in range(1, args.rounds + 1):
        if replay is not None:
            labels = [lab.copy() for lab in replay[rnd - 1]["labels"]]
            strokes = replay[rnd - 1]["strokes"]
        elif rnd == 1:
            for j, (g, lab) in enumerate(zip(gts, labels)):
                strokes += sim.first_strokes(g, lab, classes, 2, 5, np.random.default_rng([args.seed, j]))
        else:
            for g, lab, p in zip(gts, labels, learner.predict_train()):
                strokes += sim.fix_strokes(p, g, lab, classes, 3, 5)
        t0 = time.perf_counter()
        learner.train(labels)
        seconds = time.perf_counter() - t0
        miou, per_class = sim.score(learner.predict_eval(eval_paths), eval_gts, classes)
        rows.append({"round": rnd, "strokes": strokes, "miou": miou, "per_class": per_class,
                     "train_s": seconds, "steps": getattr(learner, "steps", None),
                     "labels": [lab.copy() for lab in labels]})
        print(f"  {type(learner).__name__} round {rnd}: mIoU {miou:.4f} per class {per_class} "
              f"({strokes} strokes, {seconds:.0f} s)", flush=True)
    return rows


def save_rows(path: str, rows: list[dict]) -> None:
    # one array per label: the images need not share a size
    labels = {f"label_{i}_{j}": lab for i, r in enumerate(rows) for j, lab in enumerate(r["labels"])}
    np.savez_compressed(path, miou=[r["miou"] for r in rows], strokes=[r["strokes"] for r in rows],
                        **labels)


def load_rows(path: str) -> list[dict]:
    with np.load(path, allow_pickle=False) as z:
        count = sum(1 for k in z.files if k.startswith("label_0_"))
        rows = [{"round": i + 1, "miou": float(m), "strokes": int(s),
                 "labels": [z[f"label_{i}_{j}"] for j in range(count)]}
                for i, (m, s) in enumerate(zip(z["miou"], z["strokes"]))]
    for r in rows:
        print(f"  Forest round {r['round']}: mIoU {r['miou']:.4f} ({r['strokes']} strokes, cached)")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default=str(DATA))
    ap.add_argument("--train", default="0:24")
    ap.add_argument("--eval", default="24:30")
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--map", default="255:1", help="GT value map src:dst,... (membrane: 255 -> 1)")
    ap.add_argument("--rounds", type=int, default=4)
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=3, help="our training per round (default 3)")
    budget.add_argument("--minutes", type=float, help="our training per round as wall-clock minutes instead")
    ap.add_argument("--train-args", default="", help="extra `train` options for ours, e.g. '--lr 1e-3'")
    ap.add_argument("--which", choices=("both", "ours", "forest"), default="both")
    ap.add_argument("--same-strokes", action="store_true",
                    help="ours gets the forest's labels of every round (not corrections of its own "
                         "mistakes): the two learners compared on identical labels, and a change "
                         "to ours judged without the loop's feedback")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--forest-cache", metavar="FILE.npz",
                    help="the forest's rounds (scores and labels) from FILE if it exists, else run "
                         "and saved there: the forest is deterministic, so A/B runs of ours need it once")
    ap.add_argument("--ours-cache", metavar="FILE.npz",
                    help="write our labels of every round there (the forest cache's format): "
                         "look at what the corrections of our mistakes taught")
    ap.add_argument("--keep", metavar="DIR", help="keep our project in DIR (new folder) to look at afterwards")
    args = ap.parse_args()
    if not (Path(args.dataset) / "images").is_dir():
        sys.exit(f"bench_loop: no images/ in {args.dataset}")
    sim = robot()
    names = sorted(os.listdir(os.path.join(args.dataset, "images")))
    cut = lambda s: slice(*map(int, s.split(":")))  # noqa: E731
    vmap = {int(a): int(b) for a, b in (x.split(":") for x in args.map.split(",") if x)}
    img = lambda n: os.path.join(os.path.abspath(args.dataset), "images", n)  # noqa: E731
    gt = lambda n: sim.load_gt(os.path.join(args.dataset, "masks", n), vmap, None)  # noqa: E731
    train_names, eval_names = names[cut(args.train)], names[cut(args.eval)]
    train_paths, eval_paths = [img(n) for n in train_names], [img(n) for n in eval_names]
    gts, eval_gts = [gt(n) for n in train_names], [gt(n) for n in eval_names]
    # sim_loop's Forest reads its training paths from its arguments object
    args.train_paths = train_paths

    results = {}
    if args.keep:
        os.makedirs(args.keep)
    with (contextlib.nullcontext(args.keep) if args.keep else
          tempfile.TemporaryDirectory(prefix="bench-loop-")) as work:
        if args.same_strokes and args.which == "ours":
            sys.exit("bench_loop: --same-strokes needs the forest's labels: --which both")
        if args.which in ("both", "forest"):
            print("forest (ilastik-style features, 100 trees)", flush=True)
            if args.forest_cache and os.path.isfile(args.forest_cache):
                results["forest"] = load_rows(args.forest_cache)
            else:
                results["forest"] = run_learner(sim, sim.Forest(args), gts, eval_paths, eval_gts,
                                                args, args.classes)
                if args.forest_cache:
                    save_rows(args.forest_cache, results["forest"])
        if args.which in ("both", "ours"):
            budget = f"{args.minutes} min" if args.minutes is not None else f"{args.epochs} epochs"
            print(f"maskloop (train defaults, {budget} a round)", flush=True)
            results["ours"] = run_learner(sim, Ours(args, train_paths, args.classes, work), gts,
                                          eval_paths, eval_gts, args, args.classes,
                                          replay=results["forest"] if args.same_strokes else None)
            if args.ours_cache:
                save_rows(args.ours_cache, results["ours"])

    print()
    print("| round | strokes (ours) | forest mIoU | maskloop mIoU | maskloop - forest | maskloop - its previous round | steps |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    ours, forest = results.get("ours", []), results.get("forest", [])
    for r in range(args.rounds):
        f = forest[r]["miou"] if forest else None
        o = ours[r] if ours else None
        cells = [str(r + 1), str(o["strokes"]) if o else "-", f"{f:.4f}" if f is not None else "-",
                 f"{o['miou']:.4f}" if o else "-",
                 f"{o['miou'] - f:+.4f}" if o and f is not None else "-",
                 f"{o['miou'] - ours[r - 1]['miou']:+.4f}" if o and r else "-",
                 str(o["steps"]) if o else "-"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
