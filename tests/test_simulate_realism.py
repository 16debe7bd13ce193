"""Simulator presets: the clean preset keeps its bytes; every realistic effect is
deterministic per seed and stays within its documented range (measured on the images)."""

import hashlib
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from lightmycells.io import ome
from lightmycells.simulate import (
    OBJECTIVES,
    RANGES,
    CellParams,
    CellType,
    Export,
    Preset,
    Scene,
    artefacts,
    make_dataset,
    make_scene,
    render_fov,
    study_for,
)
from lightmycells.simulate.__main__ import main
from lightmycells.simulate.presets import (
    CAMERA_PITCH_UM,
    MAX_TRANSMITTED_NA,
    draw_realism,
    realistic_cells,
)
from lightmycells.simulate.scene import make_cells
from lightmycells.simulate.study import _realistic_planes
from lightmycells.vocab import ORGANELLES, Modality, Organelle

#: sha256 of a small clean dataset (pixels, names, dtypes, pixel sizes, best_z.csv), computed
#: on main *before* presets existed (commit c8faa56). A regression guard only: the physics
#: that makes these bytes right is tested in test_simulate_physics.py.
CLEAN_HASH = "3058e2223168060d9273127e60d71b4aa2d0dfaab34d01e1120ccd5ab872d424"


