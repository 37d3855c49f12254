"""Data-parallel training over MPI (mpi4py): ``model.fit(X, y, distributed=True)``.

Run the same script on every rank (``mpiexec -n 2 python train.py``, ``srun python train.py``);
every rank passes the same full training set to ``fit``. Then, as PyTorch's
DistributedDataParallel and Horovod do:

- parameters (and BatchNorm buffers) are broadcast from rank 0 when ``fit`` starts, so ranks start
  equal; the data's shapes, dtypes and a sample of its values, the model's parameter shapes and
  ``fit``'s arguments are compared across ranks first (a ValueError naming the rank that differs);
- every rank draws the same epoch permutation and takes its contiguous share of every global batch
  (``batch_size`` is the global batch; a batch that does not divide gives the first ranks one row
  more; a rank may get none);
- each rank scales the loss gradient by its share of the batch (rows / global rows, for a mean
  loss; the backward pass is linear in it, so the gradients come scaled) and one ``Allreduce``
  (sum) over the model's flat gradient buffer makes them the gradients of the global batch on
  every rank; the same call carries the batch's loss sum, correct count and
  row count in a few trailing slots of that buffer, so the loss and accuracy (and a NaN on any rank)
  are the global ones everywhere. The optimizer then takes the same step on every rank;
- validation is split across ranks and reduced, so ``History`` is the global one on every rank;
  callbacks run on every rank (so EarlyStopping and schedulers decide the same), except the ones
  that write (``Callback.main_process_only``: ModelCheckpoint), which run on rank 0 only; the
  progress output comes from rank 0 only;
- BatchNorm normalises with each rank's share of the batch (as DDP without SyncBatchNorm) and its
  running statistics are averaged across ranks at the end of every epoch;
- an exception on one rank (bad data, a failing callback) makes it print the error with its rank and
  abort the whole job (``MPI_Abort``) rather than leave the others waiting; errors that every rank
  reaches together (a NaN loss, mismatched data) are raised on every rank as usual.

``import ranvier`` does not import mpi4py; ``init()`` (or the first distributed call) does.
"""
import json
import math
import os
import sys
import time
import traceback
import zlib

import numpy as np

__all__ = ["init", "rank", "world_size", "is_main", "local_range", "DataParallel"]

_comm = None


def init(comm=None):
    """Use ``comm`` (an mpi4py communicator; default ``MPI.COMM_WORLD``) for distributed training;
    returns it. Called by the first distributed ``fit``/``evaluate``/``predict`` when not before."""
    global _comm
    if comm is None:
        try:
            from mpi4py import MPI
        except ImportError:
            raise ImportError("distributed training needs mpi4py and an MPI runtime: "
                              "pip install 'ranvier[mpi]' (mpi4py and MPICH)") from None
        comm = MPI.COMM_WORLD
    elif not all(hasattr(comm, a) for a in ("Allreduce", "Bcast", "Get_rank", "Abort")):
        raise TypeError(f"ranvier.distributed.init: comm must be an mpi4py communicator, got "
                        f"{type(comm).__name__}")
    _comm = comm
    return comm


def _communicator(distributed=True):
    """The communicator for ``distributed`` (True: the initialised or default one)."""
    if distributed is True:
        return _comm if _comm is not None else init()
    return init(distributed) if distributed is not _comm else _comm


def rank():
    """This process's rank (0 without MPI initialised by ranvier)."""
    return 0 if _comm is None else _comm.Get_rank()


def world_size():
    """The number of ranks (1 without MPI initialised by ranvier)."""
    return 1 if _comm is None else _comm.Get_size()


def is_main():
    """True on rank 0: the rank that writes files and prints."""
    return rank() == 0


def local_range(n):
    """(start, stop): the contiguous share of ``n`` rows this rank takes, as fit shares a batch
    (e.g. of a test set for ``model.evaluate(X[start:stop], y[start:stop], distributed=True)``)."""
    return _share(n, world_size(), rank())


def _mpi():
    from mpi4py import MPI

    return MPI


def _allgather_json(comm, obj):
    """Every rank's ``obj`` (JSON-able), in rank order: bytes through the buffer interface, never
    pickle."""
    data = np.frombuffer(json.dumps(obj, sort_keys=True).encode(), np.uint8)
    sizes = np.zeros(comm.Get_size(), np.int64)
    comm.Allgather(np.array([data.size], np.int64), sizes)
    out = np.empty(int(sizes.sum()), np.uint8)
    comm.Allgatherv(data, [out, sizes])
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    return [json.loads(out[a:b].tobytes()) for a, b in zip(offsets[:-1], offsets[1:])]


def _share(n, size, r):
    """(start, stop) of rank r's contiguous share of n rows: the first n % size ranks one more."""
    base, extra = divmod(n, size)
    start = r * base + min(r, extra)
    return start, start + base + (r < extra)


