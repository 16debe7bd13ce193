"""The metrics agree with the reference libraries the official evaluation calls."""

import warnings

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import euclidean
from scipy.stats import pearsonr
from skimage.metrics import structural_similarity
from sklearn.metrics import mean_absolute_error
from sklearn.metrics.pairwise import cosine_distances, euclidean_distances

from lightmycells.eval import metrics
from lightmycells.vocab import METRICS, ORGANELLES

TOL = 1e-9


# --- the official evaluation's formulas, written with the reference libraries -------------

def reference_normalize(image):
    low = np.percentile(image, 2, keepdims=True)
    high = np.percentile(image, 99.8, keepdims=True)
    return image if low == high else (image - low) / (high - low)


def reference_metrics(gt, pred):
    """The official get_img_metrics on already-normalised images (gt first, as there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant-input warnings
        r = pearsonr(gt.ravel(), pred.ravel())[0]
        data_range = np.maximum(pred.max() - pred.min(), gt.max() - gt.min())
        out = {"PCC": 0.0 if np.isnan(r) else r,
               "SSIM": structural_similarity(gt, pred, data_range=data_range)}
    row_gt, row_pred = gt.ravel().reshape(1, -1), pred.ravel().reshape(1, -1)
    out["MAE"] = mean_absolute_error(gt, pred)
    out["E_dist"] = euclidean_distances(row_gt, row_pred)[0, 0]
    out["C_dist"] = np.abs(cosine_distances(row_gt, row_pred)[0, 0])
    return out


def reference_score(pred, gt, organelle):
    ref = reference_metrics(reference_normalize(gt), reference_normalize(pred))
    return {k: ref[k] for k in METRICS[organelle]}


# --- images ------------------------------------------------------------------------------

def discs(shape, seed, n=12):
    """Blurred bright discs on a dark background: nucleus-like structure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape)
    for _ in range(n):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(3, 12)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.uniform(0.5, 1.0)
    return gaussian_filter(image, 1.5)


def pairs():
    """(name, pred, gt) pairs of float64 images covering the cases the brief names."""
    rng = np.random.default_rng(7)
    gt = discs((96, 80), 1)
    yield "random", rng.random((64, 48)), rng.random((64, 48))
    yield "structured", gt + rng.normal(0, 0.05, gt.shape), gt
    yield "shifted structure", np.roll(gt, 5, axis=1), gt
    yield "anticorrelated", 1.0 - gt, gt
    yield "gradient vs discs", np.add.outer(np.arange(96.0), np.arange(80.0)), gt
    yield "constant pred", np.full((30, 40), 0.25), rng.random((30, 40))
    yield "constant gt", rng.random((30, 40)), np.full((30, 40), 3.0)
    yield "both constant", np.full((9, 9), 2.0), np.full((9, 9), 5.0)
    yield "zero pred", np.zeros((16, 16)), rng.random((16, 16))
    yield "tiny 7x7", rng.random((7, 7)), rng.random((7, 7))
    yield "tiny 7x30", rng.random((7, 30)), rng.random((7, 30))
    yield "tiny 8x9", rng.random((8, 9)), rng.random((8, 9))
    yield "band edges 200x70", rng.random((200, 70)), rng.random((200, 70))
    nearly = np.full((20, 20), 0.1)
    nearly[3, 4] += 1e-12  # variance far below the mean: PCC's exact constancy check
    yield "nearly constant", nearly, rng.random((20, 20))


PAIRS = list(pairs())


@pytest.mark.parametrize("name,pred,gt", PAIRS, ids=[p[0] for p in PAIRS])
def test_each_metric_matches_reference_libraries(name, pred, gt):
    ref = reference_metrics(gt, pred)
    ours = {n: f(pred, gt) for n, f in metrics.METRIC_FUNCTIONS.items()}
    for key, value in ref.items():
        if np.isnan(value):
            assert np.isnan(ours[key]), (name, key)
        else:
            assert ours[key] == pytest.approx(value, abs=TOL, rel=TOL), (name, key)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.uint16, np.int32])
