"""Confidence intervals: coverage behaves, seeds reproduce, degenerate inputs stay finite."""

from __future__ import annotations

import numpy as np

from privbench.stats import bootstrap_ci, bootstrap_mean_ci, t_mean_ci


def test_bootstrap_mean_ci_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = bootstrap_mean_ci(rng.normal(5, 1, 20), seed=1)
    large = bootstrap_mean_ci(rng.normal(5, 1, 2000), seed=1)
    assert small.ci_low < small.value < small.ci_high and small.n == 20
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low) / 5
    assert large.ci_low < 5 < large.ci_high
    assert bootstrap_mean_ci([1, 2, 3], seed=7) == bootstrap_mean_ci([1, 2, 3], seed=7)


def test_bootstrap_coverage_is_close_to_95_percent():
    rng = np.random.default_rng(1)
    hits = 0
    for k in range(200):
        est = bootstrap_mean_ci(rng.exponential(1.0, 200), resamples=400, seed=k)
        hits += est.ci_low <= 1.0 <= est.ci_high
    assert 0.88 <= hits / 200 <= 0.99


def test_nan_values_are_dropped_and_single_values_have_no_interval():
    est = bootstrap_mean_ci([1.0, np.nan, 3.0])
    assert est.n == 2 and est.value == 2.0
    one = bootstrap_mean_ci([4.0])
    assert one.value == 4.0 and one.ci_low is None and one.n == 1


def test_stratified_bootstrap_of_an_auc():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(200), np.zeros(200)]
    scores = np.r_[rng.normal(1, 1, 200), rng.normal(0, 1, 200)]
    est = bootstrap_ci(roc_auc_score, labels, scores, strata=labels, resamples=300)
    assert 0.6 < est.ci_low < est.value < est.ci_high < 0.85


def test_t_interval_is_wider_than_a_naive_bootstrap_for_three_values():
    values = [0.80, 0.83, 0.85]
    t = t_mean_ci(values)
    b = bootstrap_mean_ci(values)
    assert t.n == 3 and (t.ci_high - t.ci_low) > (b.ci_high - b.ci_low)


def test_batched_bootstrap_matches_the_loop_and_the_cluster_bootstrap_sees_clusters():
    from privbench.stats import bootstrap_ci_batched, cluster_bootstrap_ci, difference_of_means_ci
    from privbench_builtins.attacks._roc import batched_auc, weighted_auc

    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(300, int), np.zeros(300, int)]
    scores = np.r_[rng.normal(0.5, 1, 300), rng.normal(0, 1, 300)]
    loop = bootstrap_ci(lambda m, s: float(batched_auc(m[None], s[None])[0]), labels, scores, strata=labels,
                        resamples=400, seed=0)
    batched = bootstrap_ci_batched(batched_auc, labels, scores, strata=labels, resamples=400, seed=0, cells=50_000)
    assert batched.value == loop.value
    assert abs(batched.ci_low - loop.ci_low) < 0.02 and abs(batched.ci_high - loop.ci_high) < 0.02
    # the same 60 candidates, each scored 10 times with the same score: 600 rows but only 60 units of evidence
    unit_labels, unit_scores = labels[::10], scores[::10]
    rows_labels, rows_scores = np.repeat(unit_labels, 10), np.repeat(unit_scores, 10)
    clusters = np.repeat(np.arange(60), 10)
    naive = bootstrap_ci_batched(batched_auc, rows_labels, rows_scores, strata=rows_labels, resamples=400, seed=0)
    clustered = cluster_bootstrap_ci(weighted_auc(rows_labels, rows_scores), clusters, resamples=400, seed=0)
    assert clustered.value == naive.value and clustered.n == 600
    assert (clustered.ci_high - clustered.ci_low) > 2 * (naive.ci_high - naive.ci_low)
    gap = difference_of_means_ci(rng.normal(1, 1, 400), rng.normal(0, 1, 400), resamples=300)
    assert 0.75 < gap.ci_low < gap.value < gap.ci_high < 1.25 and gap.n == 800
