"""anneal_coefficients against hand-computed values (ATOD_METHOD.md reference points)."""

import math

import pytest

from atod.schedule import anneal_coefficients

PAPER = {"anneal_steps": 80, "kappa_init": 1.0, "kappa_min": 0.1, "rho_init": 1.0, "rho_max": 2.0}


@pytest.mark.parametrize("step,kappa,rho", [(0, 1.0, 1.0), (40, 0.55, 1.5), (80, 0.1, 2.0), (150, 0.1, 2.0),
                                            (20, 0.775, 1.25)])
def test_linear_reference_points(step, kappa, rho):
    k, r = anneal_coefficients(step, **PAPER)
    assert k == pytest.approx(kappa) and r == pytest.approx(rho)


def test_cosine_midpoints():
    # s=20 of 80: f = (1 - cos(pi/4)) / 2 = 0.1464466
    k, r = anneal_coefficients(20, kind="cosine", **PAPER)
    assert k == pytest.approx(1 - 0.9 * 0.1464466, abs=1e-6) and r == pytest.approx(1.1464466, abs=1e-6)
    assert anneal_coefficients(40, kind="cosine", **PAPER) == pytest.approx((0.55, 1.5))
    assert anneal_coefficients(100, kind="cosine", **PAPER) == pytest.approx((0.1, 2.0))


def test_exponential_is_fast_early():
    # s=40: f = (1 - e^-2.5) / (1 - e^-5) = 0.917915 / 0.993262 = 0.924142
    k, r = anneal_coefficients(40, kind="exponential", **PAPER)
    assert k == pytest.approx(1 - 0.9 * 0.924142, abs=1e-5) and r == pytest.approx(1.924142, abs=1e-5)
    assert anneal_coefficients(80, kind="exponential", **PAPER) == pytest.approx((0.1, 2.0))


def test_step_and_constant():
    assert anneal_coefficients(79, kind="step", **PAPER) == (1.0, 1.0)
    assert anneal_coefficients(80, kind="step", **PAPER) == pytest.approx((0.1, 2.0))
    for s in (0, 40, 500):
        assert anneal_coefficients(s, kind="constant", **PAPER) == (1.0, 1.0)


def test_floor_and_errors():
    # kappa never goes below kappa_min: with kappa_min above kappa_init the linear path (0.2 -> 0.3 would
    # be a rise) is clipped to the floor from step 0; the ordinary end point is the floor itself
    for s in (0, 40, 80):
        k, _ = anneal_coefficients(s, anneal_steps=80, kappa_init=0.2, kappa_min=0.3, rho_init=0.0, rho_max=1.0)
        assert math.isclose(k, 0.3)
    k, _ = anneal_coefficients(80, anneal_steps=80, kappa_init=1.0, kappa_min=0.3, rho_init=0.0, rho_max=1.0)
    assert math.isclose(k, 0.3)
    with pytest.raises(ValueError, match="step must be"):
        anneal_coefficients(-1, **PAPER)
    with pytest.raises(ValueError, match="unknown schedule kind"):
        anneal_coefficients(0, kind="sigmoid", **PAPER)
    with pytest.raises(ValueError, match="anneal_steps"):
        anneal_coefficients(0, anneal_steps=0, kappa_init=1, kappa_min=0, rho_init=1, rho_max=1)
