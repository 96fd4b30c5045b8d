"""Attribute inference's rows: AUCs with and without the model, and the risk of members against controls."""

from __future__ import annotations

import math

import numpy as np

from privbench.api import ResultRow
from privbench.stats import exact_rate_ci

GAME = "release"


def _predicted(proba, classes):
    return classes[np.argmax(proba, axis=1)]


def anonymeter_risk(success_members, success_controls) -> float:
    """(r_members - r_controls) / (1 - r_controls): what the attack gets right about members beyond anyone."""
    r_m, r_c = float(np.mean(success_members)), float(np.mean(success_controls))
    return float("nan") if r_c >= 1 else (r_m - r_c) / (1 - r_c)


def risk_ci(success_members, success_controls, resamples: int, seed: int):
    """The risk with a percentile bootstrap that resamples members and controls each within itself."""
    a = np.asarray(success_members, dtype=np.float64)
    b = np.asarray(success_controls, dtype=np.float64)
    value = anonymeter_risk(a, b)
    if a.size < 2 or b.size < 2 or resamples < 1 or not math.isfinite(value):
        return value, None, None
    rng = np.random.default_rng(seed)
    draws = np.array([anonymeter_risk(a[rng.integers(0, a.size, a.size)], b[rng.integers(0, b.size, b.size)])
                      for _ in range(resamples)])
    draws = draws[np.isfinite(draws)]
    if draws.size < max(10, resamples // 10):
        return value, None, None
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return value, float(lo), float(hi)


def balanced_accuracy(y, predicted) -> float:
    """The mean over the values present in ``y`` of the share of each predicted right (scikit-learn's
    ``balanced_accuracy_score``, without its per-call validation, which a bootstrap pays thousands of times)."""
    y, predicted = np.asarray(y), np.asarray(predicted)
    values = np.unique(y)
    return float(np.mean([(predicted[y == v] == v).mean() for v in values])) if values.size else float("nan")


def attribute_rows(y, proba, classes, where, config, seed) -> list[ResultRow]:
    from privbench_builtins.attacks.aia import attribute_auc

    def auc(yy, pp):
        return attribute_auc(yy, pp, classes)

    def bal(yy, pp):
        return balanced_accuracy(yy, _predicted(pp, classes))

    def gain(yy, p_model, p_base):
        return auc(yy, p_model) - auc(yy, p_base)

    counts = {"members": int(y["members"].size), "controls": int(y["controls"].size),
              "matched_members": int(y["matched"].size)}

    def boot(measure, fn, *arrays, group="members"):
        row = ResultRow.bootstrap(measure, fn, *arrays, higher_is_better=True, strata=y[group],
                                  resamples=config.resamples, seed=seed,
                                  detail={**where, **counts, "scored_on": group})
        if row.value is None or not math.isfinite(row.value):
            return ResultRow.unavailable(measure, f"undefined: the {group} hold fewer than two values of "
                                         f"{where['attribute']!r}", higher_is_better=True, game=GAME)
        return ResultRow(row.measure, row.value, row.ci_low, row.ci_high, row.n, True, "all", "ok", row.detail, GAME)

    rows = [boot(f"{side}.auc", auc, y["members"], proba[side]["members"]) for side in ("with_model", "baseline")]
    rows += [boot(f"{side}.balanced_accuracy", bal, y["members"], proba[side]["members"])
             for side in ("with_model", "baseline")]
    rows.append(boot("gain.auc", gain, y["members"], proba["with_model"]["members"], proba["baseline"]["members"]))
    rows += [boot(f"{side}.control_auc", auc, y["controls"], proba[side]["controls"], group="controls")
             for side in ("with_model", "baseline")]
    success = {k: _predicted(proba["with_model"][k], classes) == y[k] for k in ("matched", "controls")}
    rule = ("the with-model attacker's most probable value equals the true one; members and controls have the "
            "same count of every attribute value")
    for measure, key in (("success.members", "matched"), ("success.controls", "controls")):
        hits, n = int(success[key].sum()), int(success[key].size)
        if n == 0:
            rows.append(ResultRow.unavailable(measure, f"no {key} to score", higher_is_better=True, game=GAME))
            continue
        est = exact_rate_ci(hits, n)
        rows.append(ResultRow(measure, est.value, est.ci_low, est.ci_high, n, True, "all", "ok",
                              {**where, **counts, "successes": hits, "rule": rule,
                               "ci_method": "exact binomial (Clopper-Pearson)"}, GAME))
    if success["matched"].size and success["controls"].size:
        value, lo, hi = risk_ci(success["matched"], success["controls"], config.resamples, seed)
        if math.isfinite(value):
            rows.append(ResultRow("risk", value, lo, hi, int(success["matched"].size + success["controls"].size),
                                  True, "all", "ok",
                                  {**where, **counts, "definition": "(r_members - r_controls) / (1 - r_controls) "
                                   "(Anonymeter)", "r_members": float(success["matched"].mean()),
                                   "r_controls": float(success["controls"].mean()),
                                   "ci_method": "bootstrap, members and controls each resampled within itself"},
                                  GAME))
        else:
            rows.append(ResultRow.unavailable("risk", "the controls are all inferred correctly, so the risk is "
                                              "undefined", higher_is_better=True, game=GAME))
    else:
        rows.append(ResultRow.unavailable("risk", "needs members and controls", higher_is_better=True, game=GAME))
    return rows
