"""Fine-tune an encoder on a sentence task, as the paper does before taking [CLS] vectors.

Paper section 3.1: "the [CLS] token's representation (from a fine-tuned model) is
used for sequence classification. The fine-tuning step is essential to optimize the
[CLS] token for sentence representation." The paper fine-tuned with the
``transformers`` defaults of its time (``run_glue.py``: AdamW, learning rate 5e-5,
3 epochs, linear decay, maximum length 128); those are the defaults here, and the
budget (epochs, training examples) is a parameter because fine-tuning dominates
the cost on a CPU.

Results are cached by (base model identity, task data, hyper-parameters, seed) and
written atomically, so a rerun reuses them and a killed run leaves nothing half-done.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import CACHE_VERSION, cache_dir
from .models import LoadedModel, load_model, model_identity
from ..data.tasks import TaskData
from ..cache import (atomic_dir, clean_stale_tmp, damage, file_lock, file_record, folder_damage, folder_records,
                     write_atomic, write_json_atomic)
from ..utils import fault_point, set_seed, stable_hash


@dataclass
class FineTuneConfig:
    """Hyper-parameters of fine-tuning (defaults: ``run_glue.py`` of the paper's time)."""

    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 32
    max_length: int = 128
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_train: int | None = None
    seed: int = 42

    def __post_init__(self):
        if self.epochs <= 0 or self.learning_rate <= 0 or self.batch_size < 1 or self.max_length < 8:
            raise ValueError(f"invalid fine-tuning settings: {self}")


def _tensors(lm_tok, corpus, idx, max_length, device):
    texts = [corpus.texts[i] for i in idx]
    pairs = None if corpus.pairs is None else [corpus.pairs[i] for i in idx]
    args = (texts,) if pairs is None else (texts, pairs)
    enc = lm_tok(*args, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return {k: v.to(device) for k, v in enc.items()}


def _evaluate(model, tok, task: TaskData, split: str, max_length: int, device: str, batch_size: int = 64):
    import torch

    corpus = task[split]
    y = task.label_ids(split)
    preds = []
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(corpus), batch_size):
            logits = model(**_tensors(tok, corpus, range(s, min(s + batch_size, len(corpus))),
                                      max_length, device)).logits
            preds.append(logits.float().cpu().numpy())
    p = np.concatenate(preds)
    if task.regression:
        from scipy.stats import pearsonr

        return {"pearson": float(pearsonr(p[:, 0], y).statistic)}
    return {"accuracy": float((p.argmax(1) == y).mean())}


def fine_tune(base: str, task: TaskData, config: FineTuneConfig | None = None, device: str = "cpu",
              progress: bool = True, checkpoint_every_s: float = 120.0, checkpoint_every_steps: int | None = None,
              **overrides) -> Path:
    """Fine-tune ``base`` on the task's train split and return the saved model's folder.

    Parameters
    ----------
    base : str
        Model name or path (as for :func:`redundancy.representations.models.load_model`).
    task : TaskData
        A sentence task (classification or regression).
    config : FineTuneConfig, optional
        Hyper-parameters; keyword ``overrides`` replace single fields.
    device : str
    checkpoint_every_s, checkpoint_every_steps : optional
        How often the training state (weights, optimizer, scheduler, both random
        streams, the position in the epoch) is saved. A killed run resumes from the
        last checkpoint and ends with the same weights as an uninterrupted one.

    Returns
    -------
    pathlib.Path
        A folder loadable with :func:`load_finetuned`; ``meta.json`` inside holds the
        configuration, the training loss per step, dev scores and wall time.
    """
    if task.kind != "sentence":
        raise ValueError(f"fine-tuning is for sentence tasks; {task.name!r} is a {task.kind} task "
                         "(the paper probes pre-trained, not fine-tuned, models for token tasks)")
    cfg = config or FineTuneConfig()
    if overrides:
        cfg = FineTuneConfig(**{**asdict(cfg), **overrides})
    base_identity = model_identity(base)  # config and weight hashes; the weights load only on a miss
    train = task["train"]
    key_cfg = {"base": base_identity, "task": task.name, "labels": task.label_names,
               "regression": task.regression, "train": stable_hash([train.texts, train.pairs,
                                                                     [str(x) for x in train.labels]]),
               "finetune": asdict(cfg), "cache_version": CACHE_VERSION}
    key = stable_hash(key_cfg)
    final = cache_dir() / "finetuned" / task.name / base_identity["name"].replace("/", "_") / key
    if _intact(final):
        return final
    with file_lock(final.parent / f".{key}.lock"):
        if _intact(final, report=True):
            return final
        clean_stale_tmp(final.parent, key)
        run = _Training(base, task, cfg, device, final.parent / f".{key}.checkpoint.pt")
        run.resume()
        run.train(progress, checkpoint_every_s, checkpoint_every_steps)
        scores = {s: _evaluate(run.model, run.tok, task, s, cfg.max_length, device) for s in ("dev",)}
        with _saving(final), atomic_dir(final) as tmp:
            run.model.save_pretrained(tmp)
            run.tok.save_pretrained(tmp)
            files = folder_records(tmp, sorted(f.name for f in tmp.iterdir() if f.is_file()))
            write_json_atomic(tmp / "meta.json", {**key_cfg, "key": key, "steps": run.total, "loss": run.losses,
                                                  "scores": scores, "train_time_s": round(run.elapsed, 2),
                                                  "train_examples": int(len(run.idx_all)), "device": device,
                                                  "files": files})
        run.ckpt.unlink(missing_ok=True)
        _checkpoint_record(run.ckpt).unlink(missing_ok=True)
    return final


class _Training:
    """One fine-tuning run: model, AdamW, linear schedule and the seeded batch order, with a
    checkpoint of all of them (and the position in the epoch) that a killed run resumes from."""

    def __init__(self, base, task: TaskData, cfg: FineTuneConfig, device, ckpt: Path):
        self.base, self.task, self.cfg, self.device, self.ckpt = base, task, cfg, device, ckpt
        n = len(task["train"])
        self.idx_all = np.arange(n)
        if cfg.max_train is not None and cfg.max_train < n:
            self.idx_all = np.sort(np.random.default_rng(cfg.seed).choice(n, cfg.max_train, replace=False))
        steps_per_epoch = math.ceil(len(self.idx_all) / cfg.batch_size)
        self.total = max(1, int(round(cfg.epochs * steps_per_epoch)))
        self._start()

    def _start(self):
        import torch
        from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

        cfg, task = self.cfg, self.task
        set_seed(cfg.seed)
        self.lm = load_model(self.base, device=self.device, model_class=AutoModelForSequenceClassification,
                             config_kw={"num_labels": task.n_labels, "problem_type": "regression"
                                        if task.regression else "single_label_classification"})
        self.model, self.tok = self.lm.model, self.lm.tokenizer
        named = list(self.model.named_parameters())
        decay = [p for nm, p in named if not nm.endswith(("bias", "LayerNorm.weight"))]
        rest = [p for nm, p in named if nm.endswith(("bias", "LayerNorm.weight"))]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": rest, "weight_decay": 0.0}], lr=cfg.learning_rate)
        self.sched = get_linear_schedule_with_warmup(self.opt, int(cfg.warmup_ratio * self.total), self.total)
        self.rng = np.random.default_rng(cfg.seed)
        self.losses, self.step, self.order, self.pos, self.elapsed = [], 0, None, 0, 0.0

    def _state(self) -> dict:
        import torch

        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "rng": self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if str(self.device).startswith("cuda") else None,
                "losses": self.losses, "step": self.step, "order": self.order, "pos": self.pos,
                "elapsed": self.elapsed}

    def resume(self) -> None:
        """Continue exactly from the checkpoint a killed run left; a damaged one is recomputed,
        never trusted."""
        import torch

        if not self.ckpt.is_file():
            return
        try:
            _check_checkpoint(self.ckpt)
            state = torch.load(self.ckpt, map_location=self.device, weights_only=False)
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            if state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            self.losses, self.step, self.order, self.pos, self.elapsed = (
                state["losses"], state["step"], state["order"], state["pos"], state["elapsed"])
            print(f"[fine-tune] {self.lm.name} on {self.task.name}: resuming at step {self.step} of {self.total} "
                  f"from {self.ckpt}", flush=True)
        except Exception as e:  # noqa: BLE001 - a damaged checkpoint is recomputed, never trusted
            print(f"[fine-tune] checkpoint {self.ckpt} unreadable ({type(e).__name__}: {e}); starting over",
                  flush=True)
            self.ckpt.unlink(missing_ok=True)
            _checkpoint_record(self.ckpt).unlink(missing_ok=True)
            self._start()

    def train(self, progress, checkpoint_every_s, checkpoint_every_steps) -> None:
        import torch
        from tqdm.auto import tqdm

        cfg, task, train = self.cfg, self.task, self.task["train"]
        y_all = task.label_ids("train")
        bar = tqdm(total=self.total, initial=self.step, desc=f"fine-tune {self.lm.name} on {task.name}",
                   disable=not progress, mininterval=1.0, leave=False)
        self.model.train()
        t0, last_save, before = time.time(), time.time(), self.elapsed
        while self.step < self.total:
            if self.order is None or self.pos >= len(self.order):
                self.order, self.pos = self.rng.permutation(self.idx_all), 0
            b = self.order[self.pos:self.pos + cfg.batch_size]
            self.pos += cfg.batch_size
            yb = torch.as_tensor(y_all[b], device=self.device)
            out = self.model(**_tensors(self.tok, train, b, cfg.max_length, self.device),
                             labels=yb.float() if task.regression else yb)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step(), self.sched.step(), self.opt.zero_grad(set_to_none=True)
            self.losses.append(round(out.loss.item(), 5))
            self.step += 1
            bar.update(1)
            if self.step < self.total and (time.time() - last_save >= checkpoint_every_s or (
                    checkpoint_every_steps and self.step % checkpoint_every_steps == 0)):
                self.elapsed = before + time.time() - t0
                _save_checkpoint(self.ckpt, self._state())
                last_save = time.time()
            fault_point("finetune-step")
        bar.close()
        self.elapsed = before + time.time() - t0


