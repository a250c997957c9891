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

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .config import CACHE_VERSION, cache_dir
from .models import LoadedModel, load_model, model_identity
from .tasks import TaskData
from .utils import atomic_dir, clean_stale_tmp, fault_point, file_lock, set_seed, stable_hash, write_json_atomic


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
        Model name or path (as for :func:`redundancy.models.load_model`).
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
    import torch
    from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

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
    if (final / "meta.json").is_file():
        return final
    with file_lock(final.parent / f".{key}.lock"):
        if (final / "meta.json").is_file():
            return final
        clean_stale_tmp(final.parent, key)
        y_all = task.label_ids("train")
        n = len(train)
        idx_all = np.arange(n)
        if cfg.max_train is not None and cfg.max_train < n:
            idx_all = np.sort(np.random.default_rng(cfg.seed).choice(n, cfg.max_train, replace=False))
        steps_per_epoch = math.ceil(len(idx_all) / cfg.batch_size)
        total = max(1, int(round(cfg.epochs * steps_per_epoch)))

        def start():
            set_seed(cfg.seed)
            lm = load_model(base, device=device, model_class=AutoModelForSequenceClassification,
                            config_kw={"num_labels": task.n_labels, "problem_type": "regression"
                                       if task.regression else "single_label_classification"})
            model = lm.model
            decay = [p for nm, p in model.named_parameters() if not nm.endswith(("bias", "LayerNorm.weight"))]
            rest = [p for nm, p in model.named_parameters() if nm.endswith(("bias", "LayerNorm.weight"))]
            opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                     {"params": rest, "weight_decay": 0.0}], lr=cfg.learning_rate)
            sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
            return lm, opt, sched, np.random.default_rng(cfg.seed)

        lm, opt, sched, rng = start()
        model, tok = lm.model, lm.tokenizer
        ckpt = final.parent / f".{key}.checkpoint.pt"
        losses, step, order, pos, elapsed = [], 0, None, 0, 0.0
        if ckpt.is_file():  # a killed run left a checkpoint: continue from it, exactly
            try:
                state = torch.load(ckpt, map_location=device, weights_only=False)
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                sched.load_state_dict(state["scheduler"])
                rng.bit_generator.state = state["rng"]
                torch.set_rng_state(state["torch_rng"])
                if state.get("cuda_rng") is not None:
                    torch.cuda.set_rng_state_all(state["cuda_rng"])
                losses, step, order, pos, elapsed = (state["losses"], state["step"], state["order"],
                                                     state["pos"], state["elapsed"])
                print(f"[fine-tune] {lm.name} on {task.name}: resuming at step {step} of {total} from {ckpt}",
                      flush=True)
            except Exception as e:  # noqa: BLE001 - a damaged checkpoint is recomputed, never trusted
                print(f"[fine-tune] checkpoint {ckpt} unreadable ({type(e).__name__}: {e}); starting over",
                      flush=True)
                ckpt.unlink(missing_ok=True)
                lm, opt, sched, rng = start()
                model, tok = lm.model, lm.tokenizer
                losses, step, order, pos, elapsed = [], 0, None, 0, 0.0
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, desc=f"fine-tune {lm.name} on {task.name}", disable=not progress,
                   mininterval=1.0, leave=False)
        model.train()
        t0, last_save = time.time(), time.time()
        while step < total:
            if order is None or pos >= len(order):
                order, pos = rng.permutation(idx_all), 0
            b = order[pos:pos + cfg.batch_size]
            pos += cfg.batch_size
            inputs = _tensors(tok, train, b, cfg.max_length, device)
            yb = torch.as_tensor(y_all[b], device=device)
            out = model(**inputs, labels=yb.float() if task.regression else yb)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
            losses.append(round(out.loss.item(), 5))
            step += 1
            bar.update(1)
            if step < total and (time.time() - last_save >= checkpoint_every_s
                                 or (checkpoint_every_steps and step % checkpoint_every_steps == 0)):
                _save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                        "scheduler": sched.state_dict(), "rng": rng.bit_generator.state,
                                        "torch_rng": torch.get_rng_state(),
                                        "cuda_rng": torch.cuda.get_rng_state_all()
                                        if str(device).startswith("cuda") else None, "losses": losses, "step": step,
                                        "order": order, "pos": pos, "elapsed": elapsed + time.time() - t0})
                last_save = time.time()
            fault_point("finetune-step")
        bar.close()
        train_time = elapsed + time.time() - t0
        scores = {s: _evaluate(model, tok, task, s, cfg.max_length, device) for s in ("dev",)}
        with atomic_dir(final) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            write_json_atomic(tmp / "meta.json", {**key_cfg, "key": key, "steps": total, "loss": losses,
                                                  "scores": scores, "train_time_s": round(train_time, 2),
                                                  "train_examples": int(len(idx_all)), "device": device})
        ckpt.unlink(missing_ok=True)
    return final


def _save_checkpoint(path: Path, state: dict) -> None:
    """Write a fine-tuning checkpoint atomically (a kill leaves the previous one)."""
    import torch

    tmp = path.with_name(path.name + ".tmp-write")
    torch.save(state, tmp)
    os.replace(tmp, path)


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
