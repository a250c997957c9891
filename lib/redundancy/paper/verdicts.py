"""Verdicts on the paper's claims: an estimate with its interval, a criterion, and the outcome.

Every claim of the paper is judged per model by one rule, here, so that the rule is tested
once and read in one place:

* an :class:`Estimate` is our number for one model: the mean over seeds with a 95% interval
  (Student's t over the per-seed values; no interval from a single seed);
* :func:`decide_size` judges a number against the paper's bar ("at least 92%", "at most 10%"),
  with an optional weaker bar that the claim's direction needs;
* :func:`decide_direction` judges an effect that the paper says is positive ("more redundant
  than"), with an optional size the paper measured;
* the outcome is one of :data:`OUTCOMES`. It is *inconclusive* when the interval straddles the
  bar that decides it. A bar met exactly counts as met (the paper's "at least" and "at most").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

HOLDS = "holds"
DIRECTION = "holds in direction only"
FAILS = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable here"
OUTCOMES = (HOLDS, DIRECTION, FAILS, INCONCLUSIVE, NOT_TESTABLE)


@dataclass(frozen=True)
class Estimate:
    """One number for one model: ``value`` (mean over ``seeds``) and its 95% interval.

    ``low``/``high`` are ``None`` when there is no interval (a single seed, or a deterministic
    computation); ``how`` says which interval it is."""

    value: float
    low: float | None = None
    high: float | None = None
    seeds: tuple = ()
    how: str = ""

    @classmethod
    def over_seeds(cls, values, seeds=None, confidence: float = 0.95) -> Estimate:
        """Mean of per-seed values with a Student-t interval (``seeds`` name the values)."""
        from scipy.stats import t

        v = np.asarray(values, dtype=float)
        if v.ndim != 1 or v.size == 0:
            raise ValueError(f"an estimate needs a non-empty list of per-seed values, got {values!r}")
        if not np.isfinite(v).all():
            raise ValueError(f"per-seed values must be finite, got {v.tolist()}")
        seeds = tuple(int(s) for s in (range(v.size) if seeds is None else seeds))
        if len(seeds) != v.size:
            raise ValueError(f"{v.size} values but {len(seeds)} seeds")
        mean = float(v.mean())
        if v.size == 1:
            return cls(mean, None, None, seeds, "one seed: no interval")
        half = float(t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
        return cls(mean, mean - half, mean + half, seeds, f"{confidence:.0%} t-interval over {v.size} seeds")

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def bounds(self) -> tuple[float, float]:
        """(low, high), the point twice when there is no interval."""
        return (self.low, self.high) if self.has_interval else (self.value, self.value)

    def text(self, fmt: str = "{:.3f}") -> str:
        s = fmt.format(self.value)
        if self.has_interval:
            s += f" [{fmt.format(self.low)}, {fmt.format(self.high)}]"
        return s


def _judge(lo_margin: float, hi_margin: float) -> str:
    """'met', 'missed' or 'straddles' for a bar, from the margins of both ends of the interval
    (a margin >= 0 meets the bar)."""
    if lo_margin >= 0:
        return "met"
    if hi_margin < 0:
        return "missed"
    return "straddles"


def decide_size(est: Estimate, bar: float, at_least: bool = True, weaker: float | None = None) -> tuple[str, float]:
    """Outcome and margin of "ours is at least (or at most) ``bar``".

    ``weaker`` is the bar of the claim's direction (for "up to 85% of the neurons are redundant",
    a majority of them: 0.5): missing ``bar`` but meeting ``weaker`` is *holds in direction
    only*. The margin is how far the point is past the bar (negative: short of it)."""
    sign = 1.0 if at_least else -1.0
    lo, hi = est.bounds()
    worst, best = (lo, hi) if at_least else (hi, lo)
    margin = sign * (est.value - bar)
    state = _judge(sign * (worst - bar), sign * (best - bar))
    if state == "met":
        return HOLDS, margin
    if state == "straddles":
        return INCONCLUSIVE, margin
    if weaker is None:
        return FAILS, margin
    weak = _judge(sign * (worst - weaker), sign * (best - weaker))
    return {"met": DIRECTION, "missed": FAILS, "straddles": INCONCLUSIVE}[weak], margin


def decide_direction(est: Estimate, size: float | None = None) -> tuple[str, float]:
    """Outcome and margin of "the effect is positive" (and, with ``size``, at least that large).

    An effect of exactly 0 is not positive. Positive but short of ``size``: *holds in direction
    only*. The margin is to ``size`` when given, else to 0."""
    lo, hi = est.bounds()
    if hi <= 0:
        return FAILS, est.value - (size if size is not None else 0.0)
    if lo <= 0:
        return INCONCLUSIVE, est.value - (size if size is not None else 0.0)
    if size is None:
        return HOLDS, est.value
    state = _judge(lo - size, hi - size)
    return {"met": HOLDS, "missed": DIRECTION, "straddles": INCONCLUSIVE}[state], est.value - size


@dataclass
class Verdict:
    """One claim of the paper judged on one model."""

    claim_id: str
    claim: str
    paper_value: str
    source: str
    criterion: str
    model: str
    outcome: str
    reason: str
    ours: Estimate | None = None
    margin: float | None = None
    n_neurons: int | None = None
    budget: str | None = None
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}; outcomes are {OUTCOMES}")

    def record(self) -> dict:
        """A flat, JSON-ready record (the published ``claims/verdicts.json`` rows)."""
        r = {k: v for k, v in asdict(self).items() if k not in ("ours", "details")}
        o = self.ours
        r.update({"ours": None if o is None else o.value, "ours_low": None if o is None else o.low,
                  "ours_high": None if o is None else o.high, "interval": None if o is None else o.how,
                  "seeds": [] if o is None else list(o.seeds), "details": _plain(self.details)})
        return r


def _plain(x):
    """numpy scalars and containers -> JSON-ready Python values."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x