def _dataset_hash(out, **kwargs) -> str:
    make_dataset(out, studies=3, fovs=2, seed=3, size=(48, 56), planes=3, progress=False,
                 **kwargs)
    digest = hashlib.sha256((out / "best_z.csv").read_bytes())
    for path in sorted(out.glob("Study_*/*.ome.tiff")):
        image, meta = ome.read(path)
        digest.update(path.name.encode())
        digest.update(str(image.dtype).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
        digest.update(repr(meta.pixel_size_um).encode())
    return digest.hexdigest()


def test_clean_preset_is_byte_identical_to_the_simulator_before_presets(tmp_path):
    assert _dataset_hash(tmp_path / "default") == CLEAN_HASH
    assert _dataset_hash(tmp_path / "clean", preset="clean") == CLEAN_HASH
    assert _dataset_hash(tmp_path / "real", preset="realistic") != CLEAN_HASH


def _realistic_fov(seed, n=1, modality=Modality.PC, size=(96, 96)):
    study = study_for(seed, n, modality, size=size, planes=2, preset=Preset.REALISTIC)
    return study, render_fov(np.random.default_rng([seed, n, 0]), study)


def test_realistic_preset_is_deterministic_per_seed():
    s1, a = _realistic_fov(11)
    s2, b = _realistic_fov(11)
    _, c = _realistic_fov(12)
    assert s1 == s2
    np.testing.assert_array_equal(a.planes, b.planes)
    assert a.targets.keys() == b.targets.keys()
    for organelle in a.targets:
        np.testing.assert_array_equal(a.targets[organelle], b.targets[organelle])
    assert a.planes.shape != c.planes.shape or not np.array_equal(a.planes, c.planes)


def test_realism_parameters_stay_in_their_documented_ranges_and_cover_them():
    draws = [draw_realism(np.random.default_rng([0, i])) for i in range(400)]
    seams = np.array([r.seam for r in draws])
    assert 0.6 < (seams == 0).mean() < 0.8  # most studies are a single tile
    for name in ("vignetting", "gradient", "haze", "haze_sigma_um", "texture_opd_um",
                 "texture_sigma_um", "debris_per_mm2", "dust", "dust_contrast", "prnu",
                 "column_fpn_adu", "stretch_low_pct", "stretch_high_pct"):
        lo, hi = RANGES[name]
        values = np.array([getattr(r, name) for r in draws], float)
        assert values.min() >= lo and values.max() <= hi, name
        # the draws use the range, not a corner of it
        assert values.min() < lo + 0.2 * (hi - lo) and values.max() > hi - 0.2 * (hi - lo), name
    assert {r.objective for r in draws} == set(OBJECTIVES)
    assert {r.export for r in draws} == set(Export)
    assert {r.cell_type for r in draws} == set(CellType)


def test_pixel_sizes_span_10x_to_100x_with_the_objectives_na():
    studies = [study_for(2, n, Modality.BF, size=(32, 32), planes=1, preset="realistic")
               for n in range(1, 121)]
    ps = np.array([s.pixel_size_um for s in studies])
    assert ps.min() >= 0.06 and ps.max() <= 0.65
    assert ps.min() < 0.066 and ps.max() > 0.6  # 100× and 10× both drawn
    for s in studies:
        objective = s.realism.objective
        assert CAMERA_PITCH_UM[0] <= s.pixel_size_um * objective.magnification <= CAMERA_PITCH_UM[1]
        assert s.fluorescence.na == objective.na
        assert s.optics.na == min(objective.na, MAX_TRANSMITTED_NA)
        # the z-step follows the depth of field: a 10×/0.3 stack steps further than 100×/1.4
    step = {s.realism.objective.magnification: s.z_step_um for s in studies}
    assert step[10] > 2 * step[100]


def test_clean_pixel_sizes_unchanged():
    ps = [study_for(2, n, Modality.BF, size=(32, 32), planes=1).pixel_size_um for n in range(1, 60)]
    assert 0.06 <= min(ps) and max(ps) <= 0.162


def _empty_scene(shape, ps=0.2):
    zeros = np.zeros(shape, np.float32)
    return Scene(ps, {o: zeros for o in ORGANELLES}, zeros, zeros.copy(), zeros.copy())


def _plain_study(seed=4, **realism):
    """A realistic PC study with every effect off except those given."""
    study = study_for(seed, 1, Modality.BF, size=(256, 256), planes=1, preset="realistic")
    off = dict(gradient=0.0, haze=0.0, texture_opd_um=0.0, debris_per_mm2=0.0, dust=0,
               prnu=0.0, column_fpn_adu=0.0, export=Export.RAW16, vignetting=0.0)
    real = replace(study.realism, **{**off, **realism})
    camera = replace(study.camera, dtype="uint16", offset_adu=300.0, gain_e_per_adu=1.0,
                     read_noise_e=2.0)
    return replace(study, realism=real, camera=camera, background_e=20000.0)


def _electrons(study, image):
    return (image.astype(np.float64) - study.camera.offset_adu) * study.camera.gain_e_per_adu


def test_vignetting_falloff_measured_at_the_corner():
    for strength in (0.05, 0.2, 0.35):
        field = artefacts.vignette((101, 101), strength)
        assert field[50, 50] == pytest.approx(1.0)
        assert field[0, 0] == pytest.approx(1 - strength, abs=1e-6)
        # measured on a rendered empty field (camera noise included), corners vs centre
        study = _plain_study(vignetting=strength)
        image = _realistic_planes(np.random.default_rng(0), study, _empty_scene(study.size),
                                  [0.0])[0]
        e = ndimage.uniform_filter(_electrons(study, image), 9)
        corners = np.mean([e[4, 4], e[4, -5], e[-5, 4], e[-5, -5]])
        centre = e[128, 128]
        # the instrument's optical axis sits up to 10 % off-centre
        assert 1 - corners / centre == pytest.approx(strength, abs=0.25 * strength + 0.01)


def test_gradient_is_peak_to_peak_and_mean_one():
    field = artefacts.gradient((64, 80), 0.12, 0.7)
    assert float(field.max() - field.min()) == pytest.approx(0.12, rel=1e-5)
    assert float(field.mean()) == pytest.approx(1.0, abs=1e-5)


def test_camera_offset_and_column_pattern_measured_on_a_dark_frame():
    study = _plain_study(column_fpn_adu=2.0)
    light, columns = artefacts.instrument(study.realism, study.size)
    dark = study.camera.expose(np.zeros(study.size, np.float32), np.random.default_rng(1),
                               columns)
    assert dark.dtype == np.uint16
    assert dark.mean() == pytest.approx(300, abs=0.5)  # offset, read noise 2 e⁻ averaged out
    column_std = dark.mean(axis=0).std()
    # column offsets (2 ADU) plus the read noise left in a 256-row mean (2/√256)
    assert column_std == pytest.approx(np.hypot(2.0, 2 / 16), rel=0.2)
    for seed in range(1, 40):  # drawn offsets of realistic uint16 cameras stay in range
        s = study_for(seed, 1, Modality.PC, size=(32, 32), planes=1, preset="realistic")
        if s.camera.dtype == "uint16":
            assert RANGES["offset_adu"][0] <= s.camera.offset_adu <= RANGES["offset_adu"][1]
            assert RANGES["read_noise_e"][0] <= s.camera.read_noise_e <= RANGES["read_noise_e"][1]


def test_pixel_response_non_uniformity_measured_on_a_flat_field():
    study = _plain_study(prnu=0.01)
    light, columns = artefacts.instrument(study.realism, study.size)
    assert float(light.std()) == pytest.approx(0.01, rel=0.05)
    # a fixed pattern: identical in every field of view of the study
    again, _ = artefacts.instrument(replace(study.realism), study.size)
    np.testing.assert_array_equal(light, again)


def test_stretched_8_bit_export_clips_the_requested_percentiles():
    study = _plain_study(export=Export.STRETCH8, stretch_low_pct=0.5, stretch_high_pct=99.5,
                         vignetting=0.2)
    image = _realistic_planes(np.random.default_rng(0), study, _empty_scene(study.size),
                              [0.0])[0]
    assert image.dtype == np.uint8
    assert image.min() == 0 and image.max() == 255
    assert (image == 0).mean() == pytest.approx(0.005, abs=0.003)
    assert (image == 255).mean() == pytest.approx(0.005, abs=0.003)
    raw8 = _plain_study(export=Export.RAW8)
    assert raw8.realism.export is Export.RAW8


def test_exports_write_the_dtype_they_promise(tmp_path):
    seen = {}
    for seed in range(40):
        s = study_for(seed, 1, Modality.DIC, size=(32, 32), planes=1, preset="realistic")
        seen.setdefault(s.realism.export, s)
    for export, study in seen.items():
        planes = render_fov(np.random.default_rng(0), study).planes
        expected = np.uint8 if export in (Export.RAW8, Export.STRETCH8) else np.uint16
        assert planes.dtype == expected, export
        if export is Export.STRETCH16:
            assert planes.max() == 65535


def test_dust_shadows_darken_by_their_contrast_and_stay_put():
    field = artefacts.dust_shadows(np.random.default_rng(3), (200, 200), 3, 0.1)
    assert 0.9 - 1e-3 <= field.min() < 0.96  # deepest shadow: 0.5–1 × contrast
    assert field.max() <= 1 + 0.3 * 0.1 + 1e-6  # the Fresnel rim stays faint
    np.testing.assert_array_equal(field, artefacts.dust_shadows(np.random.default_rng(3),
                                                                (200, 200), 3, 0.1))


def test_a_seam_is_a_straight_step_of_its_size():
    field = artefacts.seam(np.random.default_rng(0), (64, 80), 0.05)
    np.testing.assert_allclose(np.unique(field), [1.0, 1.05], rtol=1e-6)
    rows, cols = (field > 1).any(axis=1), (field > 1).any(axis=0)
    assert rows.all() != cols.all()  # one orientation: every column or every row is crossed
    assert (artefacts.seam(np.random.default_rng(0), (64, 80), 0.0) == 1).all()


def test_haze_keeps_the_light_and_lowers_local_contrast():
    rng = np.random.default_rng(0)
    planes = (1 + 0.1 * rng.standard_normal((1, 128, 128))).astype(np.float32)
    hazy = artefacts.haze(planes, 0.2, 10.0)
    assert hazy.mean() == pytest.approx(planes.mean(), rel=1e-4)
    assert hazy.std() == pytest.approx(0.8 * planes.std(), rel=0.05)


def test_debris_is_unstained_phase_and_counts_follow_its_density():
    scene = _empty_scene((200, 200), ps=0.5)  # 0.01 mm²
    counts = [artefacts.add_debris(np.random.default_rng(i), _empty_scene((200, 200), 0.5), 2000)
              for i in range(30)]
    assert np.mean(counts) == pytest.approx(20, rel=0.2)  # 2000 / mm² × 0.01 mm²
    n = artefacts.add_debris(np.random.default_rng(0), scene, 2000)
    assert n > 0 and scene.opd_um.max() > 0.01 and scene.absorbance.max() > 0
    assert all(not d.any() for d in scene.density.values())


def test_texture_has_the_requested_path_difference():
    scene = _empty_scene((128, 128), ps=0.1)
    artefacts.add_texture(np.random.default_rng(0), scene, 0.004, 1.0)
    assert float(scene.opd_um.std()) == pytest.approx(0.004, rel=1e-3)


def _scene_and_cells(params, seed):
    """A scene and the cells it was drawn with (make_scene draws its cells first)."""
    shape, ps = (256, 256), 0.4
    scene = make_scene(np.random.default_rng(seed), shape, ps, params)
    cells = make_cells(np.random.default_rng(seed), (shape[0] * ps, shape[1] * ps), params)
    return scene, cells


def _touching_nuclei(scene, cells):
    """Nuclei that share a connected nucleus region with another nucleus."""
    labels, _ = ndimage.label(scene.density[Organelle.NUCLEUS] > 0.02)
    ps = scene.pixel_size_um
    ids = [labels[int(c.nucleus.cy / ps), int(c.nucleus.cx / ps)] for c in cells
           if 0 <= c.nucleus.cx / ps < scene.shape[1] and 0 <= c.nucleus.cy / ps < scene.shape[0]]
    ids = [i for i in ids if i]
    return len(ids) - len(set(ids))


def test_density_runs_from_sparse_to_confluent_with_touching_clustered_nuclei():
    lo, hi = RANGES["coverage"]
    sparse = [_scene_and_cells(CellParams(coverage=lo), s) for s in range(3)]
    dense = [_scene_and_cells(CellParams(coverage=hi, packing=0.4, clustering=0.8), s)
             for s in range(2)]
    covered = {name: [float((scene.thickness_um > 0.1).mean()) for scene, _ in group]
               for name, group in (("sparse", sparse), ("dense", dense))}
    assert max(covered["sparse"]) < 0.12
    assert min(covered["dense"]) > 0.8  # confluent
    assert sum(_touching_nuclei(*sc) for sc in sparse) == 0
    assert min(_touching_nuclei(*sc) for sc in dense) >= 5
    drawn = [realistic_cells(np.random.default_rng(i), CellType.GENERIC) for i in range(300)]
    coverage = [c.coverage for c in drawn]
    assert lo <= min(coverage) < 0.08 and 2.0 < max(coverage) <= hi
    # denser cultures pack tighter
    order = np.argsort(coverage)
    assert drawn[order[0]].packing > drawn[order[-1]].packing


def test_neurons_grow_neurites_full_of_tubulin_and_other_types_do_not():
    def outside_soma_tubulin(cell_type):
        """Fraction of the tubulin farther than 1 µm from any part thicker than 1 µm."""
        fractions = []
        for seed in range(4):
            params = replace(realistic_cells(np.random.default_rng(seed), cell_type),
                             coverage=0.1)
            scene = make_scene(np.random.default_rng(seed), (256, 256), 0.3, params)
            soma = ndimage.binary_dilation(scene.thickness_um > 1.0, iterations=3)
            tubulin = scene.density[Organelle.TUBULIN]
            fractions.append(float(tubulin[~soma].sum() / max(tubulin.sum(), 1e-9)))
        return np.mean(fractions)
    assert outside_soma_tubulin(CellType.NEURON) > 0.3  # measured 0.42
    assert outside_soma_tubulin(CellType.ROUND) < 0.05  # measured 0.007


def test_cell_types_have_their_shapes():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        r = realistic_cells(rng, CellType.ROUND)
        e = realistic_cells(rng, CellType.EPITHELIAL)
        n = realistic_cells(rng, CellType.NEURON)
        g = realistic_cells(rng, CellType.GENERIC)
        assert r.height_um >= 6 and r.elongation <= 1.15 and r.radius_um <= 9
        assert e.height_um <= 4 and e.elongation <= 1.4
        assert n.neurites >= 2 and 40 <= n.neurite_length_um <= 150 and n.radius_um <= 9
        assert g.neurites == 0 and e.neurites == 0 and r.neurites == 0


def test_cli_takes_the_preset_and_rejects_an_unknown_one(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "r"), "--studies", "1", "--fovs", "1", "--size", "48",
                 "--planes", "1", "--preset", "realistic", "--quiet"]) == 0
    image, meta = ome.read(next((tmp_path / "r" / "Study_1").glob("image_1_BF_z0.ome.tiff")))
    assert 0.06 <= meta.pixel_size_um[0] <= 0.65
    assert main(["--out", str(tmp_path / "x"), "--studies", "1", "--fovs", "1", "--size", "48",
                 "--preset", "fancy", "--quiet"]) == 2
    assert "preset" in capsys.readouterr().err


