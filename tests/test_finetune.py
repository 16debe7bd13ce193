"""One command from a CSV of pairs to a weights folder the container serves."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lightmycells.engine import manifest
from lightmycells.io import ome
from lightmycells.simulate import make_dataset
from lightmycells.train.config import DataConfig
from lightmycells.train.data import training_rows
from lightmycells.train.finetune import kept_entries, main
from lightmycells.vocab import Modality, Organelle

pytestmark = pytest.mark.torch
ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"


def _pairs_csv(tmp_path: Path, modality: str = "BF") -> Path:
    make_dataset(tmp_path / "sim", studies=1, fovs=2, seed=5, size=(96, 128),
                 modalities=[modality], planes=2, all_labels=True, progress=False)
    rows = ["input,organelle,target"]
    for target in sorted((tmp_path / "sim").rglob("image_*_Nucleus.ome.tiff")):
        image_id = target.name.split("_")[1]
        planes = sorted(target.parent.glob(f"image_{image_id}_{modality}_z*.ome.tiff"))
        rows.append(f"{';'.join(str(p) for p in planes)},nucleus,{target}")
    csv = tmp_path / "pairs.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def test_csv_to_weights_folder_that_routes_the_new_model(tmp_path, capsys):
    csv = _pairs_csv(tmp_path)
    with csv.open("a") as handle:  # a bad row: named once, though two steps use the pairs
        handle.write("missing.tif,nucleus,missing_dapi.tif\n")
    out = tmp_path / "my_weights"
    code = main(["--pairs", str(csv), "--organelle", "nucleus", "--out", str(out),
                 "--run", str(tmp_path / "run"), "--set", "steps=3", "--set", "val.every=2",
                 "--set", "data.patch=64", "--set", "data.batch_size=2",
                 "--set", "progress=false"])
    assert code == 0, capsys.readouterr().err
    served = manifest.load(out)
    new = served.route(Organelle.NUCLEUS, Modality.BF)
    assert new.file == "nucleus-finetuned.onnx" and tuple(new.modalities) == ("BF",)
    # the shipped "*" model still serves nucleus on PC and DIC; the others are copied
    assert served.route(Organelle.NUCLEUS, Modality.PC).file == "nucleus.onnx"
    assert served.route(Organelle.ACTIN, Modality.BF).file == "actin.onnx"
    assert (out / "nucleus-finetuned.train.yaml").exists() and (out / "actin.fp16.onnx").exists()
    log = capsys.readouterr().out
    assert "init_from" in log and "loaded" in log and "skipped 0" in log
    assert log.count("missing.tif: no such file") == 1
    # the container serves the folder
    import inference
    from lightmycells.run import cli  # noqa: F401  (imported for the entry point below)

    sample = tmp_path / "in"
    shutil.copytree(ROOT / "test" / "input", sample)
    assert inference.main(["--input", str(sample), "--output", str(tmp_path / "pred"),
                           "--weights", str(out), "--organelles", "nucleus"], {}) == 0
    preds = sorted((tmp_path / "pred").rglob("*.tiff"))
    assert preds and all(np.isfinite(ome.read(p)[0]).all() for p in preds)


def test_refusals_are_one_line(tmp_path, capsys):
    csv = _pairs_csv(tmp_path)
    (tmp_path / "taken").mkdir()
    shutil.copy(WEIGHTS / "manifest.json", tmp_path / "taken" / "manifest.json")
    assert main(["--pairs", str(csv), "--organelle", "nucleus", "--out",
                 str(tmp_path / "taken")]) == 2
    assert "already holds a manifest.json" in capsys.readouterr().err
    assert main(["--pairs", str(csv), "--organelle", "actin", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no usable pair has a actin target" in err


def test_kept_entries_drop_what_would_shadow_the_new_model():
    weights = manifest.load(WEIGHTS)
    kept = {e.name for e in kept_entries(weights, Organelle.NUCLEUS, ["BF"])}
    assert "nucleus-runet" in kept  # "*" without a range: serves PC, DIC and unknown
    kept = {e.name for e in kept_entries(weights, Organelle.NUCLEUS, ["*"])}
    assert "nucleus-runet" not in kept and len(kept) == 3


def test_region_split_keeps_training_rows_above_the_held_out_ones():
    cfg = DataConfig(roots=[Path(".")], organelles=[Organelle.NUCLEUS], split="region",
                     val_fraction=0.25)
    assert training_rows(cfg, 512) == 384 and training_rows(cfg, 3) == 2
    fov_cfg = cfg.model_copy(update={"split": "fov"})
    assert training_rows(fov_cfg, 512) == 512


def test_region_split_never_trains_on_the_held_out_rows(tmp_path):
    from lightmycells.train.data import FieldOfView, PatchDataset

    image = np.zeros((128, 96), np.float32)
    image[96:] = 1000.0  # the held-out bottom quarter, unmistakable
    image[:96] = np.random.default_rng(0).uniform(0, 10, (96, 96))
    for name in ("x.tif", "y.tif"):
        ome.write(tmp_path / name, image, channel="BF", pixel_size_um=None)
    fov = FieldOfView(study="pairs", image_id="0", modality=Modality.BF,
                      planes=(tmp_path / "x.tif",), z=(0,),
                      targets={Organelle.NUCLEUS: tmp_path / "y.tif"})
    cfg = DataConfig(roots=[tmp_path], organelles=[Organelle.NUCLEUS], split="region",
                     val_fraction=0.25, patch=64,
                     augment={"dihedral": False, "gamma": 0.0, "contrast": 0.0,
                              "brightness": 0.0, "elastic": 0.0})
    # the marker normalises to ~1 (it sets the 99.8th percentile), the rest to < 0.01
    data = PatchDataset([fov], [Organelle.NUCLEUS], cfg, seed=0, length=50)
    assert max(float(data[i][1].max()) for i in range(50)) < 0.5
    everywhere = PatchDataset([fov], [Organelle.NUCLEUS], cfg.model_copy(update={"split": "fov"}),
                              seed=0, length=50)
    assert max(float(everywhere[i][1].max()) for i in range(50)) > 0.9


@pytest.mark.parametrize("organelle", ["nucleus", "mitochondria", "tubulin", "actin"])
def test_the_recipe_over_each_shipped_config_is_valid(organelle, tmp_path):
    from lightmycells.train.finetune import DEFAULT_RECIPE, run_config

    entry = manifest.load(WEIGHTS).route(Organelle(organelle), Modality.BF)
    cfg = run_config(WEIGHTS, entry, DEFAULT_RECIPE, tmp_path / "p.csv", ["BF"],
                     tmp_path / "run", [])
    assert cfg.init_from == WEIGHTS / entry.file and cfg.optim.freeze_norm
    assert cfg.data.split == "region" and cfg.data.organelles == [Organelle(organelle)]


def test_a_modality_conditioned_base_is_refused_with_what_to_do_instead(tmp_path):
    """A seed-003 dynamic model's per-modality ONNX has its code folded into constants: it
    cannot rebuild the conditioned PyTorch model, so fine-tuning from it is refused."""
    from lightmycells.train.finetune import DEFAULT_RECIPE, FinetuneError, run_config

    entry = manifest.load(WEIGHTS).route(Organelle.NUCLEUS, Modality.BF)
    base = tmp_path / "base"
    base.mkdir()
    shutil.copy(WEIGHTS / entry.file, base / entry.file)
    shutil.copy(ROOT / "configs" / "zoo" / "seed003_dynamic.yaml",
                base / entry.file.replace(".onnx", ".train.yaml"))
    with pytest.raises(FinetuneError, match="modality-conditioned.*init_from=CHECKPOINT"):
        run_config(base, entry, DEFAULT_RECIPE, tmp_path / "p.csv", ["BF"], tmp_path / "run", [])


def test_pairs_without_pixel_size_are_refused_before_training_a_scaled_base(tmp_path, capsys):
    """A base model trained at a pixel size needs each pair's; PNGs state none, so the run
    stops before any training with one line naming the first such file."""
    import imageio.v3 as iio
    import yaml

    base = tmp_path / "base"
    shutil.copytree(WEIGHTS, base)
    sidecar = base / "nucleus.train.yaml"
    config = yaml.safe_load(sidecar.read_text())
    config["data"]["resample_um"] = 0.16
    sidecar.write_text(yaml.safe_dump(config))
    rng = np.random.default_rng(0)
    iio.imwrite(tmp_path / "in.png", rng.integers(0, 255, (96, 128), dtype=np.uint8))
    iio.imwrite(tmp_path / "dapi.png", rng.integers(0, 255, (96, 128), dtype=np.uint8))
    (tmp_path / "pairs.csv").write_text("input,organelle,target,modality\n"
                                        "in.png,nucleus,dapi.png,BF\n")
    assert main(["--pairs", str(tmp_path / "pairs.csv"), "--organelle", "nucleus", "--out",
                 str(tmp_path / "w"), "--base", str(base)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "state no pixel size (first: " in err and "in.png" in err
    assert not (tmp_path / "w").exists()
