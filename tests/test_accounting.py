"""The guarantee privbench states is the accountant library's own, and solving for sigma gives it back."""

from __future__ import annotations

import math

import pytest

from privbench.accounting import epsilon_for, guarantee, noise_for
from privbench.errors import UserError


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
@pytest.mark.parametrize("sigma,q,steps", [(1.0, 0.01, 1000), (2.0, 0.05, 200), (0.8, 1.0, 10)])
def test_epsilon_equals_the_library_stepped_by_hand(accountant, sigma, q, steps):
    from opacus.accountants import PRVAccountant, RDPAccountant

    acc = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    for _ in range(steps):
        acc.step(noise_multiplier=sigma, sample_rate=q)
    assert epsilon_for(sigma, q, steps, 1e-5, accountant) == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-6)


@pytest.mark.parametrize("target", [1.0, 10.0])
def test_the_solved_sigma_spends_the_requested_epsilon_within_one_percent(target):
    sigma = noise_for(target, 1e-5, 0.02, 500)
    spent = epsilon_for(sigma, 0.02, 500, 1e-5)
    assert spent <= target * 1.01 and spent >= target * 0.99


def test_more_noise_spends_less_and_no_noise_is_no_guarantee():
    assert epsilon_for(2.0, 0.01, 100, 1e-5) < epsilon_for(1.0, 0.01, 100, 1e-5)
    assert epsilon_for(0.0, 0.01, 100, 1e-5) == math.inf
    assert noise_for(math.inf, 1e-5, 0.01, 100) == 0.0
    record = guarantee(0.0, 0.01, 100, 1e-5, clip=1.0)
    assert record["epsilon"] == "inf" and record["accountant_library"].startswith("opacus ")


@pytest.mark.parametrize("args", [(1.0, 0.0, 10, 1e-5), (1.0, 1.5, 10, 1e-5), (1.0, 0.1, 0, 1e-5),
                                  (1.0, 0.1, 10, 0.0), (-1.0, 0.1, 10, 1e-5), (math.nan, 0.1, 10, 1e-5)])
def test_impossible_requests_are_one_line(args):
    with pytest.raises(UserError):
        epsilon_for(*args)
    with pytest.raises(UserError):
        noise_for(0.0, 1e-5, 0.1, 10)


def test_without_opacus_the_accountant_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "opacus", None)  # import opacus now raises ImportError
    with pytest.raises(UserError, match=r"needs opacus, which is not installed here"):
        epsilon_for(1.0, 0.1, 10, 1e-5)
