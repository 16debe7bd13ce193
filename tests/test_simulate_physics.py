"""Physics sanity of the simulated microscope: each test fails on a plausible wrong model."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from lightmycells.simulate import (
    CellParams,
    Fluorescence,
    Optics,
    Scene,
    expected_fluorescence,
    make_scene,
    noisy_pair,
    transmitted_planes,
)
from lightmycells.simulate.fluorescence import psf_sigma_px
from lightmycells.vocab import ORGANELLES, Modality, Organelle

PS = 0.1  # µm
N = 128
OPTICS = Optics(pixel_size_um=PS, na=0.9, wavelength_um=0.55, condenser_na=0.3)


def _radius_um():
    y, x = np.mgrid[:N, :N]
    return np.hypot(y - N / 2, x - N / 2).astype(np.float32) * PS


def _phase_scene(opd_um: np.ndarray) -> Scene:
    zeros = np.zeros_like(opd_um)
    return Scene(PS, {o: zeros for o in ORGANELLES}, zeros, opd_um.astype(np.float32), zeros)


def _bump(peak_um=0.05, sigma_um=1.0) -> Scene:
    """A pure phase object: a Gaussian bump of optical path, no absorption."""
    return _phase_scene(peak_um * np.exp(-0.5 * (_radius_um() / sigma_um) ** 2))


def test_phase_object_invisible_in_focus_and_visible_defocused_with_opposite_signs():
    below, focus, above = transmitted_planes(_bump(), OPTICS, Modality.BF, [-2.0, 0.0, 2.0])
    centre = (slice(N // 2 - 3, N // 2 + 3),) * 2
    assert np.abs(focus - 1).max() < 0.01  # a pure phase object is (nearly) invisible
    assert np.abs(below - 1).max() > 0.05 and np.abs(above - 1).max() > 0.05
    # transport of intensity: the bump focuses light on one side of focus, spreads it on the other
    assert np.sign(below[centre].mean() - 1) == -np.sign(above[centre].mean() - 1)
    assert np.corrcoef((below - 1).ravel(), (above - 1).ravel())[0, 1] < -0.9


def test_absorbing_object_is_visible_in_focus():
    zeros = np.zeros((N, N), np.float32)
    absorber = 0.1 * (_radius_um() < 1.0)
    scene = Scene(PS, {o: zeros for o in ORGANELLES}, zeros, zeros, absorber.astype(np.float32))
    (focus,) = transmitted_planes(scene, OPTICS, Modality.BF, [0.0])
    assert focus[N // 2, N // 2] < 0.9


def test_defocus_contrast_grows_with_distance():
    planes = transmitted_planes(_bump(), OPTICS, Modality.BF, [0.0, 0.5, 1.0, 2.0])
    contrast = [float(np.abs(p - 1).max()) for p in planes]
    assert contrast == sorted(contrast) and contrast[-1] > 5 * contrast[0]


def test_dic_relief_flips_with_the_shear():
    flipped = replace(OPTICS, dic_shear_um=-OPTICS.dic_shear_um)
    (a,) = transmitted_planes(_bump(), OPTICS, Modality.DIC, [0.0])
    (b,) = transmitted_planes(_bump(), flipped, Modality.DIC, [0.0])
    assert np.abs(a - 1).max() > 0.1
    assert np.corrcoef((a - 1).ravel(), (b - 1).ravel())[0, 1] < -0.9
    # relief: one side of the bump bright, the other dark, along the shear direction
    d = 8
    step = np.round(np.array([np.sin(OPTICS.dic_angle), np.cos(OPTICS.dic_angle)]) * d).astype(int)
    c = np.array([N // 2, N // 2])
    plus, minus = a[tuple(c + step)] - 1, a[tuple(c - step)] - 1
    assert plus * minus < 0 and min(abs(plus), abs(minus)) > 0.05


def test_phase_contrast_dark_object_with_bright_halo():
    r = _radius_um()
    disc = 0.08 * np.clip((3.0 - r) / 0.2 + 0.5, 0, 1)  # a dense disc, 3 µm radius
    (pc,) = transmitted_planes(_phase_scene(disc), OPTICS, Modality.PC, [0.0])
    far = pc[r > 5.5].mean()
    halo = pc[(r > 3.2) & (r < 4.2)].mean()
    inside_edge = pc[(r > 2.0) & (r < 2.8)].mean()
    assert inside_edge < far - 0.1  # positive phase contrast: dense is dark
    assert halo > far + 0.05  # the finite phase ring's halo
    (bf,) = transmitted_planes(_phase_scene(disc), OPTICS, Modality.BF, [0.0])
    assert bf[(r > 3.2) & (r < 4.2)].mean() < 1 + 0.02  # no such halo in bright field


def test_fluorescence_psf_width_follows_wavelength_over_na():
    zeros = np.zeros((N, N), np.float32)
    point = zeros.copy()
    point[N // 2, N // 2] = 1
    scene = Scene(PS, {o: point for o in ORGANELLES}, zeros, zeros, zeros)
    y = np.arange(N) - N // 2
    for na in (0.6, 1.2):
        params = Fluorescence(na=na, signal_e=dict.fromkeys(ORGANELLES, 1e4), background_e=0)
        image = expected_fluorescence(scene, Organelle.NUCLEUS, params)
        profile = image[:, N // 2] / image[:, N // 2].sum()
        sigma = np.sqrt((profile * y**2).sum())
        assert sigma == pytest.approx(psf_sigma_px(Organelle.NUCLEUS, na, PS), rel=0.05)
        assert sigma == pytest.approx(0.21 * 0.46 / na / PS, rel=0.05)


def test_noisy_pair_shares_the_truth_but_not_the_noise():
    scene = make_scene(np.random.default_rng(0), (96, 96), PS, CellParams(coverage=0.8))
    params = Fluorescence(na=0.9, signal_e=dict.fromkeys(ORGANELLES, 500.0))
    a, b = noisy_pair(scene, Organelle.MITOCHONDRIA, params, seed=1)
    assert a.dtype == np.uint16 and not np.array_equal(a, b)
    expected = expected_fluorescence(scene, Organelle.MITOCHONDRIA, params)
    diff = a.astype(float) - b.astype(float)
    # independent Poisson–Gaussian noise: var(a − b) = 2·(λ + read²) in electrons (gain 1)
    predicted = 2 * (expected + params.camera.read_noise_e**2)
    assert diff.var() == pytest.approx(predicted.mean(), rel=0.1)


def test_scene_is_physical_cells_keep_their_size_across_pixel_sizes():
    params = CellParams(radius_um=8, coverage=0.5)
    covered = []
    for ps in (0.065, 0.16):
        n = int(round(40 / ps))  # the same 40 µm field at both pixel sizes
        fractions = [(make_scene(np.random.default_rng(s), (n, n), ps, params).thickness_um > 0.1)
                     .mean() for s in range(4)]
        covered.append(np.mean(fractions))
    assert covered[0] == pytest.approx(covered[1], abs=0.12)


def _separation(feature, a, b):
    """d′: difference of means in units of b's standard deviation."""
    return abs(feature[a].mean() - feature[b].mean()) / feature[b].std()