def _script(name):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_realism_report_statistics_on_known_images():
    report = _script("realism_report")
    rng = np.random.default_rng(0)
    f, power = report.radial_psd([rng.standard_normal((512, 512))])
    band = (f >= 0.02) & (f <= 0.25)
    assert abs(np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0]) < 0.1  # white: flat
    smooth = ndimage.gaussian_filter(rng.standard_normal((512, 512)), 4)
    f, power = report.radial_psd([smooth])
    assert np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0] < -2  # smooth: steep
    # twelve discs of radius 10 px, two of them touching: 11 objects, one twice the size
    yy, xx = np.mgrid[:512, :512]
    image = np.zeros((512, 512))
    centres = [(60 + 90 * (i // 4), 60 + 110 * (i % 4)) for i in range(11)] + [(60, 79)]
    for cy, cx in centres:
        image[np.hypot(yy - cy, xx - cx) <= 10] = 1000
    objs = report.objects([image + rng.normal(0, 1, image.shape)])
    assert objs["objects_per_mpx"] == pytest.approx(11 / 512**2 * 1e6)
    assert objs["median_area_px"] == pytest.approx(np.pi * 100, rel=0.15)
    assert objs["clustered"] == pytest.approx(1 / 11)
    assert report.background_texture(np.zeros((64, 64))) == 0


def test_transfer_script_scores_an_identity_model_and_its_floors(tmp_path, capsys):
    import json

    import imageio.v3 as iio

    from tests.onnx_models import identity_model, write_weights

    transfer = _script("transfer_real")
    rng = np.random.default_rng(0)
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    x = (ndimage.gaussian_filter(rng.random((40, 48)), 2) * 60000).astype(np.uint16)
    iio.imwrite(pairs / "same_input.png", x)
    iio.imwrite(pairs / "same_target.png", x)  # target = input: an identity model scores 1
    iio.imwrite(pairs / "inv_input.png", x)
    iio.imwrite(pairs / "inv_target.png", (65535 - x).astype(np.uint16))
    (pairs / "pairs.jsonl").write_text(
        json.dumps({"name": "same", "organelle": "Nucleus"}) + "\n"
        + json.dumps({"name": "inv", "organelle": "Actin (a guess)"}) + "\n")
    weights = write_weights(tmp_path / "w", identity_model(4))
    out = tmp_path / "t.md"
    assert transfer.main(["--pairs", str(pairs), "--weights", str(weights), "--scales", "1,2",
                          "--out", str(out)]) == 0
    rows = {line.split("|")[1].strip(): [float(v) for v in line.split("|")[4:-1]]
            for line in out.read_text().splitlines() if line.startswith(("| same", "| inv"))}
    assert rows["same"][0] == pytest.approx(1) and rows["same"][1] == pytest.approx(1)
    assert rows["same"][2] == pytest.approx(1, abs=1e-3)  # the model at ×1
    assert rows["same"][3] > 0.99  # ×2 then back: bilinear, nearly lossless on a smooth image
    assert rows["inv"][0] == pytest.approx(-1) and rows["inv"][1] == pytest.approx(1)
    assert rows["inv"][2] == pytest.approx(-1, abs=1e-3)
    assert transfer.main(["--pairs", str(tmp_path / "none")]) == 2
    assert "pairs.jsonl" in capsys.readouterr().err
