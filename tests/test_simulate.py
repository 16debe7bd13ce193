"""The simulated microscope: layout, metadata, determinism, CLI."""

import csv

import numpy as np
import pytest

from lightmycells.io import ome
from lightmycells.simulate import BEST_Z_CSV, choose_labels, make_dataset
from lightmycells.simulate.__main__ import main
from lightmycells.vocab import INPUT_FOLDER, Modality, Organelle


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    folders = make_dataset(out, studies=3, fovs=2, seed=7, size=(64, 80), gc=True, planes=3,
                           progress=False)
    return out, folders


def _rows(out):
    with open(out / BEST_Z_CSV) as handle:
        return list(csv.DictReader(handle))


def test_layout_and_best_z_csv(dataset):
    out, folders = dataset
    assert [f.name for f in folders] == ["Study_1", "Study_2", "Study_3"]
    rows = _rows(out)
    assert list(rows[0]) == ["name", "modality", "image_z", "best_z"]
    assert len(rows) == 3 * 2 * 3  # studies × fovs × planes
    for folder, modality in zip(folders, ("BF", "PC", "DIC"), strict=True):
        inputs = sorted(folder.glob(f"image_*_{modality}_z*.ome.tiff"))
        assert len(inputs) == 2 * 3
        targets = [p for p in folder.glob("*.ome.tiff") if p not in inputs]
        assert targets, "every field of view has at least one ground truth"
        assert all(p.name.split("_")[-1].split(".")[0] in {o.title for o in Organelle}
                   for p in targets)
    names = {r["name"] for r in rows}
    assert len(names) == len(rows)  # IDs are unique over the whole dataset
    for row in rows:
        assert 0 <= int(row["best_z"]) < 3 and 0 <= int(row["image_z"]) < 3
        assert row["name"].endswith(f"_{row['modality']}_z{row['image_z']}")


def test_files_read_back_with_modality_and_pixel_size(dataset):
    out, folders = dataset
    for folder, modality in zip(folders, Modality, strict=True):
        sizes = set()
        for path in sorted(folder.glob("*.ome.tiff")):
            image, meta = ome.read(path)
            assert image.shape == (64, 80) and meta.axes == "YX"
            assert image.dtype in (np.uint16, np.uint8)
            assert meta.pixel_size_um is not None and 0.06 <= meta.pixel_size_um[0] <= 0.162
            sizes.add(meta.pixel_size_um)
            if f"_{modality}_z" in path.name:
                assert meta.modality is modality and meta.modality_source == "Channel@Name"
                assert image.std() > 0
            else:
                assert image.dtype == np.uint16
        assert len(sizes) == 1  # one pixel size per study


def test_grand_challenge_layout_mirrors_inputs(dataset):
    out, folders = dataset
    rows = _rows(out)
    gc_inputs = sorted(p.stem for p in (out / "images" / INPUT_FOLDER).glob("*.tiff"))
    assert gc_inputs == sorted(r["name"] for r in rows)
    for organelle in Organelle:
        for path in (out / "images" / organelle.output_folder).glob("*.tiff"):
            image_id = path.stem.split("_")[1]
            study_files = [f for folder in folders
                           for f in folder.glob(f"image_{image_id}_{organelle.title}.ome.tiff")]
            assert len(study_files) == 1
            np.testing.assert_array_equal(ome.read(path)[0], ome.read(study_files[0])[0])
            assert (out / "images" / INPUT_FOLDER / path.name).exists()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kwargs = dict(studies=2, fovs=1, size=(48, 48), planes=2, progress=False)
    a = make_dataset(tmp_path / "a", seed=3, **kwargs)
    b = make_dataset(tmp_path / "b", seed=3, **kwargs)
    c = make_dataset(tmp_path / "c", seed=4, **kwargs)
    files_a = sorted(p.relative_to(tmp_path / "a") for f in a for p in f.iterdir())
    assert files_a == sorted(p.relative_to(tmp_path / "b") for f in b for p in f.iterdir())
    for rel in files_a:
        np.testing.assert_array_equal(ome.read(tmp_path / "a" / rel)[0],
                                      ome.read(tmp_path / "b" / rel)[0])
    assert (tmp_path / "a" / BEST_Z_CSV).read_text() == (tmp_path / "b" / BEST_Z_CSV).read_text()
    first = sorted(c[0].glob("*_z0.ome.tiff"))[0]
    assert not np.array_equal(ome.read(first)[0], ome.read(tmp_path / "a" / "Study_1" /
                                                           first.name)[0])


