"""Folders → official metrics JSON, on simulated studies (both layouts), baselines, report."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_metrics import reference_score

from lightmycells.eval import cli, evaluate, metrics, pairing
from lightmycells.io import ome
from lightmycells.simulate import make_dataset
from lightmycells.vocab import INPUT_FOLDER, METRICS, ORGANELLES, Organelle

OFFICIAL_KEYS = ["results", "agregate", "transmitted_light", "z_deviation"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Three tiny studies (BF, PC, DIC), two fields of view each, both layouts."""
    root = tmp_path_factory.mktemp("sim")
    make_dataset(root, studies=3, fovs=2, seed=3, size=(48, 40), gc=True, planes=2,
                 progress=False)
    return root


@pytest.fixture(scope="module")
def study_only(sim, tmp_path_factory):
    """The same data without the Grand-Challenge folders: the study layout alone."""
    root = tmp_path_factory.mktemp("study")
    for path in sim.iterdir():
        if path.name != "images":
            (shutil.copytree if path.is_dir() else shutil.copy)(path, root / path.name)
    return root


def gt_keys(sim):
    return {o: sorted(p.name for p in (sim / "images" / o.output_folder).glob("*.tiff"))
            for o in ORGANELLES}


def write_predictions(sim, pred, transform=lambda gt, rng: gt, skip=()):
    """A prediction per ground-truth file, from the ground truth through ``transform``."""
    rng = np.random.default_rng(0)
    for organelle, names in gt_keys(sim).items():
        for name in names:
            if (organelle, name) in skip:
                continue
            gt, _ = ome.read(sim / "images" / organelle.output_folder / name)
            out = pred / "images" / organelle.output_folder / name
            out.parent.mkdir(parents=True, exist_ok=True)
            ome.write(out, transform(gt, rng).astype(np.float32), channel=organelle.value,
                      pixel_size_um=(0.1, 0.1))
    return pred


def noisy(gt, rng):
    return gt * 0.01 + rng.normal(0, gt.std() * 0.005 + 1e-3, gt.shape)


@pytest.fixture(scope="module")
def noisy_pred(sim, tmp_path_factory):
    return write_predictions(sim, tmp_path_factory.mktemp("pred"), noisy)


# --- an independent reading of the official aggregation, for cross-checks -----------------

def official_aggregates(results, csv_rows):
    """The official calcul_mean_* on per-image results (modality and z from the CSV)."""
    methods = {o.value: [m for m in ("MAE", "PCC", "SSIM", "E_dist", "C_dist")
                         if m in METRICS[o]] for o in ORGANELLES}
    order = ["nucleus", "mitochondria", "actin", "tubulin"]
    agg, tl, z = {}, {m: {} for m in ("BF", "DIC", "PC")}, {}
    for organelle in order:
        scored = [r for r in results if r[organelle]]
        if scored:
            agg[organelle] = {m: np.mean([r[organelle][m] for r in scored])
                              for m in methods[organelle]}
        for modality in tl:
            these = [r for r in scored if csv_rows[Path(r["image_name"]).stem][0] == modality]
            tl[modality][organelle] = {m: (np.mean([r[organelle][m] for r in these])
                                           if these else np.nan) for m in methods[organelle]}
        for r in scored:
            _, image_z, best_z = csv_rows[Path(r["image_name"]).stem]
            z.setdefault(organelle, {}).setdefault(str(abs(image_z - best_z)), []).append(r)
    z = {o: {dz: {m: np.mean([r[o][m] for r in rs]) for m in methods[o]}
             for dz, rs in per.items()} for o, per in z.items()}
    return agg, tl, z