def _intact(final: Path, report: bool = False) -> bool:
    """Whether a finished fine-tune is in ``final`` with every file as recorded (size and
    checksum). A damaged one is removed (and named when ``report``), to be trained again:
    a model whose weights changed on disk is never used. Entries saved before the records
    were kept are taken as they are."""
    if not (final / "meta.json").is_file():
        return False
    why = folder_damage(final, finetune_meta(final).get("files", {}))
    if why is None:
        return True
    if report:  # under the entry's lock: safe to remove
        print(f"[fine-tune] {why}: the fine-tuned model {final} is damaged; it is removed and trained again",
              flush=True)
        import shutil

        shutil.rmtree(final)
    return False


@contextlib.contextmanager
def _saving(final: Path):
    """A full disk while saving a fine-tuned model: an error that names the folder and what to do."""
    try:
        yield
    except Exception as e:  # safetensors reports a full disk as its own error type
        if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e):
            raise OSError(errno.ENOSPC, f"no space left on the device while saving the fine-tuned model to {final}; "
                          "free space there (or point REDUNDANCY_CACHE at a larger disk) and run again: "
                          "training resumes from its last checkpoint", str(final)) from e
        raise


def _checkpoint_record(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _save_checkpoint(path: Path, state: dict) -> None:
    """Write a fine-tuning checkpoint atomically (a kill leaves the previous one), with its size
    and checksum beside it so that a damaged checkpoint is never resumed from."""
    import torch

    with _saving(path):
        write_atomic(path, lambda f: torch.save(state, f))
        write_json_atomic(_checkpoint_record(path), file_record(path))


def _check_checkpoint(path: Path) -> None:
    rec = _checkpoint_record(path)
    if not rec.is_file():
        raise ValueError(f"{rec} (its size and checksum) is missing")
    why = damage(path, json.loads(rec.read_text()))
    if why:
        raise ValueError(why)


def finetune_meta(path) -> dict:
    return json.loads((Path(path) / "meta.json").read_text())


def load_finetuned(path, device: str = "cpu", name: str | None = None) -> LoadedModel:
    """Load a model saved by :func:`fine_tune` (its classification head included)."""
    from transformers import AutoModelForSequenceClassification

    meta = finetune_meta(path)
    name = name or f"{meta['base']['name']}+ft-{meta['task']}"
    lm = load_model(str(path), device=device, model_class=AutoModelForSequenceClassification, name=name)
    lm.extra["finetune"] = {k: meta[k] for k in ("key", "finetune", "scores", "train_time_s", "steps")}
    lm.identity["finetuned_from"] = meta["base"]
    return lm
