"""The first seconds of a training: fit the network's per-pixel classifier on the labeled pixels.

A U-Net built with ``features=True`` (the default) holds a fixed filter bank and a small MLP per
pixel on its responses (:mod:`engine.models.filter_bank`, :mod:`engine.models.unet`). That MLP
is what an ilastik user gets from a random forest: with a few strokes it is right about most of
an image after a few hundred updates on the labeled pixels, which costs seconds, where
the whole network at a second a step on a CPU would need minutes. So before the first crop:

1. sample labeled pixels of every training image, per class (as the forest does: at most
   ``PIXELS_PER_CLASS`` per class and image), and compute the filter responses there, image by
   image, in tiles so that memory follows the tile, not the image;
2. on a fresh model, set the bank's standardisation from those responses (a continued model
   keeps the one its layers were trained on);
3. train the pixel MLP alone (class-weighted cross-entropy, Adam) for a bounded number of steps
   and seconds.

The end-to-end training that follows starts from there; the U-Net's zero-initialised head means
the whole network's prediction at that moment is the pixel classifier's.
"""

from __future__ import annotations

import time
import zlib

import numpy as np

from engine.labels import UNLABELED
from engine.normalization import normalize
from engine.training.data import PSEUDO, Example

PIXELS_PER_CLASS = 20_000  # per image, as the ilastik-style forest samples
TILE = 1024
MARGIN = 96  # beyond the widest kernel of the bank (structure tensor at sigma 10, pooled)
# Few: strokes lie inside regions, and a classifier fitted to them longer grows sure of itself
# where they never reach. On membrane with sim_loop's robot (fixed 72 network steps a round),
# 150 updates gave held-out mIoU 0.572/0.652/0.632 in rounds 1-3 against 0.530/0.590/0.621 with
# 600; 50 (what a busy CPU used to leave) gave 0.575/0.634/0.594.
STEPS = 150
BATCH = 4096
LR = 3e-3
FEATURE_SHARE = 4.0  # the filters may take this many times max_seconds
# Responses kept between fits of one live training (floats): 256 M is 1 GiB.
CACHE_LIMIT = 256 * 2**20


def has_pixel_stage(model) -> bool:
    return getattr(model, "stem", None) is not None and hasattr(model, "pixel_head")