@pytest.mark.parametrize("seed", [3, 4])
def test_nucleus_is_visible_in_every_modality_at_focus(seed):
    scene = make_scene(np.random.default_rng(seed), (160, 160), PS,
                       CellParams(radius_um=7, coverage=0.9))
    nucleus = scene.density[Organelle.NUCLEUS] > 0.3
    cytoplasm = (scene.thickness_um > 0.5) & (scene.density[Organelle.NUCLEUS] < 0.01)
    assert nucleus.sum() > 100 and cytoplasm.sum() > 100
    for modality in Modality:
        (image,) = transmitted_planes(scene, OPTICS, modality, [0.0])
        # two simple local features: mean level and local detail, both smoothed
        level = ndimage.gaussian_filter(image, 3)
        detail = ndimage.gaussian_filter(np.abs(image - ndimage.uniform_filter(image, 9)), 3)
        best = max(_separation(level, nucleus, cytoplasm), _separation(detail, nucleus, cytoplasm))
        assert best > 0.6, modality


def _filter_bank(image):
    """Per-pixel features: the normalised image and its Gaussian scale space (σ 1–16 px)."""
    x = image.astype(np.float32)
    lo, hi = np.percentile(x, (2, 99.8))
    x = (x - lo) / (hi - lo)
    features = [np.ones_like(x), x]
    for s in (1, 2, 4, 8, 16):
        g = ndimage.gaussian_filter(x, s)
        features += [g, ndimage.gaussian_laplace(x, s), ndimage.gaussian_gradient_magnitude(x, s),
                     ndimage.gaussian_filter((x - g) ** 2, s)]
    return np.stack([f.ravel() for f in features], axis=1)


def _normalised(target):
    t = target.astype(np.float32)
    lo, hi = np.percentile(t, (2, 99.8))
    return ((t - lo) / (hi - lo)).ravel()


@pytest.mark.parametrize("modality", list(Modality))
def test_organelles_are_learnable_from_the_in_focus_plane(modality):
    """A linear model on a Gaussian filter bank, fitted on one field of view, predicts the
    nucleus and mitochondria of another field of view of the same study."""
    from lightmycells.simulate import render_fov, study_for

    study = study_for(0, 1, modality, size=(256, 256), planes=1)
    study = replace(study, cells=replace(study.cells, coverage=0.8, radius_um=8))
    organelles = [Organelle.NUCLEUS, Organelle.MITOCHONDRIA]
    train, test = (render_fov(np.random.default_rng(s), study, organelles) for s in (1, 2))
    x_train = _filter_bank(train.planes[train.best_z])
    x_test = _filter_bank(test.planes[test.best_z])
    for organelle in organelles:
        w = np.linalg.lstsq(x_train, _normalised(train.targets[organelle]), rcond=None)[0]
        prediction = x_test @ w
        truth = test.targets[organelle]
        assert np.corrcoef(prediction, _normalised(truth))[0, 1] > 0.5, organelle
        # control: the same prediction against a misaligned truth is worthless
        assert abs(np.corrcoef(prediction, _normalised(truth[::-1, ::-1]))[0, 1]) < 0.25
