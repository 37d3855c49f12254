"""Elementwise loss cases shared by test_losses.py and test_kernels_losses.py: each loss kind with
random data of a dtype, and its float64 reference from _reference.elementwise_loss."""
import numpy as np

import _reference as ref64
import ranvier as rv

KINDS = ["bce_logits", "bce_logits_pw", "bce", "huber", "huber_d03", "l1"]


def column_pos_weight(c):
    return np.linspace(0.5, 3.0, c)  # one per column, never 1 everywhere


def make_case(kind, rng, shape, dtype):
    """(loss, pred, target) with random, nonzero data of ``dtype``."""
    if kind.startswith("bce_logits"):
        pred = rng.normal(scale=3.0, size=shape)
        target = rng.random(shape)                       # soft targets in (0, 1) ...
        hard = rng.random(shape) < 0.3
        target[hard] = rng.integers(0, 2, shape)[hard]   # ... and some 0/1 labels
        loss = rv.BCEWithLogitsLoss(pos_weight=column_pos_weight(shape[1])
                                    if kind == "bce_logits_pw" else None)
    elif kind == "bce":
        pred = rng.uniform(0.02, 0.98, shape)
        target = rng.random(shape)
        loss = rv.BCELoss()
    elif kind.startswith("huber"):
        pred = rng.normal(scale=1.5, size=shape)
        target = rng.normal(size=shape)
        loss = rv.HuberLoss(delta=0.3 if kind == "huber_d03" else 1.0)
    else:
        pred = rng.normal(size=shape)
        target = rng.normal(size=shape)
        loss = rv.L1Loss()
    return loss, pred.astype(dtype), target.astype(dtype)


def reference(loss, pred, target):
    """_reference.elementwise_loss for the elementwise loss object ``loss``: per-element value,
    gradient and the magnitudes of their terms."""
    if isinstance(loss, rv.BCEWithLogitsLoss):
        return ref64.elementwise_loss("bce_with_logits", pred, target, pos_weight=loss.pos_weight)
    if isinstance(loss, rv.BCELoss):
        return ref64.elementwise_loss("bce", pred, target)
    if isinstance(loss, rv.HuberLoss):
        return ref64.elementwise_loss("huber", pred, target, delta=loss.delta)
    return ref64.elementwise_loss("l1", pred, target)
