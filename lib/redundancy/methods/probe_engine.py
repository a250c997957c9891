"""The training engine behind every probe: many linear probes at once, each exactly as if alone.

:func:`train_probes` trains a *bank* of probes on column subsets of one matrix. The work
is split into small units, each with one job:

* :class:`Bank`: the probes' weights laid out in column blocks shared by the same probes,
  the forward products that serve all of them, the backward products, and unpacking each
  probe's weights at the end;
* :class:`Batches`: the mini-batches of an epoch (seeded order, rows read from memory or a
  memory-mapped file, pages released as it goes);
* two solvers, which own the loss's gradient, the penalty and the Adam update:
  :class:`CompiledSolver` (the CPU default: compiled passes of :mod:`redundancy.methods.probe_kernels`)
  and :class:`TorchSolver` (torch's operations, on a GPU or with ``REDUNDANCY_ENGINE=torch``),
  which agree to float precision (tests/test_probe.py).

The estimators (:class:`redundancy.methods.probe.LinearProbe` and its regressor) call
:func:`train_probes` with one probe; :func:`redundancy.methods.probe.fit_probes` with many.
"""

from __future__ import annotations

from collections.abc import Iterator

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import torch

from . import probe_kernels as kernels
from ..utils import release_mapped

__all__ = ["train_probes", "TRAIN_DTYPES"]

#: dtypes a probe can train in
TRAIN_DTYPES = {"float32": (torch.float32, np.float32), "float64": (torch.float64, np.float64)}

#: columns below which neighbouring blocks of a bank are merged (masked) into one matmul
MIN_BLOCK_WIDTH = 64

#: multiply-adds per mini-batch below which a bank trains on one thread: a second thread's
#: start and join cost more than it saves on products this small (and much more when
#: another process holds the other core)
SMALL_STEP_MACS = 2_000_000

#: classification on the CPU computes its loss and gradient in one compiled pass
#: (:func:`redundancy.methods.probe_kernels.softmax_xent`); False uses torch's operations, as the GPU does
FUSED_LOSS = True

#: bytes of mini-batches read from a memory-mapped X between releases of its pages
RELEASE_BYTES = 256 * 2**20

#: weights from which the compiled update of a step is split between two threads
SPLIT_UPDATE_WEIGHTS = 1_000_000

#: Adam's settings (torch's defaults; the paper sets only the learning rate)
BETAS, EPS = (0.9, 0.999), 1e-8


