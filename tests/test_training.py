"""The one training loop: it learns, it is reproducible, it scores with scikit-learn."""

from __future__ import annotations

import math
from contextlib import contextmanager

import pytest
import torch

from privbench.api import RunContext
from privbench.data import load_dataset
from privbench.errors import UserError
from privbench.nets import make_model
from privbench.training import (
    TrainConfig,
    classification_scores,
    derive_seed,
    predict_logits,
    predict_proba,
    train_classifier,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


class Recorder:
    def __init__(self):
        self.tasks = []

    @contextmanager
    def task(self, description, total=None):
        record = {"description": description, "total": total, "steps": 0, "fields": []}
        self.tasks.append(record)

        class T:
            def advance(self, steps=1, **fields):
                record["steps"] += steps
                record["fields"].append(fields)

        yield T()

    def warn(self, message):
        pass


def test_convnet_learns_digits(digits):
    progress = Recorder()
    ctx = RunContext(progress=progress)
    model = make_model("convnet", 1, 10, 16, seed=0, width=32)
    config = TrainConfig(epochs=3, batch_size=32, lr=0.05)
    model = train_classifier(model, digits.train.images, digits.train.labels, config, ctx,
                             generator=torch.Generator().manual_seed(0), progress_label="digits")
    assert not model.training
    probs = predict_proba(model, digits.test.images, ctx, batch_size=100)
    assert probs.dtype == torch.float32 and probs.device.type == "cpu"
    assert torch.allclose(probs.sum(1), torch.ones(len(digits.test)), atol=1e-5)
    scores = classification_scores(probs, digits.test.labels, 10)
    assert scores["accuracy"] > 0.6  # chance is 0.1
    assert scores["balanced_accuracy"] > 0.6 and scores["roc_auc"] > 0.9
    assert progress.tasks[0]["description"] == "digits" and progress.tasks[0]["steps"] == 3
    assert set(progress.tasks[0]["fields"][-1]) == {"loss", "acc"}


def test_same_seed_same_weights(digits):
    x, y = digits.train.images[:96], digits.train.labels[:96]
    config = TrainConfig(epochs=2, batch_size=32)

    def run(seed):
        model = make_model("convnet", 1, 10, 16, seed=seed, width=8)
        return train_classifier(model, x, y, config, RunContext(), generator=torch.Generator().manual_seed(seed))

    a, b, c = run(1), run(1), run(2)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))


def test_lr_decays_at_half_the_epochs():
    assert TrainConfig(epochs=10).decay_epoch == 5
    assert TrainConfig(epochs=1).decay_epoch == 1
    assert TrainConfig(epochs=10, lr_decay_at=1.0).decay_epoch is None


def test_streamed_inputs_match_staged_inputs(digits, monkeypatch):
    import privbench.training as training

    x, y = digits.train.images[:64], digits.train.labels[:64]
    config = TrainConfig(epochs=1, batch_size=16)

    def run():
        model = make_model("convnet", 1, 10, 16, seed=0, width=8)
        return train_classifier(model, x, y, config, RunContext(), generator=torch.Generator().manual_seed(0))

    staged = run()
    monkeypatch.setattr(training, "ON_DEVICE_LIMIT", 0)
    streamed = run()
    assert all(torch.equal(a, b) for a, b in zip(staged.state_dict().values(), streamed.state_dict().values()))
    assert predict_logits(streamed, x[:0], RunContext()).shape[0] == 0


def test_bad_config_and_inputs():
    with pytest.raises(UserError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(UserError, match="unknown augmentation"):
        TrainConfig(epochs=1, dsa_strategy="warp")
    model = make_model("convnet", 1, 2, 16, width=4)
    with pytest.raises(UserError, match="empty"):
        train_classifier(model, torch.zeros(0, 1, 16, 16), torch.zeros(0, dtype=torch.long), TrainConfig(epochs=1), RunContext())


def test_classification_scores_binary_multiclass_and_missing_classes():
    labels = torch.tensor([0, 0, 1, 1])
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    s = classification_scores(probs, labels, 2)
    assert s["accuracy"] == 0.75 and s["balanced_accuracy"] == 0.75 and s["roc_auc"] == 1.0
    three = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1]])
    assert classification_scores(three, torch.tensor([0, 1, 2, 0]), 3)["roc_auc"] == 1.0
    partial = classification_scores(three[:2], torch.tensor([0, 1]), 3)
    assert partial["roc_auc"] == 1.0
    assert math.isnan(classification_scores(three[:1], torch.tensor([0]), 3)["roc_auc"])


def test_derive_seed_is_stable_and_separates_purposes():
    assert derive_seed(3, "init") == derive_seed(3, "init")
    assert derive_seed(3, "init") != derive_seed(3, "batches") != derive_seed(4, "init")
    assert 0 <= derive_seed(3, "init") < 2**63


def test_bf16_training_learns_and_keeps_float32_weights(digits):
    x, y = digits.train.images[:200], digits.train.labels[:200]
    ctx = RunContext()
    runs = {}
    for precision in ("fp32", "bf16"):
        model = make_model("convnet", 1, 10, 16, seed=0, width=16, depth=2)
        config = TrainConfig(epochs=15, batch_size=64, dsa=False, precision=precision)
        runs[precision] = train_classifier(model, x, y, config, ctx, generator=torch.Generator().manual_seed(1))
    weights = [dict(m.named_parameters())["classifier.weight"] for m in runs.values()]
    assert all(w.dtype == torch.float32 for w in weights) and not torch.equal(*weights)  # bf16 really ran
    scores = {p: classification_scores(predict_proba(m, digits.test.images, ctx), digits.test.labels, 10)["accuracy"]
              for p, m in runs.items()}
    assert scores["bf16"] > 0.6 and abs(scores["bf16"] - scores["fp32"]) < 0.15, scores
    with pytest.raises(UserError, match="precision"):
        TrainConfig(epochs=1, precision="fp16")
