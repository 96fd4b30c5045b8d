"""Non-member hygiene: copies of training images are found, counted and removed before any attack."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attack_data import digits_small
from privbench.api import Dataset, RunContext, Split
from privbench_builtins.attacks._population import build_population, earlier_duplicates, train_without


@pytest.fixture(scope="module")
def planted() -> tuple[Dataset, dict]:
    """Digits with planted copies: 3 exact and 2 near copies of training images in val, 1 val copy in test,
    and 2 training images duplicated inside the training split."""
    base = digits_small(train=100, nonmembers=50, seed=1)
    train, val, test = base.train.images.clone(), base.val.images.clone(), base.test.images.clone()
    g = torch.Generator().manual_seed(0)
    val[0], val[1], val[2] = train[5], train[17], train[40]  # exact
    for i, j in ((3, 60), (4, 61)):  # near: RMS difference 0.003 < 0.01
        val[i] = (train[j] + 0.003 * torch.randn(train[j].shape, generator=g).sign()).clamp(0, 1)
    test[0] = val[10]  # a non-member duplicating another non-member
    train[90], train[91] = train[3], train[4]  # duplicates inside the private set
    val_labels = base.val.labels.clone()
    val_labels[:5] = base.train.labels[torch.tensor([5, 17, 40, 60, 61])]
    test_labels = base.test.labels.clone()
    test_labels[0] = val_labels[10]
    train_labels = base.train.labels.clone()
    train_labels[90], train_labels[91] = train_labels[3], train_labels[4]
    data = Dataset("planted", Split(train, train_labels), Split(val, val_labels), Split(test, test_labels),
                   base.class_names, public=True).validate()
    return data, {"exact": 3, "near": 2}


def test_planted_copies_are_counted_exactly(planted):
    data, truth = planted
    population = build_population(data, ["val", "test"], 0.01, RunContext())
    facts = population.facts
    assert facts["nonmembers_removed_exact"] == truth["exact"]
    assert facts["nonmembers_removed_near"] == truth["near"]
    assert facts["nonmembers_removed_as_copies_of_training_images"] == 5
    assert facts["nonmembers_removed_as_copies_of_nonmembers"] == 1
    assert facts["training_images_duplicating_training_images"] == 2
    assert facts["pool"] == 100 + 50 + 50 - 5 - 1 - 2 and len(population) == facts["pool"]
    assert facts["pool_members"] == 98 and facts["pool_nonmembers_val"] == 45 and facts["pool_nonmembers_test"] == 49
    # the duplicates inside the training split stand for the copy that was kept
    assert population.train_pool[90] == population.train_pool[3] and population.train_pool[91] == population.train_pool[4]
    # holding out an entry holds out every copy of it
    held = np.array([population.train_pool[3]])
    assert len(train_without(data, population, held)) == 98


def test_exact_only_threshold_keeps_near_copies(planted):
    data, _ = planted
    facts = build_population(data, ["val", "test"], 0.0, RunContext()).facts
    assert facts["nonmembers_removed_exact"] == 3 and facts["nonmembers_removed_near"] == 0


def test_near_duplicates_at_the_threshold_edge():
    base = torch.rand(3, 1, 20, 20, generator=torch.Generator().manual_seed(2)) * 0.5
    shifted = base.clone()
    shifted[1] += 0.02  # RMS 0.02: beyond 0.01
    shifted[2] += 0.005  # RMS 0.005: within
    images = torch.cat([base, shifted])
    first, exact = earlier_duplicates(images, 0.01, RunContext())
    assert first.tolist() == [-1, -1, -1, 0, -1, 2]  # 3 copies 0 exactly, 5 is 2 within 0.01, 4 is too far
    assert exact.tolist() == [False, False, False, True, False, False]
