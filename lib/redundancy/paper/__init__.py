"""The paper itself as code: its claims, each a function over results tables that returns a
verdict per model (:mod:`redundancy.paper.claims`), and the outcome rules they share
(:mod:`redundancy.paper.verdicts`)."""

from .verdicts import OUTCOMES, Estimate, Verdict, decide_direction, decide_size

__all__ = ["OUTCOMES", "Estimate", "Verdict", "decide_direction", "decide_size"]
