"""Tests for the example plugin, written the way a plugin author would write them."""

from __future__ import annotations

import torch

from privbench.testing import attack, check_plugin, distill, tiny_dataset
from privbench_coreset.attack import NNDistance
from privbench_coreset.distillers import Herding, KCenter


def test_classes_pass_privbench_checks():
    check_plugin(Herding, "distiller")
    check_plugin(KCenter, "distiller")
    check_plugin(NNDistance, "attack")


def test_coresets_are_real_images_of_the_right_classes():
    data = tiny_dataset(classes=3, per_class=10)
    for cls in (Herding, KCenter):
        release = distill(cls, data, ipc=4)
        assert torch.bincount(release.labels).tolist() == [4, 4, 4]
        flat = data.train.images.flatten(1)
        for img, label in zip(release.images, release.labels):
            match = (flat == img.flatten()).all(1)
            assert match.any() and data.train.labels[match][0] == label


def test_herding_mean_is_closer_to_the_class_mean_than_kcenter():
    data = tiny_dataset(classes=2, per_class=40, seed=3)
    mu = data.train.images[data.train.labels == 0].mean(0)
    gaps = {}
    for cls in (Herding, KCenter):
        release = distill(cls, data, ipc=5)
        gaps[cls.name] = (release.images[release.labels == 0].mean(0) - mu).norm().item()
    assert gaps["herding"] < gaps["kcenter"]


def test_nn_distance_attack_sees_copied_members():
    data = tiny_dataset(classes=2, per_class=30)
    copied = attack(NNDistance, data, distill(Herding, data, ipc=30))  # the whole training set
    auc = next(r for r in copied if r.measure == "auc")
    assert auc.value == 1.0 and auc.n == len(data.train) + len(data.val) + len(data.test)