def test_a_study_does_not_depend_on_how_many_others_are_asked_for(tmp_path):
    kwargs = dict(fovs=1, seed=5, size=(40, 56), planes=1, progress=False)
    one = make_dataset(tmp_path / "one", studies=1, **kwargs)[0]
    two = make_dataset(tmp_path / "two", studies=2, **kwargs)[0]
    for path in one.iterdir():
        np.testing.assert_array_equal(ome.read(path)[0], ome.read(two / path.name)[0])


def test_cli_writes_and_rejects_bad_usage(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "o"), "--studies", "1", "--fovs", "1", "--seed", "1",
                 "--size", "32", "--modalities", "PC", "--planes", "2", "--quiet"]) == 0
    assert len(list((tmp_path / "o" / "Study_1").glob("image_1_PC_z*.ome.tiff"))) == 2
    assert main(["--out", str(tmp_path / "p"), "--studies", "0", "--quiet"]) == 2
    assert "studies" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "q"), "--size", "1", "2", "3"])


def test_unknown_modality_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="XYZ"):
        make_dataset(tmp_path, studies=1, fovs=1, seed=0, size=(32, 32), modalities=["XYZ"],
                     progress=False)


def test_partial_label_proportions():
    rng = np.random.default_rng(0)
    n = 20000
    for modality in Modality:
        draws = [choose_labels(rng, modality) for _ in range(n)]
        assert all(draws) and all(len(d) < 4 for d in draws)  # never empty, never all four
        freq = {o: sum(o in d for d in draws) / n for o in Organelle}
        assert freq[Organelle.NUCLEUS] > 0.9
        assert freq[Organelle.MITOCHONDRIA] == pytest.approx(0.66, abs=0.02)
        assert freq[Organelle.TUBULIN] == pytest.approx(0.10, abs=0.01)
        if modality is Modality.DIC:
            assert freq[Organelle.ACTIN] == 0  # the real data has no DIC→actin pair
        else:
            assert freq[Organelle.ACTIN] == pytest.approx(0.04, abs=0.01)
        # the real ordering: nucleus ≫ mitochondria ≫ tubulin > actin
        order = sorted(Organelle, key=freq.get, reverse=True)
        assert order[:3] == [Organelle.NUCLEUS, Organelle.MITOCHONDRIA, Organelle.TUBULIN]


def test_all_labels_still_respects_dic_and_never_all_four(tmp_path):
    folders = make_dataset(tmp_path, studies=2, fovs=2, seed=1, size=(32, 32), planes=1,
                           modalities=["DIC", "BF"], all_labels=True, progress=False)
    dic = {p.name.split(".")[0].split("_", 2)[2] for p in folders[0].glob("*.ome.tiff")}
    assert dic == {"DIC_z0", "Nucleus", "Mitochondria", "Tubulin"}
    for fov in (1, 2):
        assert len(list(folders[1].glob(f"image_{2 + fov}_[A-Z][a-z]*.ome.tiff"))) == 3


def test_studies_vary_like_the_real_ones():
    from lightmycells.simulate import REAL_SIZES, study_for

    studies = [study_for(0, n, Modality.BF, size_scale=0.25) for n in range(1, 301)]
    pixel_sizes = np.array([s.pixel_size_um for s in studies])
    assert pixel_sizes.min() >= 0.06 and pixel_sizes.max() <= 0.162
    assert pixel_sizes.max() - pixel_sizes.min() > 0.08
    scaled = {(round(h * 0.25), round(w * 0.25)) for h, w in REAL_SIZES}
    sizes = {s.size for s in studies}
    assert sizes == scaled  # every real size occurs, non-square ones included (242×324 …)
    assert (242, 324) in sizes
    uint8 = np.mean([s.camera.dtype == "uint8" for s in studies])
    assert 0.08 < uint8 < 0.25
    nas = np.array([s.optics.na for s in studies])
    assert np.corrcoef(pixel_sizes, nas)[0, 1] < -0.8  # small pixels, high-NA objectives
    assert len({s.planes for s in studies}) > 3 and len({s.cells.radius_um for s in studies}) > 100