@pytest.mark.parametrize("shape", [(1,), (2,), (3,), (7, 7), (33, 21), (128, 96)])
def test_percentile_normalize_is_bit_identical_to_numpy(dtype, shape):
    rng = np.random.default_rng(shape[0])
    image = (rng.random(shape) * 250).astype(dtype)
    ours, ref = metrics.percentile_normalize(image), reference_normalize(image)
    assert ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours, ref)


def test_percentile_normalize_maps_percentiles_to_zero_and_one():
    image = np.arange(1001, dtype=np.uint16)  # p2 = 20, p99.8 = 998
    out = metrics.percentile_normalize(image)
    assert out[20] == 0.0 and out[998] == 1.0
    assert out.min() < 0 and out.max() > 1  # no clipping


def test_constant_image_is_left_as_it_is():
    image = np.full((5, 5), 7, np.uint16)
    assert metrics.percentile_normalize(image) is image


@pytest.mark.parametrize("organelle", ORGANELLES)
@pytest.mark.parametrize("gt_dtype", [np.uint16, np.float64])
def test_score_matches_official_pipeline(organelle, gt_dtype):
    rng = np.random.default_rng(3)
    gt = (discs((72, 90), 5) * 3000 + rng.normal(200, 20, (72, 90))).clip(0).astype(gt_dtype)
    pred = (gt * 0.01 + rng.normal(0, 4, gt.shape)).astype(np.float32)
    ours, ref = metrics.score(pred, gt, organelle), reference_score(pred, gt, organelle)
    assert list(ours) == list(METRICS[organelle])
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=TOL, rel=TOL), key


def test_score_float32_ground_truth_close_to_reference():
    # With a float32 ground truth scikit-image and scikit-learn compute in float32;
    # we compute in float64, so agreement is at float32 precision there.
    rng = np.random.default_rng(4)
    gt = discs((64, 64), 2).astype(np.float32)
    pred = (gt + rng.normal(0, 0.1, gt.shape)).astype(np.float32)
    ours, ref = metrics.score(pred, gt, "nucleus"), reference_score(pred, gt, "nucleus")
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-6), key


def test_known_answers():
    gt = discs((40, 50), 9)
    same = metrics.score(gt, gt, "mitochondria")
    assert same["PCC"] == pytest.approx(1.0) and same["SSIM"] == pytest.approx(1.0)
    assert same["MAE"] == 0.0 and same["E_dist"] == 0.0 and same["C_dist"] == pytest.approx(0.0)
    assert metrics.pcc(1.0 - gt, gt) == pytest.approx(-1.0)
    # scale and offset are free after normalisation
    assert metrics.score(gt * 7.0 + 3.0, gt, "tubulin") == pytest.approx({"SSIM": 1, "PCC": 1})


def test_e_dist_is_accurate_where_sklearn_cancels():
    rng = np.random.default_rng(0)
    x = rng.random(4096) + 10.0
    y = x + 1e-7 * rng.standard_normal(x.size)
    assert metrics.e_dist(x, y) == pytest.approx(euclidean(x, y), rel=1e-9)


def test_constant_inputs():
    c = np.full((12, 12), 4.0)
    assert metrics.pcc(c, np.arange(144.0).reshape(12, 12)) == 0.0
    assert np.isnan(metrics.ssim(c, c))  # data range 0: 0/0, as in scikit-image
    assert metrics.c_dist(np.zeros((12, 12)), c) == 1.0


@pytest.mark.parametrize("func", list(metrics.METRIC_FUNCTIONS.values()))
def test_shape_mismatch_is_an_error(func):
    with pytest.raises(ValueError, match="shapes differ"):
        func(np.zeros((8, 8)), np.zeros((8, 9)))


def test_ssim_rejects_images_smaller_than_the_window_like_skimage():
    a = np.random.default_rng(0).random((6, 20))
    with pytest.raises(ValueError):
        structural_similarity(a, a, data_range=1.0)
    with pytest.raises(ValueError, match="at least 7"):
        metrics.ssim(a, a)


def test_score_rejects_unknown_organelle():
    with pytest.raises(ValueError):
        metrics.score(np.zeros((8, 8)), np.zeros((8, 8)), "golgi")
