"""Run by tests/test_distributed.py under ``mpiexec -n N``: a distributed fit whose results every
rank writes to OUT/rank{r}.npz (weights, metrics, a digest of the parameters after every step).

    python train.py OUT --data mnist|synthetic --dtype float32 --epochs 2 --batch-size 128 ...
"""
import argparse
import hashlib
import os

import numpy as np


import ranvier as rv
from ranvier import distributed
from _common import build, load_data


class Digests(rv.Callback):
    """A SHA-1 of every parameter after every step (BatchNorm's running statistics are averaged
    across ranks at epoch ends only: the final state_dict compares them)."""

    def __init__(self):
        self.digests = []

    def on_batch_end(self, batch, logs=None):
        h = hashlib.sha1()
        for p in self.model.parameters():
            h.update(p.data.tobytes())
        self.digests.append(np.frombuffer(h.digest(), np.uint8))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--n", type=int, default=1001)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--validation-split", type=float, default=0.0)
    ap.add_argument("--reduction", default="mean")
    ap.add_argument("--patience", type=int, default=None, help="EarlyStopping on val_loss")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--evaluate", action="store_true",
                    help="also evaluate/predict on this rank's share of the test set")
    args = ap.parse_args()
    distributed.init()
    r = distributed.rank()
    X, y, Xt, yt = load_data(args.data, args.n, args.dtype)
    if args.resume:
        model = rv.load(args.resume)
        initial_epoch = model.epoch
    else:
        model = build(args.model, X.shape[1], args.dtype, seed=1 + r)  # ranks differ until the
        initial_epoch = 0                                              # broadcast
    digests = Digests()
    callbacks = [digests]
    if args.patience is not None:
        callbacks.append(rv.EarlyStopping(patience=args.patience, restore_best_weights=True))
    if args.checkpoint:
        callbacks.append(rv.ModelCheckpoint(args.checkpoint, monitor="loss"))
    history = model.fit(X, y, loss=rv.CrossEntropyLoss(reduction=args.reduction),
                        optimizer=model.optimizer or rv.Adam(model.parameters(), lr=1e-3),
                        epochs=args.epochs, batch_size=args.batch_size, seed=5, verbose=0,
                        validation_split=args.validation_split, callbacks=callbacks,
                        initial_epoch=initial_epoch, distributed=True)
    result = {f"param.{k}": v for k, v in model.state_dict().items()}
    result.update({f"history.{k}": np.array(v) for k, v in history.history.items()})
    result["digests"] = np.array(digests.digests)
    if args.evaluate:
        start, stop = distributed.local_range(Xt.shape[0])
        metrics = model.evaluate(Xt[start:stop], yt[start:stop], distributed=True)
        result.update({f"evaluate.{k}": np.array(v) for k, v in metrics.items()})
        result["predict"] = model.predict(Xt[start:stop], distributed=True)
        result["predict_proba"] = model.predict_proba(Xt[start:stop], distributed=True)
    np.savez(os.path.join(args.out, f"rank{r}.npz"), **result)


if __name__ == "__main__":
    main()