def _describe(arr):
    """Shape, dtype and a checksum of a sample of rows, for the start-of-fit comparison."""
    if arr is None:
        return "absent"
    step = max(1, arr.shape[0] // 64)
    crc = zlib.crc32(np.ascontiguousarray(arr[::step]).tobytes())
    return f"{arr.dtype} of shape {tuple(arr.shape)} (CRC-32 of every {step}th row: {crc:08x})"


def _describe_optimizer(opt):
    """Type, hyper-parameters and step counts: ranks that resumed from different checkpoints (or
    one that did not) differ here."""
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    steps = sorted({st.get(opt._step_key, 0) for st in opt.state.values()})
    return f"{type(opt).__name__} with {groups}, steps taken {steps}"


def _reduce_metrics(comm, metrics, n, summed=()):
    """Allreduce of {name: mean over n rows (a sum for the names in ``summed``)}: the means (sums)
    over every rank's rows."""
    names = list(metrics)  # the same order on every rank
    buf = np.array([metrics[k] * (1 if k in summed else n) for k in names] + [n], np.float64)
    comm.Allreduce(_mpi().IN_PLACE, buf)
    return {k: float(v if k in summed else v / buf[-1]) for k, v in zip(names, buf[:-1])}


class _AbortOnError:
    """Around a distributed call: an exception on one rank would leave the others waiting in a
    collective for ever, so the failing rank prints it with its rank and aborts the job. Errors that
    every rank reaches together (``raise_together``, or after ``_collective`` is set) propagate."""

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.is_main = self.rank == 0
        self._collective = False

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or self.size == 1 or self._collective:
            return False
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: the job ends anyway
            return False
        text = "".join(traceback.format_exception(kind, exc, tb))
        sys.stderr.write(f"ranvier.distributed: rank {self.rank} of {self.size} failed; aborting "
                         f"every rank.\n{text}")
        sys.stderr.flush()
        # mpiexec forwards a rank's output from a pipe and may tear the job down before it reads
        # it: without a pause the reason for the abort is sometimes lost (1 run in ~15, MPICH).
        time.sleep(0.5)
        self.comm.Abort(1)
        os._exit(1)  # MPICH's MPI_Abort may return to the caller once the job is being torn down

    def raise_together(self, exc):
        """Raise ``exc``, which every rank raises at the same point: it propagates, no abort."""
        self._collective = True
        raise exc


def evaluate_shards(model, X, y, batch_size, distributed):
    """``model.evaluate(X, y, distributed=...)``: X and y are this rank's part of the set; the
    metrics are the whole set's, on every rank."""
    comm = _communicator(distributed)
    with _AbortOnError(comm):
        loss_fn = model._resolve_loss(None, y)
        X, y = model._prepare_xy(X, y, loss_fn)
        return evaluate(model, X, y, loss_fn, batch_size, comm, shard=False)


def gathered_outputs(model, X, batch_size, distributed):
    """The model's outputs for this rank's X, every rank's gathered in rank order (predict)."""
    comm = _communicator(distributed)
    with _AbortOnError(comm):
        X = model._check_input(X)
        return gather_rows(model._forward_batches(X, batch_size, model._blocks()), comm)


def evaluate(model, X, y, loss_fn, batch_size, comm, shard):
    """``model._evaluate_checked`` over every rank's rows, reduced: with ``shard`` each rank takes
    its share of X (the same on every rank), otherwise X is this rank's own part of the set."""
    if shard:
        start, stop = _share(X.shape[0], comm.Get_size(), comm.Get_rank())
        X, y = X[start:stop], y[start:stop]
    n = X.shape[0]
    if n:
        local = model._evaluate_checked(X, y, loss_fn, batch_size)
    else:  # fewer rows than ranks: this rank contributes nothing (names as a classifier's)
        local = dict.fromkeys(["loss", "accuracy"] if model._is_classifier(loss_fn) else ["loss"],
                              0.0)
    return _reduce_metrics(comm, local, n, ("loss",) if loss_fn.reduction == "sum" else ())


def gather_rows(out, comm):
    """Every rank's ``out`` (rows), concatenated in rank order, on every rank."""
    counts = np.zeros(comm.Get_size(), np.int64)
    comm.Allgather(np.array([out.shape[0]], np.int64), counts)
    row = int(np.prod(out.shape[1:], dtype=np.int64))
    result = np.empty((int(counts.sum()),) + out.shape[1:], out.dtype)
    comm.Allgatherv(np.ascontiguousarray(out), [result, counts * row])
    return result


class DataParallel(_AbortOnError):
    """What a distributed ``fit`` adds to the single-process loop (see the module's docstring):
    a context manager around the whole of ``fit`` (a failure on one rank aborts the job), the
    start-of-fit checks and broadcast (``start``), each rank's share of a batch (``shard``), the
    gradient all-reduce per step (``reduce_step``) and the end-of-epoch buffer averaging."""

    _TAIL = 3  # loss sum, correct count, rows: carried in the gradient all-reduce

    def __init__(self, model, distributed=True):
        super().__init__(_communicator(distributed))
        self.model = model
        self.buffer = None   # the flat gradients + _TAIL slots, reduced in one call per step
        self._scale = 1.0
        self._in_place = _mpi().IN_PLACE

    # -- start ------------------------------------------------------------------------------------
    def start(self, X, y, validation, rng, fit_args, loss_fn):
        """Compare the ranks' data and arguments; broadcast rank 0's parameters, buffers and
        shuffling generator (so every rank draws the same permutations); lay the gradients into the
        all-reduce buffer. Call after the model's parameters are flat."""
        model = self.model
        mine = {"X": _describe(X), "y": _describe(y),
                "validation X": _describe(validation[0]) if validation else None,
                "validation y": _describe(validation[1]) if validation else None,
                "parameters": [[k, list(p.data.shape), str(p.data.dtype)]
                               for k, p in model.named_parameters()],
                **{k: _describe_optimizer(v) if k == "optimizer" else repr(v)
                   for k, v in fit_args.items()}}
        everyone = _allgather_json(self.comm, mine)
        for r, theirs in enumerate(everyone[1:], 1):
            for key in sorted(mine):
                if theirs[key] != everyone[0][key]:
                    self.raise_together(ValueError(
                        f"ranvier.distributed: rank {r} differs from rank 0 at the start of fit: "
                        f"{key} is {theirs[key]} on rank {r} but {everyone[0][key]} on rank 0; every "
                        "rank must pass the same data, model and arguments to fit (each takes its "
                        "share of every batch)"))
        if loss_fn.reduction == "mean" and getattr(loss_fn, "weight", None) is not None:
            self.raise_together(ValueError(
                f"ranvier.distributed: {type(loss_fn).__name__} with class weights and "
                "reduction='mean' divides by each batch's weight sum, which the ranks do not share "
                "yet; use reduction='sum' (and scale the learning rate) or no weights"))
        self._sum = loss_fn.reduction == "sum"  # each rank's sum adds up to the batch's
        params = model.parameters()
        if params:
            # the parameters are one flat buffer (Sequential._flatten_parameters)
            from .optim import _flat_span

            self.comm.Bcast(_flat_span([p.data for p in params]), root=0)
        for layer in model.layers:
            for _, buf in layer.named_buffers():
                self.comm.Bcast(np.ascontiguousarray(buf) if buf.ndim else buf.reshape(1), root=0)
        rng.bit_generator.state = _allgather_json(self.comm, rng.bit_generator.state)[0]
        self._bind_gradients(params)

    def _bind_gradients(self, params):
        """Move the gradients into one buffer with _TAIL spare slots at the end (each Parameter's
        .grad a view, in the same order, so the optimizer still sees one flat span)."""
        total = sum(p.data.size for p in params)
        dtype = params[0].data.dtype if params else np.dtype(np.float64)
        buf = self.buffer
        if (buf is None or buf.size != total + self._TAIL or buf.dtype != dtype
                or not all(np.shares_memory(buf, p.grad) for p in params[:1])):
            from .model import lay_out

            buf = np.zeros(total + self._TAIL, dtype)
            lay_out(params, "grad", buf)
        self.buffer, self.grads = buf, buf[:total]
        self.tail = buf[total:]
        self._largest = float(np.finfo(buf.dtype).max)

    # -- steps ------------------------------------------------------------------------------------
    def shard(self, idx):
        """This rank's share of the global batch ``idx``; remembers its weight (rows / rows)."""
        n = len(idx)
        start, stop = _share(n, self.size, self.rank)
        self._scale = 1.0 if self._sum else (stop - start) / n
        return idx[start:stop]

    def reduce_step(self, run_backward, batch_loss, hits, m):
        """Backward with the loss gradient scaled by this rank's part of the batch's mean (or zero
        gradients for an empty share), then the one all-reduce of the step: returns the global
        batch's (loss, correct count, rows)."""
        if m:
            run_backward(self._scale)
        else:
            self.grads.fill(0)
        loss_sum = batch_loss if self._sum else batch_loss * m
        if not abs(loss_sum) < self._largest:  # past the buffer's range (float32): inf, no warning
            loss_sum = loss_sum if loss_sum != loss_sum else math.inf
        tail = self.tail
        tail[0], tail[1], tail[2] = loss_sum, hits or 0, m
        self.comm.Allreduce(self._in_place, self.buffer)
        rows = int(tail[2])
        loss = float(tail[0]) if self._sum else float(tail[0]) / rows
        # a NaN on any rank is the global loss's: fit's FloatingPointError is raised on every rank
        self._collective = not math.isfinite(loss)
        return loss, int(tail[1]), rows

    def epoch_end(self):
        """Average BatchNorm running statistics across ranks (each saw its own shares)."""
        self._collective = False
        if self.size == 1:
            return
        MPI = _mpi()
        for layer in self.model.layers:
            for name, buf in layer.named_buffers():
                if buf.dtype.kind == "f":
                    self.comm.Allreduce(MPI.IN_PLACE, buf)
                    buf /= self.size

    def evaluate(self, X, y, loss_fn, batch_size=1024):
        """fit's validation: each rank evaluates its share of the (same) set; reduced."""
        return evaluate(self.model, X, y, loss_fn, batch_size, self.comm, shard=True)
