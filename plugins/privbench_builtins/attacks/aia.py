"""``aia``: attribute inference. Does the release let an attacker infer a patient's sensitive attribute?

The attacker holds a partial record of a patient (the image with a region
masked, or downsampled) and query access to the model trained on the release,
and predicts a sensitive attribute: a dataset attribute column where the data
has one (``attribute`` picks it), otherwise the diagnosis label. The attack
model (scikit-learn: standardised features, then logistic regression or a
small MLP) is fitted on auxiliary non-member data with known attributes (half
of the val split) and scored on members (the private training images) and on
non-member controls (the other half of the val split), as many per attribute
value, none a copy of a training image:

* leakage, in the sense of Anonymeter (Giomi et al. 2023): the attack's
  success rate on members against its success rate on the controls,
  ``success.members`` and ``success.controls`` (exact CIs), and the risk
  ``(r_members - r_controls) / (1 - r_controls)`` (``risk``, bootstrap CI).
  An attack that infers the attribute as well for people outside the private
  set learnt something general from the release (its utility), not something
  about its patients;
* ``with_model.*``: features of the partial record plus the target model's
  log-probabilities on it (``with_model.auc`` on members: the paper's
  figure; ``with_model.control_auc`` on the controls);
* ``baseline.*``: the same attacker without the release: the partial record
  plus the outputs of an untrained network of the target's architecture (a
  placebo with as many numbers, learnt from nothing); ``gain.auc``:
  with_model minus baseline AUC on the same members (paired bootstrap), what
  the release adds to the attacker.

When the attribute is the diagnosis label itself, the attack is the released
model doing its job on a partial image: its figures mix utility with leakage,
and the rows say so (``detail.mixes_utility``); the risk row is the part
specific to members.

AUC is one-vs-rest, macro-averaged over the attribute's values when there are
more than two; balanced accuracy and success predict the most probable value
(no threshold to choose).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from privbench import hookimpl
from privbench.api import Attack, AuditTarget, ResultRow, RunContext

from privbench_builtins.attacks._options import TargetOptions

LABEL = "label"


@dataclass(frozen=True)
class AIAConfig(TargetOptions):
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
    ``holdout``: the non-member controls: ``val_half`` (default) fits the
    attacker on half of the val split and scores the other half, both from
    the training split's distribution; ``test`` fits on all of val and scores
    the test split, which on MedMNIST comes from another source, so a gap
    there may be distribution shift. ``duplicate_rms``: auxiliary records and
    controls within this RMS pixel distance of a training image are left out.
    ``max_members`` / ``max_nonmembers``: seeded caps on the patients scored
    (0 = all). ``target_*``: the target model's recipe (see ``mia``).
    ``resamples``: bootstrap resamples per CI.
    """

    attribute: str = ""
    partial: Literal["mask", "downsample"] = "mask"
    mask_region: Literal["center", "top", "bottom", "left", "right"] = "center"
    mask_fraction: float = 0.5
    downsample_factor: int = 4
    feature_side: int = 16
    attack_model: Literal["logistic", "mlp"] = "logistic"
    holdout: Literal["val_half", "test"] = "val_half"
    duplicate_rms: float = 0.01
    max_members: int = 2000
    max_nonmembers: int = 2000

    def __post_init__(self) -> None:
        from privbench_builtins.attacks._options import check_population_fields, check_target_fields

        if not 0 < self.mask_fraction < 1:
            raise ValueError(f"mask_fraction must lie strictly between 0 and 1, got {self.mask_fraction}")
        if self.downsample_factor < 2 or self.feature_side < 1:
            raise ValueError("downsample_factor must be at least 2 and feature_side at least 1")
        if self.max_members < 0 or self.max_nonmembers < 0 or self.resamples < 0:
            raise ValueError("max_members, max_nonmembers and resamples must not be negative")
        check_population_fields(self)
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


