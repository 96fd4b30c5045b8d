"""``aia``: attribute inference. Does the released model help infer a patient's sensitive attribute?

The attacker holds a partial record of a patient (the image with a region
masked, or downsampled) and query access to the model trained on the release,
and predicts a sensitive attribute: a dataset attribute column where the data
has one (``attribute`` picks it), otherwise the diagnosis label. The attack
model (scikit-learn: standardised features, then logistic regression or a
small MLP) is fitted on auxiliary non-member data with known attributes (half
of the val split) and scored on members (the private training images):

* ``with_model.*``: features of the partial record plus the target model's
  log-probabilities on it;
* ``control.*``: the same attacker without the release: the partial record
  plus the outputs of an untrained network of the target's architecture (a
  placebo with as many numbers, learnt from nothing), so the difference is
  what training on the release adds, not a few extra nonlinear features;
* ``gain.auc``: with_model minus control AUC on the same members (paired
  bootstrap): what the release adds;
* ``*.nonmember_auc``: the same attackers scored on held-out non-members
  (half of the val split, see ``holdout``). Where the model helps members and
  non-members alike it is
  generalisation (the model is useful); only a with_model AUC on members above
  the non-member one is leakage specific to the patients in the private set.

AUC is one-vs-rest, macro-averaged over the attribute's values when there are
more than two; balanced accuracy predicts the most probable value (no
threshold to choose).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from privbench import hookimpl
from privbench.api import Attack, AuditTarget, ResultRow, RunContext

LABEL = "label"


@dataclass(frozen=True)
class AIAConfig:
    """Attribute inference settings.

    ``attribute``: a dataset attribute column, or ``label`` for the diagnosis;
    empty picks the first attribute column, else the label. ``partial``: what
    the attacker holds: ``mask`` hides ``mask_fraction`` of the image area
    (``mask_region``: a centred rectangle, where the lungs are on a chest
    X-ray, or a band at one edge); ``downsample`` keeps block means of
    ``downsample_factor`` pixels. ``feature_side``: the partial record enters
    the attack model block-averaged to at most this many pixels per side.
    ``attack_model``: ``logistic`` (regularised logistic regression, robust on
    a few hundred auxiliary records) or ``mlp`` (one hidden layer of 64).
    ``holdout``: the non-members the attackers are also scored on:
    ``val_half`` (default) fits the attacker on half of the val split and
    scores the other half, both from the training split's distribution;
    ``test`` fits on all of val and scores the test split, which on MedMNIST
    comes from another source, so a gap there may be distribution shift.
    ``max_members`` / ``max_nonmembers``: seeded caps on the patients scored
    (0 = all). ``target_*``: the target model of the utility protocol (see
    ``mia``). ``resamples``: bootstrap resamples per CI.
    """

    attribute: str = ""
    partial: Literal["mask", "downsample"] = "mask"
    mask_region: Literal["center", "top", "bottom", "left", "right"] = "center"
    mask_fraction: float = 0.5
    downsample_factor: int = 4
    feature_side: int = 16
    attack_model: Literal["logistic", "mlp"] = "logistic"
    holdout: Literal["val_half", "test"] = "val_half"
    max_members: int = 2000
    max_nonmembers: int = 2000
    target_model: str = "convnet"
    target_epochs: int = 1000
    target_width: int = 128
    target_depth: int = 3
    resamples: int = 1000

    def __post_init__(self) -> None:
        from privbench_builtins.attacks._options import check_target_fields

        if not 0 < self.mask_fraction < 1:
            raise ValueError(f"mask_fraction must lie strictly between 0 and 1, got {self.mask_fraction}")
        if self.downsample_factor < 2 or self.feature_side < 1:
            raise ValueError("downsample_factor must be at least 2 and feature_side at least 1")
        if self.max_members < 0 or self.max_nonmembers < 0 or self.resamples < 0:
            raise ValueError("max_members, max_nonmembers and resamples must not be negative")
        check_target_fields(self)


def resolve_attribute(dataset, name: str) -> str:
    from privbench.errors import UserError

    names = dataset.attribute_names
    if not name:
        return names[0] if names else LABEL
    if name != LABEL and name not in names:
        valid = ", ".join([LABEL, *names])
        raise UserError(f"aia: dataset {dataset.name!r} has no attribute {name!r}; valid: {valid}")
    return name


def attribute_values(split, name: str):
    return split.labels if name == LABEL else split.attributes[name].long().reshape(-1)


def auxiliary_and_held_out(dataset, attribute: str, holdout: str, seed: int):
    """The attacker's auxiliary records, and the non-members its AUC is compared on.

    ``val_half``: val split in two halves, each holding half of every attribute
    value (seeded); the attacker fits on one, the other is scored. Both halves
    come from the training split's distribution. ``test``: all of val to fit,
    the test split to score.
    """
    import numpy as np
    import torch

    if holdout == "test":
        return dataset.val, dataset.test, "test split"
    values = attribute_values(dataset.val, attribute).numpy()
    rng = np.random.default_rng(seed)
    first = np.zeros(values.size, dtype=bool)
    for value in np.unique(values):
        index = rng.permutation(np.flatnonzero(values == value))
        first[index[: (index.size + 1) // 2]] = True
    return (dataset.val.subset(torch.from_numpy(first)), dataset.val.subset(torch.from_numpy(~first)),
            "the other half of the val split")


def attribute_auc(y, proba, classes) -> float:
    """ROC AUC of predicted attribute probabilities: binary, or one-vs-rest macro over the values present."""
    import numpy as np

    from privbench_builtins.attacks._roc import RocCurves

    y = np.asarray(y)
    proba = np.asarray(proba)
    aucs = []
    pairs = [(1, classes[1])] if len(classes) == 2 else list(enumerate(classes))
    for k, value in pairs:
        positive = (y == value).astype(np.int64)
        if 0 < positive.sum() < y.size:
            aucs.append(RocCurves().auc(positive, proba[:, k]))
    return float(np.mean(aucs)) if aucs else float("nan")


class AttributeInference(Attack):
    """Attribute inference from a partial record, with and without the released model (control)."""

    name = "aia"
    Config = AIAConfig

    def run(self, target: AuditTarget, config: AIAConfig, ctx: RunContext) -> list[ResultRow]:
        import numpy as np
        import torch

        from privbench.training import predict_logits
        from privbench_builtins.attacks import _common as common
        from privbench_builtins.attacks import _partial

        common.require_images(target.release)
        dataset = target.dataset
        attribute = resolve_attribute(dataset, config.attribute)
        aux, held_out, held_out_name = auxiliary_and_held_out(dataset, attribute, config.holdout,
                                                               common.seed_for(ctx, "aia", "holdout"))
        members = target.members.subset(
            common.sample_index(len(target.members), config.max_members, common.seed_for(ctx, "aia", "members")))
        nonmembers = held_out.subset(
            common.sample_index(len(held_out), config.max_nonmembers, common.seed_for(ctx, "aia", "nonmembers")))
        fill = aux.images.mean(dim=(0, 2, 3))

        def partial(images):
            if config.partial == "mask":
                return _partial.masked(images, config.mask_region, config.mask_fraction, fill)
            return _partial.downsampled(images, config.downsample_factor)

        spec = common.target_spec(config)
        model = common.target_model(target.release, dataset, spec, ctx)
        placebo = _partial.untrained_like(spec, dataset, aux.images, common.seed_for(ctx, "aia", "placebo"), ctx)
        features = {}
        for key, split in (("aux", aux), ("members", members), ("nonmembers", nonmembers)):
            record = partial(split.images)
            pixels = _partial.pixel_features(record, config.feature_side)
            outputs = predict_logits(model, record, ctx).log_softmax(1)
            untrained = predict_logits(placebo, record, ctx).log_softmax(1)
            features[key] = {"control": torch.cat([pixels, untrained], 1).double().numpy(),
                             "with_model": torch.cat([pixels, outputs], 1).double().numpy()}
        y = {"aux": attribute_values(aux, attribute).numpy(), "members": attribute_values(members, attribute).numpy(),
             "nonmembers": attribute_values(nonmembers, attribute).numpy()}
        classes = np.unique(y["aux"])
        where = {
            "attribute": attribute,
            "partial_record": (f"mask {config.mask_region} {config.mask_fraction:g} of the area"
                               if config.partial == "mask" else f"downsampled x{config.downsample_factor}"),
            "attack_model": config.attack_model,
            "auxiliary": f"{dataset.name} val split{', one half' if config.holdout == 'val_half' else ''} "
                         f"({len(aux)} non-members)",
            "nonmembers_scored_from": held_out_name,
            "attribute_values": [int(c) for c in classes],
        }
        measures = ["with_model.auc", "control.auc", "with_model.balanced_accuracy", "control.balanced_accuracy",
                    "gain.auc", "with_model.nonmember_auc", "control.nonmember_auc"]
        if classes.size < 2:
            reason = f"the auxiliary data holds only one value of {attribute!r}"
            return [ResultRow.unavailable(m, reason, higher_is_better=True) for m in measures]
        proba = {}
        for side in ("with_model", "control"):
            clf = self._attack_model(config, common.seed_for(ctx, "aia", side))
            clf.fit(features["aux"][side], y["aux"])
            proba[side] = {k: clf.predict_proba(features[k][side]) for k in ("members", "nonmembers")}
        return self._rows(y, proba, classes, where, config, common.seed_for(ctx, "aia", "bootstrap"))

    @staticmethod
    def _attack_model(config: AIAConfig, seed: int):
        from sklearn.linear_model import LogisticRegression
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if config.attack_model == "mlp":
            head = MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, max_iter=500, early_stopping=True,
                                 random_state=seed)
        else:
            head = LogisticRegression(C=1.0, max_iter=2000)
        return make_pipeline(StandardScaler(), head)

    @staticmethod
    def _rows(y, proba, classes, where, config, seed) -> list[ResultRow]:
        import math
        import warnings

        import numpy as np
        from sklearn.metrics import balanced_accuracy_score

        def auc(yy, pp):
            return attribute_auc(yy, pp, classes)

        def bal(yy, pp):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a value never predicted is not an error here
                return float(balanced_accuracy_score(yy, classes[np.argmax(pp, axis=1)]))

        def gain(yy, p_model, p_control):
            return auc(yy, p_model) - auc(yy, p_control)

        rows = []
        counts = {"members": int(y["members"].size), "nonmembers": int(y["nonmembers"].size)}

        def boot(measure, fn, *arrays, group="members", higher=True):
            row = ResultRow.bootstrap(measure, fn, *arrays, higher_is_better=higher, strata=y[group],
                                      resamples=config.resamples, seed=seed, detail={**where, **counts,
                                                                                      "scored_on": group})
            if row.value is None or not math.isfinite(row.value):
                return ResultRow.unavailable(measure, f"undefined: the {group} hold fewer than two values of "
                                             f"{where['attribute']!r}", higher_is_better=higher)
            return row

        for side in ("with_model", "control"):
            rows.append(boot(f"{side}.auc", auc, y["members"], proba[side]["members"]))
        for side in ("with_model", "control"):
            rows.append(boot(f"{side}.balanced_accuracy", bal, y["members"], proba[side]["members"]))
        rows.append(boot("gain.auc", gain, y["members"], proba["with_model"]["members"], proba["control"]["members"]))
        for side in ("with_model", "control"):
            rows.append(boot(f"{side}.nonmember_auc", auc, y["nonmembers"], proba[side]["nonmembers"],
                             group="nonmembers"))
        return rows


@hookimpl
def register_attacks(register):
    register(AttributeInference)
