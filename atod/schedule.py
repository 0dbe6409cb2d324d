"""The annealed kappa (OPD weight) / rho (GRPO weight) schedule of ATOD.

Progress p(s) goes from 0 at step 0 to 1 at step T = anneal_steps and stays at 1 afterwards; every
schedule kind maps p to a fraction f(p) in [0, 1] of the way travelled:

    kappa(s) = max(kappa_min, kappa_init - (kappa_init - kappa_min) * f(p(s)))
    rho(s)   = rho_init + (rho_max - rho_init) * f(p(s))

Kinds (ATOD_METHOD.md: linear-with-floor is the paper's default; the others are ablations):
- linear:      f = p
- cosine:      f = (1 - cos(pi p)) / 2           (slow start, slow end)
- exponential: f = (1 - exp(-5 p)) / (1 - exp(-5))  (fast start; rate 5 is our choice)
- step:        f = 0 before T, 1 from T on       (pure OPD-style mix, then switch)
- constant:    f = 0                             (kappa = kappa_init, rho = rho_init for ever)
"""

from __future__ import annotations

import math

SCHEDULE_KINDS = ("linear", "cosine", "exponential", "step", "constant")
_EXP_RATE = 5.0


def anneal_fraction(step: int, anneal_steps: int, kind: str = "linear") -> float:
    """Fraction f in [0, 1] of the kappa/rho path travelled at optimizer step `step` (0-based)."""
    if anneal_steps < 1:
        raise ValueError(f"anneal_steps must be >= 1, got {anneal_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    p = min(step / anneal_steps, 1.0)
    if kind == "linear":
        return p
    if kind == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * p))
    if kind == "exponential":
        return (1.0 - math.exp(-_EXP_RATE * p)) / (1.0 - math.exp(-_EXP_RATE))
    if kind == "step":
        return 1.0 if p >= 1.0 else 0.0
    if kind == "constant":
        return 0.0
    raise ValueError(f"unknown schedule kind {kind!r}; known: {', '.join(SCHEDULE_KINDS)}")


def anneal_coefficients(
    step: int,
    *,
    anneal_steps: int,
    kappa_init: float,
    kappa_min: float,
    rho_init: float,
    rho_max: float,
    kind: str = "linear",
) -> tuple[float, float]:
    """(kappa, rho) at optimizer step `step`.

    With the paper defaults (T=80, kappa 1.0 -> 0.1, rho 1.0 -> 2.0, linear):
    s=0 -> (1.0, 1.0), s=40 -> (0.55, 1.5), s>=80 -> (0.1, 2.0).
    """
    f = anneal_fraction(step, anneal_steps, kind)
    kappa = max(kappa_min, kappa_init - (kappa_init - kappa_min) * f)
    rho = rho_init + (rho_max - rho_init) * f
    return kappa, rho