def train_probes(X, target, n_outputs: int, feature_sets, *, regression: bool = False, epochs: int = 10,
                 learning_rate: float = 1e-3, batch_size: int = 128, l1: float = 1e-5, l2: float = 1e-5,
                 l2_squared: bool = False, shuffle: bool = True, random_state=0, device="cpu",
                 dtype: str = "float32", verbose: bool = False, min_block_width: int | None = None,
                 name: str = "train_probes") -> list[tuple[np.ndarray, np.ndarray, list[float]]]:
    """Train several linear probes on column subsets of ``X`` at once, each as if alone.

    Every probe ``p`` minimises the reference loss on ``X[:, feature_sets[p]]`` (columns in
    that order) with its own Adam state, its own seeded initialisation (the one a single
    probe of that width gets from ``random_state``) and the same mini-batches (the
    shuffling stream does not depend on the width). The probes only share the work: each
    mini-batch is read once, and the columns are cut into blocks used by the same probes,
    so that one matrix product per block serves all of them (a probe's logits are the sum
    of its blocks' products). The arithmetic per probe is the single probe's, up to the
    order of floating-point sums. This is how every layer (and every prefix of layers), or
    every candidate size of the minimal-set search, is trained in one pass.

    Parameters
    ----------
    X : numpy.ndarray or memmap, shape (n_samples, n_columns)
    target : numpy.ndarray
        Class ids 0..n_outputs-1 (int64), or real targets (``regression=True``).
    n_outputs : int
    feature_sets : list of array of int
        Column indices of each probe, in the probe's feature order.
    min_block_width : int
        Narrower runs of columns are merged with a neighbour into one product, the probes
        that lack some of its columns masked (their weights there stay exactly 0).

    Returns
    -------
    list of (weight, bias, loss_curve)
        NumPy ``weight`` (n_outputs, len(features)), ``bias`` (n_outputs,) and the mean
        mini-batch loss of every epoch, per probe.
    """
    n_threads = _threads_for(batch_size, feature_sets, n_outputs, device)
    before = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    try:
        torch_dtype, np_dtype = TRAIN_DTYPES[dtype]
        dev = torch.device(device)
        sets = [np.asarray(f, dtype=np.int64).ravel() for f in feature_sets]
        init_seed, shuffle_seed = _seeds(random_state)
        width = max(1, int(MIN_BLOCK_WIDTH if min_block_width is None else min_block_width))
        bank = Bank(sets, X.shape[1], int(n_outputs), init_seed, width, torch_dtype, dev)
        batches = Batches(X, target, batch_size, shuffle, shuffle_seed, np_dtype, torch_dtype, dev)
        penalty = dict(l1=l1, l2=l2, l2_squared=bool(l2_squared))
        if dev.type == "cpu" and kernels.available():
            solver = CompiledSolver(bank, float(learning_rate), regression, np_dtype, batches.n_batches, **penalty)
        else:
            solver = TorchSolver(bank, float(learning_rate), regression, **penalty)
        curves = torch.zeros(int(epochs), bank.P, dtype=torch.float64)
        try:
            for epoch in range(int(epochs)):
                solver.start_epoch()
                for xb, tb in batches.epoch():
                    solver.step(xb, tb)
                curves[epoch] = solver.epoch_loss(batches.n_batches)
                if epoch == 0:
                    _check_finite(curves[0], X, name)
                if verbose:
                    print(f"[{name}] epoch {epoch + 1}/{epochs}: mean loss " + ", ".join(
                        f"{v:.6f}" for v in curves[epoch, :8].tolist()) + (" ..." if bank.P > 8 else ""), flush=True)
        finally:
            solver.close()
            batches.close()
        return [(w, b, curves[:, p].tolist()) for p, (w, b) in enumerate(bank.unpack())]
    finally:
        torch.set_num_threads(before)


def _threads_for(batch_size, feature_sets, n_outputs, device):
    """1 for small problems on the CPU, else None (torch's setting)."""
    if torch.device(device).type != "cpu":
        return None
    macs = int(batch_size) * int(n_outputs) * sum(int(np.size(f)) for f in feature_sets)
    return 1 if macs < SMALL_STEP_MACS else None


def _seeds(random_state) -> tuple[int, int]:
    """(initialisation seed, shuffling seed) of a ``random_state``.

    The two streams are separate so that the order of the mini-batches does not depend on
    the number of features: probes of different widths trained with the same seed see the
    same batches, which is what lets :func:`redundancy.methods.probe.fit_probes` train them side by side.
    """
    rs = random_state
    if rs is None:
        init = int(torch.Generator().seed()) & (2**63 - 1)  # fresh, non-reproducible (scikit-learn's None)
    elif isinstance(rs, Integral):
        init = int(rs)
    elif isinstance(rs, np.random.Generator):
        init = int(rs.integers(2**63 - 1))
    else:  # a NumPy RandomState
        init = int(rs.randint(2**31 - 1))
    shuffle = int(np.random.SeedSequence([init & (2**63 - 1), 1]).generate_state(2, np.uint32).view(np.uint64)[0]
                  & np.uint64(2**63 - 1))
    return init, shuffle