def _sample(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flat = label.ravel()
    picked = []
    for k in np.unique(flat).tolist():
        if k == UNLABELED or k >= PSEUDO:  # fitted on the person's labels only
            continue
        idx = np.flatnonzero(flat == k)
        if idx.size > PIXELS_PER_CLASS:
            idx = rng.choice(idx, PIXELS_PER_CLASS, replace=False)
        picked.append(idx)
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def _responses_at(bank, image: np.ndarray, norm, channels: int, flat_idx: np.ndarray, device):
    """Input values and raw bank responses (N x (C + F), float32 on ``device``) at the flat
    pixel indices."""
    import torch

    h, w = image.shape[:2]
    ys, xs = flat_idx // w, flat_idx % w
    out = torch.empty((flat_idx.size, bank.out_channels), device=device)
    for top in range(0, h, TILE):
        for left in range(0, w, TILE):
            inside = (ys >= top) & (ys < top + TILE) & (xs >= left) & (xs < left + TILE)
            if not inside.any():
                continue
            y0, x0 = max(0, top - MARGIN), max(0, left - MARGIN)
            y1, x1 = min(h, top + TILE + MARGIN), min(w, left + TILE + MARGIN)
            x = torch.from_numpy(normalize(image[y0:y1, x0:x1], norm, channels))[None].to(device)
            r = torch.cat([x, bank.responses(x)], dim=1)[0]
            sel = np.flatnonzero(inside)
            yy = torch.from_numpy(ys[sel] - y0).to(device)
            xx = torch.from_numpy(xs[sel] - x0).to(device)
            out[torch.from_numpy(sel).to(device)] = r[:, yy, xx].T
    return out


def _key(ex: Example) -> tuple:
    return (ex.ident, ex.name, ex.image.shape)


def fit_pixel_stage(model, examples: list[Example], norm, channels: int, class_weights,
                    device, seed: int = 0, max_seconds: float = 15.0, stop_event=None,
                    refit: bool = False, cache: dict | None = None) -> dict | None:
    """Fit ``model``'s pixel classifier in place; returns what it did, or None when the model has
    none. The filters take what they take (at most ``FEATURE_SHARE`` x ``max_seconds``; images
    beyond that are left to the network), then the updates get ``max_seconds`` of their own, at
    most ``STEPS`` of them: on a slow or busy CPU the features of 24 images took the whole limit
    and left the classifier a third of its updates. ``refit``: the
    model is already trained and new labels came in (live training): a third of the updates at
    a third of the rate, so the rest of the network, trained on the old classifier, still fits.

    ``cache`` (a dict the caller keeps between fits): each image's sampled responses, reused
    while its labels are unchanged. The bank is fixed, so they stay valid; live training then
    computes the filters only of the image that was just painted, not of every image again."""
    import torch
    import torch.nn.functional as F

    if not has_pixel_stage(model):
        return None
    t0 = time.monotonic()
    bank = model.stem
    feats, targets = [], []
    was_training = model.training
    fresh = 0
    with torch.no_grad():
        for ex in examples:
            digest = zlib.crc32(np.ascontiguousarray(ex.label).data)
            kept = cache.get(_key(ex)) if cache is not None else None
            if kept is not None and kept[0] == digest:
                _, f, t = kept
            else:
                # One generator per image: what an image samples does not depend on the others.
                rng = np.random.default_rng([seed, 11, zlib.crc32(ex.name.encode("utf-8"))])
                idx = _sample(ex.label, rng)
                if idx.size == 0:
                    continue
                f = _responses_at(bank, ex.image, norm, channels, idx, device)
                t = torch.from_numpy(ex.label.ravel()[idx].astype(np.int64)).to(device)
                fresh += 1
                if cache is not None and sum(v[1].numel() for v in cache.values()) < CACHE_LIMIT:
                    cache[_key(ex)] = (digest, f, t)
            feats.append(f)
            targets.append(t)
            if stop_event is not None and stop_event.is_set():
                return None
            if time.monotonic() - t0 > FEATURE_SHARE * max_seconds:
                break
    if not feats:
        return None
    refit = refit or bool(bank.fitted)  # a continued model: take new labels in gently
    X = torch.cat(feats)
    Y = torch.cat(targets)
    c = bank.in_channels  # the input channels lead the bank's output (FilterBank.forward)
    if not bool(bank.fitted):
        bank.set_statistics(X[:, c:].mean(0), X[:, c:].std(0))
    X[:, c:] = (X[:, c:] - bank.feature_mean) / bank.feature_std
    X = torch.nan_to_num(X)
    params = list(model.pixel.parameters()) + list(model.pixel_head.parameters())
    opt = torch.optim.Adam(params, lr=LR / 3 if refit else LR)
    weight = torch.as_tensor(np.asarray(class_weights, np.float32), device=device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    model.train()
    steps, loss_value = 0, float("nan")
    t_fit = time.monotonic()
    # 1 x 1 convolutions on N x F x 1 x 1: the same modules that run in the network.
    for steps in range(1, (STEPS // 3 if refit else STEPS) + 1):
        pick = torch.randint(0, X.shape[0], (min(BATCH, X.shape[0]),), generator=gen).to(device)
        logits = model.pixel_head(model.pixel(X[pick][:, :, None, None]))[:, :, 0, 0]
        loss = F.cross_entropy(logits, Y[pick], weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if steps % 50 == 0:
            loss_value = float(loss.detach())
            if time.monotonic() - t_fit > max_seconds or (stop_event is not None and stop_event.is_set()):
                break
    model.train(was_training)
    return {"pixels": int(X.shape[0]), "steps": steps, "loss": loss_value,
            "images": len(feats), "images_computed": fresh,
            "feature_seconds": round(t_fit - t0, 2), "seconds": round(time.monotonic() - t0, 2)}