def auxiliary_and_held_out(dataset, attribute: str, holdout: str, seed: int, kept: dict):
    """The attacker's auxiliary records, and the non-member controls, none a copy of a training image.

    ``val_half``: the val split in two halves, each holding half of every
    attribute value (seeded); the attacker fits on one, the other is scored.
    Both halves come from the training split's distribution. ``test``: all of
    val to fit, the test split to score. ``kept`` maps a split to the rows
    that are not copies of a training image.
    """
    import numpy as np
    import torch

    val = dataset.val.subset(torch.from_numpy(kept["val"]))
    if holdout == "test":
        return val, dataset.test.subset(torch.from_numpy(kept["test"])), "test split"
    values = attribute_values(val, attribute).numpy()
    rng = np.random.default_rng(seed)
    first = np.zeros(values.size, dtype=bool)
    for value in np.unique(values):
        index = rng.permutation(np.flatnonzero(values == value))
        first[index[: (index.size + 1) // 2]] = True
    return (val.subset(torch.from_numpy(first)), val.subset(torch.from_numpy(~first)),
            "the other half of the val split")


def attribute_auc(y, proba, classes) -> float:
    """ROC AUC of predicted attribute probabilities: binary, or one-vs-rest macro over the values present."""
    import numpy as np

    from privbench_builtins.attacks._roc import rank_aucs

    y = np.asarray(y)
    proba = np.asarray(proba)
    columns = [1] if len(classes) == 2 else list(range(len(classes)))
    positive = y[:, None] == np.asarray(classes)[columns][None, :]
    aucs = rank_aucs(positive, proba[:, columns])
    aucs = aucs[np.isfinite(aucs)]  # a value absent from the sample has no AUC
    return float(aucs.mean()) if aucs.size else float("nan")


MEASURES = ("with_model.auc", "baseline.auc", "with_model.balanced_accuracy", "baseline.balanced_accuracy",
            "gain.auc", "with_model.control_auc", "baseline.control_auc", "success.members", "success.controls",
            "risk")


class AttributeInference(Attack):
    """Attribute inference from a partial record: members against controls (risk), with and without the model."""

    name = "aia"
    Config = AIAConfig

    def run(self, target: AuditTarget, config: AIAConfig, ctx: RunContext) -> list[ResultRow]:
        import numpy as np
        import torch

        from privbench.training import predict_logits
        from privbench_builtins.attacks import _common as common
        from privbench_builtins.attacks import _partial
        from privbench_builtins.attacks._population import build_population

        common.require_images(target.release)
        dataset = target.dataset
        attribute = resolve_attribute(dataset, config.attribute)
        splits = ["val", "test"] if config.holdout == "test" else ["val"]
        population = build_population(dataset, splits, config.duplicate_rms, ctx)
        kept = {s: population.split_index[population.source == s] for s in splits}
        aux, held_out, held_out_name = auxiliary_and_held_out(dataset, attribute, config.holdout,
                                                               common.seed_for(ctx, "aia", "holdout"), kept)
        members = target.members.subset(
            common.sample_index(len(target.members), config.max_members, common.seed_for(ctx, "aia", "members")))
        m_idx, c_idx = common.matched_candidates(attribute_values(members, attribute),
                                                 attribute_values(held_out, attribute), 0, config.max_nonmembers,
                                                 common.seed_for(ctx, "aia", "controls"))
        matched, controls = members.subset(m_idx), held_out.subset(c_idx)
        fill = aux.images.mean(dim=(0, 2, 3))

        def partial(images):
            if config.partial == "mask":
                return _partial.masked(images, config.mask_region, config.mask_fraction, fill)
            return _partial.downsampled(images, config.downsample_factor)

        spec = common.target_spec(config)
        model = common.target_model(target.release, dataset, spec, ctx)
        placebo = _partial.untrained_like(spec, dataset, aux.images, common.seed_for(ctx, "aia", "placebo"), ctx)
        groups = {"aux": aux, "members": members, "matched": matched, "controls": controls}
        features = {}
        for key, split in groups.items():
            record = partial(split.images)
            pixels = _partial.pixel_features(record, config.feature_side)
            outputs = predict_logits(model, record, ctx).log_softmax(1)
            untrained = predict_logits(placebo, record, ctx).log_softmax(1)
            features[key] = {"baseline": torch.cat([pixels, untrained], 1).double().numpy(),
                             "with_model": torch.cat([pixels, outputs], 1).double().numpy()}
        y = {k: attribute_values(split, attribute).numpy() for k, split in groups.items()}
        classes = np.unique(y["aux"])
        where = {
            "attribute": attribute,
            "mixes_utility": attribute == LABEL,
            "partial_record": (f"mask {config.mask_region} {config.mask_fraction:g} of the area"
                               if config.partial == "mask" else f"downsampled x{config.downsample_factor}"),
            "attack_model": config.attack_model,
            "auxiliary": f"{dataset.name} val split{', one half' if config.holdout == 'val_half' else ''} "
                         f"({len(aux)} non-members)",
            "controls_from": held_out_name,
            "controls_removed_as_copies_of_training_images":
                population.facts["nonmembers_removed_as_copies_of_training_images"],
            "attribute_values": [int(c) for c in classes],
            "target_recipe": spec.recipe(len(target.release)),
        }
        if attribute == LABEL:
            where["note"] = ("the attribute is the diagnosis label: inferring it from a partial image is what the "
                             "released model is for, so these figures mix utility with leakage; the risk (members "
                             "against controls) is the part specific to the private set")
        ctx.record("aia", {k: v for k, v in where.items() if k != "note"})
        if classes.size < 2:
            reason = f"the auxiliary data holds only one value of {attribute!r}"
            return [ResultRow.unavailable(m, reason, higher_is_better=True, game="release") for m in MEASURES]
        proba = {}
        for side in ("with_model", "baseline"):
            clf = self._attack_model(config, common.seed_for(ctx, "aia", side))
            clf.fit(features["aux"][side], y["aux"])
            proba[side] = {k: clf.predict_proba(features[k][side]) for k in ("members", "matched", "controls")}
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
        from privbench_builtins.attacks._aia_rows import attribute_rows

        return attribute_rows(y, proba, classes, where, config, seed)


@hookimpl
def register_attacks(register):
    register(AttributeInference)