def assert_nested_close(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            assert_nested_close(a[key], b[key], f"{path}/{key}")
    elif math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == pytest.approx(b, abs=1e-12), path


# --- tests -------------------------------------------------------------------------------

def test_perfect_predictions_score_perfectly(sim, tmp_path):
    pred = write_predictions(sim, tmp_path / "pred")
    data = evaluate.evaluate(sim, pred, jobs=1)
    assert list(data) == OFFICIAL_KEYS
    n_inputs = len(list((sim / "images" / INPUT_FOLDER).glob("*.tiff")))
    assert len(data["results"]) == n_inputs
    for values in data["agregate"].values():
        assert values["PCC"] == pytest.approx(1.0) and values["SSIM"] == pytest.approx(1.0)
        if "MAE" in values:
            # float32 predictions are normalised in float32, as the official code does
            assert values["MAE"] == pytest.approx(0, abs=1e-6)


def test_json_matches_the_official_structure_and_numbers(sim, noisy_pred, tmp_path):
    out = tmp_path / "m.json"
    data = evaluate.evaluate(sim, noisy_pred, out=out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(data))  # what was written
    csv_rows = pairing.read_best_z(sim / "best_z.csv")
    # every image: the official get_img_metrics on files read the official way
    for entry in data["results"]:
        for organelle in ORGANELLES:
            gt_path = sim / "images" / organelle.output_folder / entry["image_name"]
            if not gt_path.exists():
                assert entry[organelle.value] == {}
                continue
            ref = reference_score(tifffile.imread(noisy_pred / "images" / organelle.output_folder
                                                  / entry["image_name"]),
                                  tifffile.imread(gt_path), organelle)
            assert list(entry[organelle.value]) == [m for m in ("PCC", "SSIM", "MAE", "E_dist",
                                                                "C_dist") if m in ref]
            for metric, value in ref.items():
                assert entry[organelle.value][metric] == pytest.approx(value, abs=1e-9)
    agg, tl, z = official_aggregates(data["results"], csv_rows)
    assert_nested_close(data["agregate"], agg)
    assert_nested_close(data["transmitted_light"], tl)
    assert_nested_close(data["z_deviation"], z)
    assert list(data["transmitted_light"]) == ["BF", "DIC", "PC"]
    assert all(len(per) == 4 for per in data["transmitted_light"].values())
    assert "NaN" in out.read_text()  # no actin/tubulin for some modality: NaN like the official


def test_study_layout_gives_the_same_numbers_as_grand_challenge_layout(sim, study_only):
    gc = evaluate.evaluate(sim, baseline="input")
    study = evaluate.evaluate(study_only, baseline="input")
    by_name = {Path(e["image_name"]).name: e for e in study["results"]}
    assert sorted(by_name) == sorted(e["image_name"] for e in gc["results"])
    for entry in gc["results"]:
        assert_nested_close({o.value: entry[o.value] for o in ORGANELLES},
                            {o.value: by_name[entry["image_name"]][o.value] for o in ORGANELLES})
    assert_nested_close(gc["agregate"], study["agregate"])


def test_input_baseline_scores_the_input_itself(sim):
    data = evaluate.evaluate(sim, baseline="input")
    entry = next(e for e in data["results"] if e["nucleus"])
    name = entry["image_name"]
    image, _ = ome.read(sim / "images" / INPUT_FOLDER / name)
    gt, _ = ome.read(sim / "images" / Organelle.NUCLEUS.output_folder / name)
    assert entry["nucleus"] == pytest.approx(metrics.score(image, gt, "nucleus"))
    blur = evaluate.evaluate(sim, baseline="blur")
    assert blur["agregate"]["nucleus"]["SSIM"] != data["agregate"]["nucleus"]["SSIM"]


def test_predictions_written_by_inference_for_study_folders_are_found(study_only, tmp_path):
    # inference.py mirrors the study folders below each organelle folder
    pred = tmp_path / "pred"
    for gt in study_only.glob("Study_*/image_*_Nucleus.ome.tiff"):
        image_id = gt.name.split("_")[1]
        for source in gt.parent.glob(f"image_{image_id}_*_z*.ome.tiff"):
            out = pred / "images/nucleus-fluorescence-ome-tiff" / gt.parent.name
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(gt, out / (ome.stem(source) + ".tiff"))
    data = evaluate.evaluate(study_only, pred, only_predicted=True)
    assert data["agregate"]["nucleus"]["PCC"] == pytest.approx(1.0)
    assert "errors" in data  # other organelles with ground truth have no prediction
    assert all(e["image_name"].startswith("Study_") for e in data["results"])


def test_missing_and_misshaped_predictions_fail_only_their_image(sim, tmp_path, capsys):
    names = gt_keys(sim)[Organelle.NUCLEUS]
    pred = write_predictions(sim, tmp_path / "pred", skip={(Organelle.NUCLEUS, names[0])})
    wrong = pred / "images" / Organelle.NUCLEUS.output_folder / names[1]
    ome.write(wrong, np.zeros((10, 12), np.float32), channel="nucleus", pixel_size_um=None)
    code = cli.main(["--truth", str(sim), "--pred", str(pred), "--out",
                          str(tmp_path / "m.json"), "--jobs", "2", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"FAILED {names[0]} [model/nucleus]: missing prediction" in err
    assert f"FAILED {names[1]} [model/nucleus]: shapes differ" in err
    data = json.loads((tmp_path / "m.json").read_text())
    assert len(data["errors"]) == 2
    scored = [e for e in data["results"] if e["nucleus"]]
    assert len(scored) == len(names) - 2
    assert data["agregate"]["nucleus"]["PCC"] == pytest.approx(1.0)


def test_parallel_run_equals_serial_run(sim, noisy_pred):
    serial = evaluate.evaluate(sim, noisy_pred, jobs=1)
    parallel = evaluate.evaluate(sim, noisy_pred, jobs=2)
    assert json.dumps(serial) == json.dumps(parallel)


def test_modality_from_metadata_when_names_say_nothing(sim, tmp_path):
    # Grand Challenge names are UUIDs and no best_z.csv: modality from the input's OME-XML
    truth = tmp_path / "gc"
    name = gt_keys(sim)[Organelle.NUCLEUS][0]
    for folder in (INPUT_FOLDER, Organelle.NUCLEUS.output_folder):
        (truth / "images" / folder).mkdir(parents=True)
        shutil.copy(sim / "images" / folder / name, truth / "images" / folder / "0f3a.tiff")
    data = evaluate.evaluate(truth, baseline="input")
    modality = name.split("_")[2]
    assert data["results"][0]["modality"] == modality
    assert data["results"][0]["image_z"] is None and data["z_deviation"] == {}
    assert not math.isnan(data["transmitted_light"][modality]["nucleus"]["PCC"])


def test_inputs_from_input_dir_and_missing_inputs_fail_only_the_baseline(sim, tmp_path):
    truth = tmp_path / "truth"  # Grand-Challenge ground truth without the input folder
    shutil.copytree(sim / "images" / Organelle.NUCLEUS.output_folder,
                    truth / "images" / Organelle.NUCLEUS.output_folder)
    inputs = tmp_path / "inputs"
    shutil.copytree(sim / "images" / INPUT_FOLDER, inputs)
    with_dir = evaluate.evaluate(truth, baseline="input", input_dir=inputs)
    reference = evaluate.evaluate(sim, baseline="input")["agregate"]
    assert with_dir["agregate"] == {"nucleus": reference["nucleus"]}
    # without inputs: the floor fails for every image, the model is still scored
    pred = write_predictions(sim, tmp_path / "pred")
    run = evaluate.run(truth, pred, floors=["input"])
    assert run.metrics["model"]["agregate"]["nucleus"]["PCC"] == pytest.approx(1.0)
    assert run.metrics["input"]["agregate"] == {}
    assert len(run.errors) == len(run.items)
    assert all("[input/*]: no input image" in e for e in run.errors)


@pytest.mark.parametrize("argv,message", [
    (["--truth", "nowhere", "--baseline", "input"], "does not exist"),
    (["--truth", "{sim}"], "nothing to evaluate"),
    (["--truth", "{sim}", "--baseline", "input", "--pred", "{sim}"], "not both"),
    (["--truth", "{sim}", "--pred", "{empty}"], "no predictions found"),
    (["--truth", "{sim}", "--baseline", "input", "--best-z", "{bad_csv}"], "expected columns"),
    (["--truth", "{sim}", "--baseline", "input", "--floors", "median"], "unknown baseline"),
    (["--truth", "{study}", "--baseline", "input", "--input", "{sim}"], "holds its inputs"),
])
def test_bad_usage_exits_2_and_writes_nothing(sim, study_only, tmp_path, capsys, argv,
                                              message):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("file,z\na,1\n")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "m.json"
    argv = [a.format(sim=sim, study=study_only, empty=tmp_path / "empty", bad_csv=bad_csv)
            for a in argv]
    assert cli.main([*argv, "--out", str(out), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_report_and_floors(sim, noisy_pred, tmp_path):
    out, report = tmp_path / "m.json", tmp_path / "report"
    code = cli.main(["--truth", str(sim), "--pred", str(noisy_pred), "--floors",
                          "input,blur", "--out", str(out), "--report", str(report),
                          "--jobs", "1", "--quiet"])
    assert code == 0
    floors = {s: json.loads(out.with_suffix(f".{s}.json").read_text()) for s in ("input", "blur")}
    model = json.loads(out.read_text())
    assert model["agregate"]["nucleus"]["PCC"] > floors["input"]["agregate"]["nucleus"]["PCC"]
    text = (report / "report.md").read_text()
    assert "| nucleus | **model** |" in text and "input (floor)" in text
    assert "## Per focus deviation" in text
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert {"focus.png", "distributions.png", "gallery_nucleus.png"} <= set(pngs)
    for png in pngs:
        assert f"]({png})" in text
        assert (report / png).stat().st_size < 400_000


def test_compare_prints_differences(sim, noisy_pred, tmp_path):
    a, b, md = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.md"
    evaluate.evaluate(sim, baseline="input", out=a)
    evaluate.evaluate(sim, noisy_pred, out=b)
    result = subprocess.run([sys.executable, "-m", "lightmycells.evaluate", "--compare",
                             str(a), str(b), "--out", str(md)],
                            capture_output=True, text=True, check=True)
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    diff = db["agregate"]["nucleus"]["PCC"] - da["agregate"]["nucleus"]["PCC"]
    assert f"| all | nucleus | PCC | {da['agregate']['nucleus']['PCC']:.3f} |" in result.stdout
    assert f"{diff:+.3f} | better |" in result.stdout
    assert md.read_text().strip() == result.stdout.strip()
    assert cli.main(["--compare", str(a), str(tmp_path / "missing.json")]) == 2


def _eval_imports():
    """{module: eval modules it imports anywhere (top level, functions, TYPE_CHECKING)}."""
    import ast

    folder = Path(metrics.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "lightmycells.eval":
                    found |= {alias.name for alias in node.names}
                elif node.module.startswith("lightmycells.eval."):
                    found.add(node.module.rsplit(".", 1)[1])
        graph[path.stem] = found
    return graph


def test_eval_modules_import_each_other_without_a_cycle():
    graph = _eval_imports()
    assert "evaluate" in graph["report"] and "report" in graph["cli"]  # the old cycle's ends
    done, visiting = set(), []

    def visit(module):
        assert module not in visiting, f"import cycle: {' -> '.join([*visiting, module])}"
        if module in done:
            return
        visiting.append(module)
        for imported in graph.get(module, ()):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in graph:
        visit(module)


def test_compare_columns_are_named_by_where_two_metrics_json_differ(tmp_path):
    from lightmycells.eval.cli import compare_labels

    old, new = tmp_path / "old/eval/clean/metrics.json", tmp_path / "new/eval/clean/metrics.json"
    assert compare_labels(old, new) == ["old", "new"]
    assert compare_labels(tmp_path / "a.json", tmp_path / "b.json") == ["a", "b"]


def test_organelles_scores_a_one_model_run_without_failing_the_others(sim, noisy_pred, tmp_path,
                                                                      capsys):
    """A run that predicted nucleus only: --organelles nucleus scores it with no failure, and
    its nucleus scores are those of the full evaluation."""
    pred = tmp_path / "pred"
    folder = Organelle.NUCLEUS.output_folder
    shutil.copytree(noisy_pred / "images" / folder, pred / "images" / folder)
    full, only = tmp_path / "full.json", tmp_path / "only.json"
    evaluate.evaluate(sim, noisy_pred, out=full)
    assert cli.main(["--truth", str(sim), "--pred", str(pred), "--out", str(only),
                     "--organelles", "nucleus", "--jobs", "1", "--quiet"]) == 0
    assert "FAILED" not in capsys.readouterr().err
    a, b = json.loads(full.read_text()), json.loads(only.read_text())
    assert set(b["agregate"]) == {"nucleus"} and not b.get("errors")
    assert b["agregate"]["nucleus"] == a["agregate"]["nucleus"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--truth", str(sim), "--pred", str(pred), "--out", str(only),
                  "--organelles", "golgi"])
    assert exit_info.value.code == 2 and "golgi" in capsys.readouterr().err
