import json

import pytest

from lightmycells.engine import manifest
from lightmycells.engine.manifest import ManifestError, RouteError
from lightmycells.vocab import MODALITIES, ORGANELLES, Modality, Organelle
from tests import onnx_models


def _edit(folder, change):
    path = folder / "manifest.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_load_checks_and_exposes_entries(identity_weights):
    m = manifest.load(identity_weights)
    (entry,) = m.models
    assert entry.organelles == ORGANELLES
    assert entry.modalities == ("*",)
    assert (entry.patch, entry.overlap, entry.pixel_size_um) == (256, 0.25, None)
    assert m.weights_dir == identity_weights
    assert entry.channel(Organelle.TUBULIN) == 2


@pytest.mark.parametrize("where,key", [("top", "version"), ("entry", "tile"),
                                       ("norm", "clip")])
def test_unknown_key_is_an_error_naming_it(identity_weights, where, key):
    def change(doc):
        target = {"top": doc, "entry": doc["models"][0],
                  "norm": doc["models"][0]["input_norm"]}[where]
        target[key] = 1
    _edit(identity_weights, change)
    with pytest.raises(ManifestError, match=key) as info:
        manifest.load(identity_weights)
    assert "manifest.json" in str(info.value) and "\n" not in str(info.value)


def test_missing_key_is_an_error_naming_it(identity_weights):
    _edit(identity_weights, lambda doc: doc["models"][0].pop("patch"))
    with pytest.raises(ManifestError, match=r"models\.0\.patch"):
        manifest.load(identity_weights)


def test_missing_file_is_named(identity_weights):
    (identity_weights / "all.onnx").unlink()
    with pytest.raises(ManifestError, match="'all.onnx'.*does not exist"):
        manifest.load(identity_weights)


def test_sha256_mismatch_is_detected(identity_weights):
    with open(identity_weights / "all.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ManifestError, match="sha256"):
        manifest.load(identity_weights)


def test_fp16_variant_is_checked(tmp_path):
    folder = onnx_models.write_weights(tmp_path / "w",
                                       fp16_model=onnx_models.identity_model(4, fp16=True))
    assert manifest.load(folder).models[0].fp16.file == "all.fp16.onnx"
    (folder / "all.fp16.onnx").unlink()
    with pytest.raises(ManifestError, match="fp16"):
        manifest.load(folder)


@pytest.mark.parametrize("text,match", [(None, "no manifest"), ("{", "unreadable"),
                                        ('{"format": 2, "models": []}', "format")])
def test_bad_manifest_documents(tmp_path, text, match):
    if text is not None:
        (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ManifestError, match=match):
        manifest.load(tmp_path)


@pytest.mark.parametrize("field,value,match", [
    ("file", "../all.onnx", "inside the weights folder"),
    ("organelles", ["nucleus", "nucleus"], "twice"),
    ("organelles", ["nucleolus"], "organelles"),
    ("modalities", ["XX"], "modalities"),
    ("overlap", 1.0, "overlap"),
    ("input_norm", {"kind": "robust"}, "robust"),
])
def test_bad_values_are_named(identity_weights, field, value, match):
    _edit(identity_weights, lambda doc: doc["models"][0].__setitem__(field, value))
    with pytest.raises(ManifestError, match=match):
        manifest.load(identity_weights)


def test_route_prefers_named_modality_then_star(routed_weights):
    m = manifest.load(routed_weights)
    assert m.route(Organelle.NUCLEUS, Modality.BF).name == "nuc-bf-pc"
    assert m.route("nucleus", "PC").name == "nuc-bf-pc"
    assert m.route(Organelle.NUCLEUS, Modality.DIC).name == "nuc-mito-any"
    assert m.route(Organelle.ACTIN, Modality.DIC).name == "tub-act-any"
    assert m.route(Organelle.NUCLEUS, None).name == "nuc-mito-any"


def test_missing_route_error_names_the_route(tmp_path):
    entry = onnx_models.model_entry(tmp_path, "nuc", onnx_models.identity_model(1),
                                    organelles=["nucleus"], modalities=["BF"])
    m = manifest.load(onnx_models.write_manifest(tmp_path, [entry]))
    with pytest.raises(RouteError, match=r"\(nucleus, DIC\)"):
        m.route(Organelle.NUCLEUS, Modality.DIC)
    with pytest.raises(RouteError, match=r"\(actin, BF\)"):
        m.routes([Organelle.NUCLEUS, Organelle.ACTIN], Modality.BF)
    with pytest.raises(RouteError, match="unknown modality"):
        m.route(Organelle.NUCLEUS, None)


def test_routes_group_organelles_so_each_model_runs_once(routed_weights):
    m = manifest.load(routed_weights)
    groups = m.routes(ORGANELLES, Modality.DIC)
    assert {e.name: v for e, v in groups.items()} == {
        "nuc-mito-any": [Organelle.NUCLEUS, Organelle.MITOCHONDRIA],
        "tub-act-any": [Organelle.TUBULIN, Organelle.ACTIN]}
    groups = m.routes(ORGANELLES, Modality.BF)
    assert [e.name for e in groups] == ["nuc-bf-pc", "nuc-mito-any", "tub-act-any"]


def test_routing_table_marks_missing_routes(tmp_path):
    entry = onnx_models.model_entry(tmp_path, "nuc", onnx_models.identity_model(1),
                                    organelles=["nucleus"], modalities=["BF", "PC"])
    m = manifest.load(onnx_models.write_manifest(tmp_path, [entry]))
    rows = m.routing_table()
    assert len(rows) == len(ORGANELLES) * len(MODALITIES) == 12
    served = {(r.organelle, r.modality) for r in rows if r.model is not None}
    assert served == {(Organelle.NUCLEUS, Modality.BF), (Organelle.NUCLEUS, Modality.PC)}
    text = manifest.format_routing_table(rows)
    lines = [line.split() for line in text.splitlines()]
    assert lines[0] == ["organelle", "modality", "model"]
    assert lines[1:3] == [["nucleus", "BF", "nuc"], ["nucleus", "PC", "nuc"]]
    assert sum(line[-1] == "MISSING" for line in lines) == 10


def test_ambiguous_routes_and_duplicate_names_are_errors(tmp_path):
    a = onnx_models.model_entry(tmp_path, "a", onnx_models.identity_model(1),
                                organelles=["nucleus"], modalities=["BF"])
    b = onnx_models.model_entry(tmp_path, "b", onnx_models.identity_model(1),
                                organelles=["nucleus"], modalities=["BF", "PC"])
    onnx_models.write_manifest(tmp_path, [a, b])
    with pytest.raises(ManifestError, match=r"\(nucleus, BF\).*'a'.*'b'"):
        manifest.load(tmp_path)
    onnx_models.write_manifest(tmp_path, [a, dict(a, organelles=["actin"])])
    with pytest.raises(ManifestError, match="'a' is used twice"):
        manifest.load(tmp_path)