def _init_weights(n_outputs: int, d: int, seed: int, torch_dtype):
    """nn.Linear's default initialisation, U(-1/sqrt(d), 1/sqrt(d)), from a seeded CPU generator."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    bound = 1.0 / np.sqrt(d)
    weight = (torch.rand(n_outputs, d, generator=g, dtype=torch_dtype) * 2 - 1) * bound
    bias = (torch.rand(n_outputs, generator=g, dtype=torch_dtype) * 2 - 1) * bound
    return weight, bias


def _check_finite(first_epoch_losses, X, name):
    """A NaN or infinity in X reaches every loss (its weight is never 0 at the start): looked
    for once, after the first epoch, instead of in every batch."""
    if bool(torch.isfinite(first_epoch_losses).all()):
        return
    for s in range(0, X.shape[0], 4096):
        bad = np.flatnonzero(~np.isfinite(np.asarray(X[s:s + 4096])).all(1))
        if bad.size:
            raise ValueError(f"{name}: X contains NaN or infinity (row {s + int(bad[0])})")


# ------------------------------------------------------------------------------------------
# the bank: weights in column blocks, and the products that serve every probe at once

@dataclass
class _Block:
    start: int            # columns start:stop of the gathered matrix
    stop: int
    probes: torch.Tensor  # (S,) probe indices using (part of) this block
    weight: torch.Tensor  # (S * C, stop - start)
    mask: torch.Tensor | None  # (S * C, stop - start), 1 where the probe has the column; None: all


def _blocks(columns: list[np.ndarray], n_cols: int, min_width: int) -> list[tuple[int, int, list[int]]]:
    """Runs of gathered columns used by the same probes, merged until ``min_width`` wide."""
    use = np.zeros((n_cols, len(columns)), dtype=bool)
    for p, c in enumerate(columns):
        use[c, p] = True
    runs, start = [], 0
    for j in range(1, n_cols + 1):
        if j == n_cols or not np.array_equal(use[j], use[start]):
            runs.append([start, j])
            start = j
    merged = []
    for s, e in runs:
        if merged and (merged[-1][1] - merged[-1][0] < min_width or e - s < min_width):
            merged[-1][1] = e
        else:
            merged.append([s, e])
    out = [(s, e, np.flatnonzero(use[s:e].any(0)).tolist()) for s, e in merged]
    return [b for b in out if b[2]]  # columns no probe uses are never multiplied


class Bank:
    """P probes of C outputs over column subsets of one matrix, as column blocks.

    Outputs are kept transposed, (P * C, m): a probe's outputs are rows, and the forward
    product W X_b^T was 1.7x faster here than X_b W^T for a probe of 42 outputs (the
    backward G^T X_b 1.2x faster from a contiguous G^T). The blocks that only some probes use
    write their products one above the other into one buffer, routed to those probes'
    output rows by one ``index_add_``; their gradients' rows are gathered by one
    ``index_select`` (not one routing operation per block and direction).
    """

    def __init__(self, sets, n_cols, C, init_seed, min_width, torch_dtype, dev):
        self.sets, self.n_cols, self.P, self.C = sets, n_cols, len(sets), C
        self.dtype, self.dev = torch_dtype, dev
        P = self.P
        # every probe's seeded initial weights at its columns' positions
        full = [torch.zeros(C, n_cols, dtype=torch_dtype) for _ in range(P)]
        bias = torch.empty(P, C, dtype=torch_dtype)
        for p, cols in enumerate(sets):
            w, b = _init_weights(C, cols.size, init_seed, torch_dtype)
            full[p][:, torch.from_numpy(cols)] = w
            bias[p] = b
        self.blocks = []
        for s, e, probes in _blocks(sets, n_cols, min_width):
            wt = torch.cat([full[p][:, s:e] for p in probes], 0)
            have = np.zeros((len(probes), e - s), dtype=bool)
            for i, p in enumerate(probes):
                c = sets[p]
                have[i, c[(c >= s) & (c < e)] - s] = True
            mask = None if have.all() else torch.from_numpy(np.repeat(have, C, axis=0)).to(torch_dtype).to(dev)
            self.blocks.append(_Block(s, e, torch.tensor(probes, dtype=torch.long, device=dev),
                                      wt.to(dev).contiguous(), mask))
        self.bias = bias.to(dev).reshape(P * C)  # probe-major, as the rows of the block weights
        self.everyone = [len(b.probes) == P for b in self.blocks]
        # the partial blocks' rows in the (P * C, m) outputs, end to end in one buffer
        self.part = [i for i, alle in enumerate(self.everyone) if not alle]
        self.part_span, at, rows = {}, 0, []
        for i in self.part:
            r = (self.blocks[i].probes.unsqueeze(1) * C + torch.arange(C, device=dev)).reshape(-1)
            self.part_span[i] = (at, at + r.numel())
            at += r.numel()
            rows.append(r)
        self.n_part_rows = at
        self.part_rows = torch.cat(rows) if rows else None
        self._per_m = {}

    @property
    def params(self) -> list:
        """The tensors trained: every block's weights, then the bias."""
        return [b.weight for b in self.blocks] + [self.bias]

    def buffers(self, m) -> tuple:
        """Outputs, partial products and the loss's -1s of a mini-batch of m rows (at most two
        sizes: the batch size and the last batch), allocated once."""
        if m not in self._per_m:
            PC = self.P * self.C
            self._per_m[m] = (torch.empty(PC, m, dtype=self.dtype, device=self.dev),
                              torch.empty(self.n_part_rows, m, dtype=self.dtype, device=self.dev)
                              if self.part else None,
                              torch.full((self.P, 1, m), -1.0, dtype=self.dtype, device=self.dev))
        return self._per_m[m]

    def forward(self, xb, with_bias: bool = True) -> torch.Tensor:
        """Every probe's outputs, transposed (P * C, m), block by block (the bias added or not)."""
        m = xb.shape[0]
        outT, part_buf, _ = self.buffers(m)
        first = True
        for i, (blk, alle) in enumerate(zip(self.blocks, self.everyone)):
            xs = xb[:, blk.start:blk.stop]
            if not alle:
                a, b = self.part_span[i]
                torch.mm(blk.weight, xs.t(), out=part_buf[a:b])
            elif first:
                torch.mm(blk.weight, xs.t(), out=outT)
                first = False
            else:
                outT.addmm_(blk.weight, xs.t())
        if with_bias:
            if first:
                outT.copy_(self.bias.unsqueeze(1).expand(self.P * self.C, m))
            else:
                outT.add_(self.bias.unsqueeze(1))
        elif first:
            outT.zero_()
        if self.part:
            outT.index_add_(0, self.part_rows, part_buf)
        return outT

    def weight_grads(self, GT, xb, grads) -> None:
        """Every block's weight gradient (all its probes' in one product) into ``grads``."""
        GpT = GT.index_select(0, self.part_rows) if self.part else None
        for i, (blk, alle, gw) in enumerate(zip(self.blocks, self.everyone, grads)):
            GTb = GT if alle else GpT[self.part_span[i][0]:self.part_span[i][1]]
            torch.mm(GTb, xb[:, blk.start:blk.stop], out=gw)

    def unpack(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each probe's (weight, bias) as NumPy arrays, its weights in its own feature order."""
        C = self.C
        for p, cols in enumerate(self.sets):
            w = torch.zeros(C, self.n_cols, dtype=self.dtype)
            for blk in self.blocks:
                hit = (blk.probes == p).nonzero()
                if hit.numel():
                    i = int(hit[0, 0])
                    w[:, blk.start:blk.stop] = blk.weight[i * C:(i + 1) * C].cpu()
            yield (w[:, torch.from_numpy(cols)].numpy().copy(), self.bias[p * C:(p + 1) * C].cpu().numpy().copy())


# ------------------------------------------------------------------------------------------
# the mini-batches

class Batches:
    """The mini-batches of every epoch: ``(rows of X, their targets)`` on the device.

    Rows come in a fresh seeded order each epoch (sorted within a batch: a memmap is read
    front to back, and a batch's loss is a mean over its rows), or in stored order.
    In-memory arrays and memory-mapped activation files whose rows are contiguous are read
    through torch without a copy; other inputs batch by batch through NumPy. A
    memory-mapped X gives its pages back every RELEASE_BYTES of batches (the kernel keeps
    them in its page cache, so the next epoch maps them again at no read cost); else the
    resident memory grows to the whole file every epoch (6 GB at 150,000 tokens x 9,984
    float32 neurons).
    """

    def __init__(self, X, target, batch_size, shuffle, seed, np_dtype, torch_dtype, dev):
        n = X.shape[0]
        if type(X) is np.ndarray and not (X.dtype == np_dtype and X.flags.c_contiguous) and X.dtype.itemsize >= 4:
            # an in-memory array in another layout (X[:, idx] is Fortran-ordered) or wider type:
            # one C-ordered copy, not a strided gather per mini-batch (3x slower here); memmaps
            # are read in place, narrower types (float16) converted batch by batch
            X = np.ascontiguousarray(X, dtype=np_dtype)
        shared = (type(X) in (np.ndarray, np.memmap) and X.dtype == np_dtype and X.ndim == 2
                  and X.strides[1] == X.itemsize and X.strides[0] >= X.shape[1] * X.itemsize)
        with warnings.catch_warnings():  # a read-only array (a mapped activation file) is only ever read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            self.Xt = torch.from_numpy(X) if shared else None
        self.X, self.np_dtype, self.dev, self.shuffle = X, np_dtype, dev, shuffle
        self.targets = torch.from_numpy(np.ascontiguousarray(target)).to(dev)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.bs = bs = int(batch_size)
        self.bounds = [(s, min(s + bs, n)) for s in range(0, n, bs)]
        self.n_batches = len(self.bounds)
        # one reused buffer for gathered rows: a fresh multi-megabyte tensor per mini-batch is a
        # fresh mapping from the allocator, paid for in page faults
        self.xbuf = torch.empty(min(bs, n), X.shape[1], dtype=torch_dtype) if self.Xt is not None and shuffle else None
        self.release_every = max(1, RELEASE_BYTES // max(1, bs * X.strides[0])) if release_mapped(X) else 0

    def _order(self):
        n, bs = self.X.shape[0], self.bs
        order = torch.randperm(n, generator=self.generator).numpy()
        full = (n // bs) * bs
        return np.concatenate([np.sort(order[:full].reshape(-1, bs), axis=1).ravel(), np.sort(order[full:])])

    def _rows(self, order, s, e):
        X, Xt, np_dtype, dev = self.X, self.Xt, self.np_dtype, self.dev
        if order is None:
            return Xt[s:e].to(dev) if Xt is not None else torch.from_numpy(
                np.array(X[s:e], dtype=np_dtype, order="C")).to(dev)
        if Xt is not None:
            idx = torch.from_numpy(order[s:e])
            return (torch.index_select(Xt, 0, idx, out=self.xbuf[:e - s]) if dev.type == "cpu"
                    else Xt.index_select(0, idx).to(dev))
        return torch.from_numpy(np.array(X[order[s:e]], dtype=np_dtype, order="C")).to(dev)

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order() if self.shuffle else None
        t_epoch = self.targets if order is None else self.targets[torch.from_numpy(order).to(self.dev)]
        for ib, (s, e) in enumerate(self.bounds):
            if self.release_every and ib % self.release_every == self.release_every - 1:
                release_mapped(self.X)
            yield self._rows(order, s, e), t_epoch[s:e]

    def close(self) -> None:
        if self.release_every:
            release_mapped(self.X)


# ------------------------------------------------------------------------------------------
# the loss's gradient, shared by both solvers

def data_loss_grad(bank: Bank, outT, tb, regression: bool, total):
    """The mean loss of every probe over a batch, added to ``total`` (P,), and its gradient
    with respect to the outputs, transposed (P * C, m), computed in place of ``outT``."""
    P, C, m = bank.P, bank.C, outT.shape[1]
    out3 = outT.view(P, C, m)
    if regression:
        diff = out3[:, 0, :] - tb.unsqueeze(0)  # (P, m)
        total += diff.square().mean(1)
        return diff.mul_(2.0 / m)  # (P * C, m), C = 1
    logp = torch.log_softmax(out3, 1)
    pick = tb.view(1, 1, m).expand(P, 1, m)
    total -= logp.gather(1, pick).mean(2).view(P)
    G3 = logp.exp_()
    G3.scatter_add_(1, pick, bank.buffers(m)[2])
    return G3.view(P * C, m).mul_(1.0 / m)


# ------------------------------------------------------------------------------------------
# the solvers: penalty and Adam

class TorchSolver:
    """torch's operations: the penalty ``l1 * sum|W| + l2 * ||W||_F`` (or its square) per
    probe over its blocks, its gradient, and Adam (``torch.optim.Adam``, fused where torch
    has a fused kernel for the device, else its multi-tensor path)."""

    def __init__(self, bank: Bank, lr, regression, *, l1, l2, l2_squared):
        self.bank, self.regression, self.l1, self.l2, self.l2_squared = bank, regression, l1, l2, l2_squared
        params = bank.params
        self.grads = [torch.empty_like(t) for t in params]
        for p, g in zip(params, self.grads):
            p.grad = g  # the products write the gradients in place; Adam reads them here
        try:
            self.adam = torch.optim.Adam(params, lr=lr, betas=BETAS, eps=EPS, weight_decay=0.0, fused=True)
        except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
            self.adam = torch.optim.Adam(params, lr=lr, betas=BETAS, eps=EPS, weight_decay=0.0, foreach=True)
        self.signs = [torch.empty_like(b.weight) for b in bank.blocks] if l1 else []
        self.norm2 = torch.empty(bank.P, dtype=bank.dtype, device=bank.dev)
        self.abs1 = torch.empty(bank.P, dtype=bank.dtype, device=bank.dev)

    def start_epoch(self) -> None:
        self.total = torch.zeros(self.bank.P, dtype=self.bank.dtype, device=self.bank.dev)

    def epoch_loss(self, n_batches) -> torch.Tensor:
        """Every probe's mean mini-batch loss over the epoch (P,), float64."""
        return self.total.double().cpu() / n_batches

    def _penalty(self):
        """Adds every probe's penalty to the epoch's loss; returns the L2 term's gradient scale."""
        l1, l2 = self.l1, self.l2
        self.norm2.zero_()
        self.abs1.zero_()
        for blk, alle in zip(self.bank.blocks, self.bank.everyone):
            w = blk.weight.view(len(blk.probes), -1)
            # per-probe reductions, no temporaries: sum W^2, sum |W| (a batched dot product,
            # torch.bmm of (1 x K)(K x 1), was 30x slower here for 16 probes of 500 neurons)
            sq = torch.linalg.vector_norm(w, 2, dim=1).square_()
            ab = torch.linalg.vector_norm(w, 1, dim=1) if l1 else None
            if alle:
                self.norm2.add_(sq)
                if l1:
                    self.abs1.add_(ab)
            else:
                self.norm2.index_add_(0, blk.probes, sq)
                if l1:
                    self.abs1.index_add_(0, blk.probes, ab)
        norm = self.norm2.sqrt()
        self.total += l1 * self.abs1 + l2 * (self.norm2 if self.l2_squared else norm)
        if self.l2_squared:
            return torch.full_like(norm, 2.0 * l2)
        return torch.where(norm > 0, l2 / norm, 0.0)  # d||W||/dW = W / ||W||, and 0 at W = 0

    def step(self, xb, tb) -> None:
        bank = self.bank
        GT = data_loss_grad(bank, bank.forward(xb), tb, self.regression, self.total)
        scale = self._penalty()
        bank.weight_grads(GT, xb, self.grads)
        for i, (blk, alle, gw) in enumerate(zip(bank.blocks, bank.everyone, self.grads)):
            S = len(blk.probes)
            if self.l1:
                gw.add_(torch.sign(blk.weight, out=self.signs[i]), alpha=self.l1)
            if self.l2:
                gw.view(S, -1).addcmul_(blk.weight.view(S, -1), (scale if alle else scale[blk.probes]).unsqueeze(1))
            if blk.mask is not None:
                gw.mul_(blk.mask)
        torch.sum(GT, 1, out=self.grads[-1])
        self.adam.step()

    def close(self) -> None:
        pass


class CompiledSolver:
    """The CPU default: one compiled pass per block for the penalty's gradient, Adam and the
    next step's norms (:func:`redundancy.methods.probe_kernels.run`), and for classification the loss and
    its gradient in one more (:func:`redundancy.methods.probe_kernels.softmax_xent`); with two threads and
    enough weights each block's rows are halved between this thread and a helper (the
    kernels release the GIL)."""

    def __init__(self, bank: Bank, lr, regression, np_dtype, n_batches, *, l1, l2, l2_squared):
        self.bank, self.lr, self.np_dtype, self.n_batches = bank, lr, np_dtype, n_batches
        self.l1, self.l2, self.l2_squared = l1, l2, l2_squared
        params = bank.params
        self.grads = [torch.empty_like(t) for t in params]
        moments = ([torch.zeros_like(t) for t in params], [torch.zeros_like(t) for t in params])
        W, G, M, V = [[t.numpy() for t in ts] for ts in (params, self.grads, *moments)]
        P, C = bank.P, bank.C
        # every block row's probe, and its sum W^2 and sum |W| (written by the kernel), all
        # blocks' rows end to end so that one bincount gives every probe's norms
        probe_of_row = [np.repeat(b.probes.numpy(), C) for b in bank.blocks]
        self.row_probe = np.concatenate(probe_of_row)
        self.sq_all, self.ab_all = np.empty(self.row_probe.size), np.empty(self.row_probe.size)
        cut = np.cumsum([0] + [r.size for r in probe_of_row])
        sq_rows = [self.sq_all[a:b] for a, b in zip(cut[:-1], cut[1:])]
        ab_rows = [self.ab_all[a:b] for a, b in zip(cut[:-1], cut[1:])]
        for w, sq, ab in zip(W, sq_rows, ab_rows):
            w64 = w.astype(np.float64)
            sq[:] = np.einsum("rk,rk->r", w64, w64)
            ab[:] = np.abs(w64).sum(1)
        self.penalty = np.zeros(P)  # the penalty's share of every probe's loss, summed over an epoch
        self.t_step = 0
        n_weights = sum(w.size for w in W[:-1])
        halves = 2 if torch.get_num_threads() >= 2 and n_weights >= SPLIT_UPDATE_WEIGHTS else 1
        self.parts = [[] for _ in range(halves)]
        for i, blk in enumerate(bank.blocks):
            mask = None if blk.mask is None else blk.mask.numpy()
            cuts = np.linspace(0, W[i].shape[0], halves + 1).round().astype(int)
            for h, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
                if b > a:
                    self.parts[h].append(kernels.prepare(
                        W[i][a:b], G[i][a:b], M[i][a:b], V[i][a:b], probe_of_row=probe_of_row[i][a:b],
                        mask=None if mask is None else mask[a:b], sq_rows=sq_rows[i][a:b], ab_rows=ab_rows[i][a:b]))
        self.helper = ThreadPoolExecutor(1, thread_name_prefix="probe-update") if halves == 2 else None
        self.bias_task = kernels.prepare(*(v[-1][None] for v in (W, G, M, V)))  # the bias: Adam alone
        self.no_scale = np.zeros(1, dtype=np_dtype)
        self.xent = not regression and FUSED_LOSS
        self.regression = regression
        self.scale = np.zeros(P, dtype=np_dtype)
        self.bias_np, self.gbias_np = W[-1], G[-1]
        self._views = {}

    def start_epoch(self) -> None:
        # Adam's scalars for every step of the epoch, the bias's without the L1 term, computed
        # at its start (computing them inside the step cost 8 us each)
        self.step_scalars = []
        for t in range(self.t_step + 1, self.t_step + 1 + self.n_batches):
            sc = kernels.scalars(t, self.np_dtype, lr=self.lr, l1=self.l1)
            self.step_scalars.append((sc, (self.no_scale[0],) + sc[1:]))
        if self.xent:
            self.total = np.zeros(self.bank.P)
        else:
            self.total = torch.zeros(self.bank.P, dtype=self.bank.dtype, device=self.bank.dev)

    def epoch_loss(self, n_batches) -> torch.Tensor:
        """Every probe's mean mini-batch loss over the epoch (P,), float64, penalty included."""
        data = torch.from_numpy(self.total) if self.xent else self.total.double().cpu()
        out = data / n_batches
        out += torch.from_numpy(self.penalty) / n_batches
        self.penalty[:] = 0
        return out

    def _xent(self, outT, tb):
        """The compiled pass: the bias, the loss, its gradient G^T in place of the outputs, the
        bias's gradient, and the penalty's bookkeeping (in place of about 20 small operations)."""
        m = outT.shape[1]
        if m not in self._views:
            self._views[m] = (outT.numpy(), np.empty((3, m), dtype=self.np_dtype))
        out_np, work = self._views[m]
        kernels.softmax_xent(out_np, self.bias_np, tb.numpy(), self.bank.C, self.total, self.gbias_np, work,
                             self.row_probe, self.sq_all, self.ab_all, self.penalty, self.scale, l1=self.l1,
                             l2=self.l2, l2_squared=self.l2_squared)
        return outT

    def _penalty(self):
        """The penalty of the weights the last update left (or the initial ones), and the L2
        term's gradient scale."""
        P, l1, l2 = self.bank.P, self.l1, self.l2
        nrm2 = np.bincount(self.row_probe, self.sq_all, minlength=P)
        nrm = np.sqrt(nrm2)
        self.penalty += l1 * np.bincount(self.row_probe, self.ab_all, minlength=P) + l2 * (
            nrm2 if self.l2_squared else nrm)
        if self.l2_squared:
            self.scale = np.full(P, 2.0 * l2, dtype=self.np_dtype)
        else:  # d||W||/dW = W / ||W||, and 0 at W = 0
            self.scale = np.divide(l2, nrm, out=np.zeros(P), where=nrm > 0).astype(self.np_dtype)

    def _update(self, tasks, sc):
        for task in tasks:
            kernels.run(task, self.scale, sc)

    def step(self, xb, tb) -> None:
        bank = self.bank
        outT = bank.forward(xb, with_bias=not self.xent)
        if self.xent:
            GT = self._xent(outT, tb)
        else:
            GT = data_loss_grad(bank, outT, tb, self.regression, self.total)
            self._penalty()
        bank.weight_grads(GT, xb, self.grads)
        if not self.xent:
            torch.sum(GT, 1, out=self.grads[-1])
        sc, sc_bias = self.step_scalars[self.t_step % self.n_batches]
        self.t_step += 1
        other = self.helper.submit(self._update, self.parts[1], sc) if self.helper else None
        self._update(self.parts[0], sc)
        kernels.run(self.bias_task, self.no_scale, sc_bias)  # the bias: no L1 term
        if other is not None:
            other.result()

    def close(self) -> None:
        if self.helper is not None:
            self.helper.shutdown()
