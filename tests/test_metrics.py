"""The six similarity metrics against reference implementations, and the scoring helpers behind every table.

Tolerances: SSIM within 1e-4 of scikit-image (float32 against float64); PSNR
within 5e-3 dB (piq adds 1e-8 to the MSE); EMD within 1e-9 of SciPy (float64
histograms); NCC within 1e-6 of NumPy's float64 correlation.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from privbench.api import (
    ImageScores,
    Metric,
    MetricUnavailable,
    ResultRow,
    UserError,
    score_images,
    summarise_scores,
)
from privbench.engine import metric_instances
from privbench.plugins import get_registry

BUILTINS = {"ssim": True, "psnr": True, "fsim": True, "ncc": True, "lpips": False, "emd": False}


def smooth_images(n: int, channels: int = 1, size: int = 28, seed: int = 0) -> torch.Tensor:
    """Random images with some spatial structure (blurred noise, stretched to [0.1, 0.9])."""
    g = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.rand(n, channels, size + 4, size + 4, generator=g), 5, stride=1)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (0.1 + 0.8 * (x - lo) / (hi - lo)).contiguous()


def noisy(x: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


def blurred(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    k = (k[:, None] * k[None, :]) / 256
    c = x.shape[1]
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k.expand(c, 1, 5, 5), groups=c).clamp(0, 1)


def shifted(x: torch.Tensor) -> torch.Tensor:
    return torch.roll(x, shifts=(2, 1), dims=(2, 3))


DISTORTIONS = {
    "random": lambda x: smooth_images(x.shape[0], x.shape[1], x.shape[-1], seed=7),
    "noise": lambda x: noisy(x, 0.05),
    "blur": blurred,
    "shift": shifted,
}


@pytest.fixture
def metrics():
    return metric_instances(get_registry(), "cpu", [n for n in BUILTINS if n != "lpips"])


def per_image(metric: Metric, reference: torch.Tensor, candidate: torch.Tensor) -> np.ndarray:
    values = metric.score(reference, candidate)
    assert values.shape == (reference.shape[0],)
    return values.numpy()


def grey_levels_histogram(img: np.ndarray) -> np.ndarray:
    levels = np.clip(np.round(img.ravel() * 255), 0, 255).astype(int)
    return np.bincount(levels, minlength=256) / levels.size


# --------------------------------------------------------------------------- registration


def test_the_six_metrics_are_registered_with_their_direction():
    registry = get_registry()
    for name, higher in BUILTINS.items():
        cls = registry.get("metric", name)
        assert cls.higher_is_better is higher, name
        assert cls.Config().batch_size >= 1


def test_loading_the_metric_plugins_and_the_api_does_not_import_torch():
    code = (
        "import sys; import privbench.api; from privbench.plugins import _entry_points, load_registry; "
        "eps = [ep for ep in _entry_points() if ep.value.startswith('privbench_builtins.metrics.')]; "
        "r = load_registry(eps); names = [x.name for x in r.available('metric')]; "
        "assert {'ssim','psnr','fsim','lpips','ncc','emd'} <= set(names), names; "
        "heavy = [m for m in ('torch', 'piq', 'lpips', 'ot') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------- reference implementations


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("distortion", sorted(DISTORTIONS))
def test_ssim_and_psnr_agree_with_scikit_image(metrics, channels, distortion):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    ref = smooth_images(4, channels)
    cand = DISTORTIONS[distortion](ref)
    ssim = per_image(metrics["ssim"], ref, cand)
    psnr = per_image(metrics["psnr"], ref, cand)
    r, c = ref.double().numpy(), cand.double().numpy()
    for i in range(ref.shape[0]):
        # Wang et al.'s definition: Gaussian window (sigma 1.5, 11 x 11), population covariance.
        expected = structural_similarity(r[i], c[i], data_range=1.0, channel_axis=0, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False)
        assert ssim[i] == pytest.approx(expected, abs=1e-4)
        assert psnr[i] == pytest.approx(peak_signal_noise_ratio(r[i], c[i], data_range=1.0), abs=5e-3)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("distortion", sorted(DISTORTIONS))
def test_emd_equals_scipy_wasserstein_on_the_same_histograms(metrics, channels, distortion):
    from scipy.stats import wasserstein_distance

    ref = smooth_images(4, channels)
    cand = DISTORTIONS[distortion](ref)
    emd = per_image(metrics["emd"], ref, cand)
    levels = np.arange(256)
    for i in range(ref.shape[0]):
        hx, hy = grey_levels_histogram(ref[i].numpy()), grey_levels_histogram(cand[i].numpy())
        assert emd[i] == pytest.approx(wasserstein_distance(levels, levels, hx, hy), abs=1e-9)


def test_emd_gpu_path_matches_the_cpu_path():
    """The batched torch formulation used on a GPU, run here on CPU tensors, agrees with the per-pair solver."""
    from privbench_builtins.metrics.emd import emd_batched, emd_per_pair

    ref = smooth_images(6, 3)
    cand = noisy(ref, 0.1)
    torch.testing.assert_close(emd_batched(ref, cand), emd_per_pair(ref, cand), atol=1e-9, rtol=0)


def test_emd_is_in_grey_levels():
    black, white = torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16)
    grey = torch.full((1, 1, 16, 16), 10 / 255)
    emd = get_registry().get("metric", "emd")()
    assert emd.score(black, white).item() == pytest.approx(255.0)
    assert emd.score(black, grey).item() == pytest.approx(10.0)
    assert emd.score(black, black).item() == 0.0


def test_ncc_matches_pearson_correlation_and_its_invariances(metrics):
    ref = smooth_images(5, 3)
    ncc = metrics["ncc"]
    cand = DISTORTIONS["noise"](ref)
    expected = [np.corrcoef(ref[i].double().numpy().ravel(), cand[i].double().numpy().ravel())[0, 1] for i in range(5)]
    np.testing.assert_allclose(per_image(ncc, ref, cand), expected, atol=1e-6)
    np.testing.assert_allclose(per_image(ncc, ref, ref), 1.0, atol=1e-6)
    np.testing.assert_allclose(per_image(ncc, ref, 1 - ref), -1.0, atol=1e-6)
    scaled = 0.5 * ref + 0.3  # contrast and brightness change, still inside [0, 1]
    np.testing.assert_allclose(per_image(ncc, ref, scaled), 1.0, atol=1e-6)
    np.testing.assert_allclose(per_image(ncc, cand, 0.5 * ref + 0.3), per_image(ncc, cand, ref), atol=1e-6)


def test_ncc_of_constant_images_is_defined(metrics):
    flat_a, flat_b = torch.full((1, 1, 16, 16), 0.2), torch.full((1, 1, 16, 16), 0.7)
    textured = smooth_images(1, size=16)
    ncc = metrics["ncc"]
    assert per_image(ncc, flat_a, flat_b)[0] == 1.0
    assert per_image(ncc, flat_a, flat_a)[0] == 1.0
    assert per_image(ncc, flat_a, textured)[0] == 0.0
    assert per_image(ncc, textured, flat_b)[0] == 0.0


def test_identical_images_score_as_perfect_copies(metrics):
    for channels in (1, 3):
        ref = smooth_images(3, channels)
        for name in ("ssim", "fsim", "ncc"):
            np.testing.assert_allclose(per_image(metrics[name], ref, ref), 1.0, atol=1e-5, err_msg=name)
        assert np.all(per_image(metrics["emd"], ref, ref) == 0)
        np.testing.assert_allclose(per_image(metrics["psnr"], ref, ref), 80.0, atol=1e-4)
    flat = torch.full((2, 1, 16, 16), 0.4)
    np.testing.assert_allclose(per_image(metrics["fsim"], flat, flat), 1.0, atol=1e-5)
    np.testing.assert_allclose(per_image(metrics["ssim"], flat, flat), 1.0, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_every_metric_ranks_light_noise_closer_than_heavy_noise(metrics, channels):
    ref = smooth_images(4, channels)
    light, heavy = noisy(ref, 0.03, seed=3), noisy(ref, 0.25, seed=3)
    for name, metric in metrics.items():
        a, b = per_image(metric, ref, light), per_image(metric, ref, heavy)
        closer = a > b if metric.higher_is_better else a < b
        assert closer.all(), (name, a, b)


def test_batches_do_not_change_values():
    registry = get_registry()
    ref = smooth_images(7, 1, size=16)
    cand = DISTORTIONS["blur"](ref)
    names = ["ssim", "psnr", "fsim", "ncc", "emd"]
    whole = metric_instances(registry, "cpu", names)
    small = metric_instances(registry, "cpu", names, {n: {"batch_size": 3} for n in names})
    for name in names:
        np.testing.assert_allclose(per_image(small[name], ref, cand), per_image(whole[name], ref, cand),
                                   atol=1e-6, err_msg=name)


def test_ssim_window_shrinks_to_fit_small_images(metrics):
    ref = smooth_images(2, size=8)
    values = per_image(metrics["ssim"], ref, noisy(ref, 0.05))
    assert np.isfinite(values).all() and (values < 1).all()


def test_bad_configs_are_refused_with_one_line():
    registry = get_registry()
    with pytest.raises(UserError, match="batch_size"):
        metric_instances(registry, "cpu", ["ssim"], {"ssim": {"batch_size": "0"}})
    with pytest.raises(UserError, match="kernel_size"):
        metric_instances(registry, "cpu", ["ssim"], {"ssim": {"kernel_size": "4"}})
    with pytest.raises(UserError, match="net must be one of"):
        metric_instances(registry, "cpu", ["lpips"], {"lpips": {"net": "resnet"}})


# --------------------------------------------------------------------------- scoring helpers


class _Broken(Metric):
    name = "broken"
    higher_is_better = False

    def check_available(self):
        raise MetricUnavailable("needs a file at /nowhere")


class _Halves(Metric):
    name = "halves"
    higher_is_better = True

    def score(self, reference, candidate):
        out = torch.arange(reference.shape[0], dtype=torch.float32)
        out[0] = float("nan")
        return out


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda r: (r, r[:3]), "has 4 images but candidate has 3"),
        (lambda r: (r, r[:, :, :, :15]), "1 x 16 x 16"),
        (lambda r: (r, r.repeat(1, 3, 1, 1)), "3 x 16 x 16"),
        (lambda r: (r, r * 2), "outside [0, 1]"),
        (lambda r: (r - 0.5, r), "reference pixel values lie outside [0, 1]"),
        (lambda r: (r, torch.where(r > 0.5, float("nan"), r)), "NaN"),
        (lambda r: (r, r[:0]), "has 4 images but candidate has 0"),
        (lambda r: (r[0], r[0]), "N x C x H x W"),
        (lambda r: (r, (r * 255).to(torch.uint8)), "dtype"),
    ],
)
def test_score_images_refuses_bad_input_with_one_line(metrics, make, needle):
    reference, candidate = make(smooth_images(4, size=16))
    with pytest.raises(UserError) as info:
        score_images(metrics, reference, candidate)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_unavailable_metric_is_a_marker_and_the_others_score(metrics):
    ref = smooth_images(4, size=16)
    scores = score_images({"broken": _Broken(), "ncc": metrics["ncc"]}, ref, noisy(ref, 0.05))
    assert isinstance(scores["broken"], ImageScores)
    assert not scores["broken"].available and scores["broken"].reason == "needs a file at /nowhere"
    assert scores["ncc"].available and scores["ncc"].values.dtype == torch.float64
    rows = summarise_scores(scores, "reconstruction", resamples=200, seed=3)
    assert [r.measure for r in rows] == ["reconstruction.broken", "reconstruction.ncc"]
    broken, ncc = rows
    assert broken.status == "unavailable" and broken.value is None and broken.higher_is_better is False
    assert broken.detail["reason"] == "needs a file at /nowhere"
    assert ncc.status == "ok" and ncc.n == 4 and ncc.higher_is_better is True
    assert ncc.ci_low <= ncc.value <= ncc.ci_high
    assert ncc.value == pytest.approx(float(scores["ncc"].values.mean()))


def test_summaries_are_seeded_and_count_what_they_average():
    values = torch.linspace(0, 1, 50, dtype=torch.float64)
    scores = {"ssim": ImageScores("ssim", True, values)}
    a = summarise_scores(scores, resamples=300, seed=5)
    assert a == summarise_scores(scores, resamples=300, seed=5)
    assert a != summarise_scores(scores, resamples=300, seed=6)
    assert a[0].measure == "ssim" and a[0].n == 50
    no_ci = summarise_scores(scores, resamples=0)[0]
    assert no_ci.ci_low is None and no_ci.value == pytest.approx(0.5)
    with pytest.raises(UserError, match="resamples"):
        summarise_scores(scores, resamples=-1)


def test_non_finite_values_are_dropped_and_counted():
    ref = smooth_images(5, size=16)
    rows = summarise_scores(score_images({"halves": _Halves()}, ref, ref), "x", resamples=50)
    assert rows[0].n == 4 and rows[0].detail == {"non_finite": 1}
    assert rows[0].value == pytest.approx(2.5)
    empty = summarise_scores({"nan": ImageScores("nan", True, torch.tensor([float("nan")] * 3))})
    assert empty[0].status == "unavailable" and "no finite value" in empty[0].detail["reason"]


def test_mean_rows_are_result_rows(metrics):
    ref = smooth_images(6, size=16)
    rows = summarise_scores(score_images(metrics, ref, blurred(ref)), "memorisation", resamples=100)
    assert all(isinstance(r, ResultRow) and r.status == "ok" and r.n == 6 for r in rows)
    assert {r.measure: r.higher_is_better for r in rows} == {
        f"memorisation.{n}": h for n, h in BUILTINS.items() if n != "lpips"
    }


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_equals_piqs_public_function(metrics, channels):
    import piq

    ref = smooth_images(5, channels)
    cand = DISTORTIONS["noise"](ref)
    expected = piq.ssim(cand, ref, data_range=1.0, reduction="none", downsample=False)
    np.testing.assert_allclose(per_image(metrics["ssim"], ref, cand), expected.numpy(), atol=1e-6)
