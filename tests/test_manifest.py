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
    with pytest.raises(ManifestError, match=r"models\.0 \(all\)\.patch: Field required$"):
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
    assert {r.pixel_sizes for r in rows} == {"any"}
    text = manifest.format_routing_table(rows)
    lines = [line.split() for line in text.splitlines()]
    assert lines[0] == ["organelle", "modality", "µm/pixel", "model"]
    assert lines[1:3] == [["nucleus", "BF", "any", "nuc"], ["nucleus", "PC", "any", "nuc"]]
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


# --- input_norm: a validated union on 'kind' ---------------------------------------------------

def test_shipped_manifest_loads_unchanged():
    """The repository's weights/manifest.json (no new keys) still loads, sha256s checked."""
    from pathlib import Path

    from lightmycells.engine import normalize
    folder = Path(__file__).resolve().parents[1] / "weights"
    m = manifest.load(folder)
    assert len(m.models) == 4
    for entry in m.models:
        assert entry.input_norm.build() == normalize.Percentile(low=2.0, high=99.8)
        assert entry.pixel_size_um_range is None and entry.zstack == "plane"


@pytest.mark.parametrize("spec,expected", [
    ({"kind": "percentile"}, ("Percentile", 2.0, 99.8)),
    ({"kind": "percentile", "low": 1, "high": 99.5}, ("Percentile", 1.0, 99.5)),
    ({"kind": "zscore"}, ("ZScore",)),
    ({"kind": "minmax"}, ("MinMax",)),
    ({"kind": "none"}, ("Identity",)),
])
def test_input_norm_kinds_build_their_normaliser(tmp_path, spec, expected):
    folder = onnx_models.write_weights(tmp_path, input_norm=spec)
    built = manifest.load(folder).models[0].input_norm.build()
    assert type(built).__name__ == expected[0]
    if expected[0] == "Percentile":
        assert (built.low, built.high) == expected[1:]


@pytest.mark.parametrize("spec,match", [
    ({"kind": "percentile", "low": "2"}, r"input_norm\.low: Input should be a valid number "
                                         r"\(got '2'\)"),
    ({"kind": "percentile", "high": True}, r"input_norm\.high: .*\(got True\)"),
    ({"kind": "percentile", "low": 99.9, "high": 2}, r"input_norm: .*low must be below high"),
    ({"kind": "percentile", "high": 101}, r"input_norm\.high: .*less than or equal to 100"),
    ({"kind": "zscore", "low": 2.0}, r"input_norm\.low: Extra inputs are not permitted"),
    ({"kind": "robust"}, r"input_norm: .*'robust'.*'percentile'"),
    ({"low": 2.0}, r"input_norm: .*discriminator 'kind'"),
])
def test_bad_input_norm_names_the_entry_and_the_key(tmp_path, spec, match):
    onnx_models.write_weights(tmp_path, name="nuc", input_norm=spec)
    with pytest.raises(ManifestError, match=r"models\.0 \(nuc\)\." + match) as info:
        manifest.load(tmp_path)
    assert "\n" not in str(info.value)


# --- pixel_size_um_range and zstack keys -------------------------------------------------------

def _ranged(folder, name, lo_hi, modalities=("BF",), organelles=("nucleus",), **kwargs):
    entry = onnx_models.model_entry(folder, name, onnx_models.identity_model(len(organelles)),
                                    organelles=organelles, modalities=modalities, **kwargs)
    return entry if lo_hi is False else dict(entry, pixel_size_um_range=lo_hi)


@pytest.mark.parametrize("value,match", [
    ([0.1, 0.05], "0 <= lo < hi"), ([0.1, 0.1], "0 <= lo < hi"), ([-0.1, None], "0 <= lo < hi"),
    ([float("nan"), 0.1], "0 <= lo < hi"), ([0.1], r"\.1: Field required"), ([None, 0.1], "number"),
])
def test_bad_ranges_are_refused(tmp_path, value, match):
    onnx_models.write_manifest(tmp_path, [_ranged(tmp_path, "a", value)])
    with pytest.raises(ManifestError, match=r"models\.0 \(a\)\.pixel_size_um_range.*" + match):
        manifest.load(tmp_path)


def test_zstack_key_is_a_closed_choice(tmp_path):
    entries = [
        dict(_ranged(tmp_path, "a", False), zstack="mip"),
        dict(_ranged(tmp_path, "b", False, organelles=("actin",)), zstack=None),
        _ranged(tmp_path, "c", False, organelles=("tubulin",))]
    m = manifest.load(onnx_models.write_manifest(tmp_path, entries))
    assert [e.zstack for e in m.models] == ["mip", "plane", "plane"]
    for bad in ("sharpest", "all"):  # 'all' is an inference choice, not a way to train
        onnx_models.write_manifest(tmp_path, [dict(entries[0], zstack=bad)])
        with pytest.raises(ManifestError,
                           match=rf"models\.0 \(a\)\.zstack: .*'plane'.*\(got '{bad}'\)"):
            manifest.load(tmp_path)


def test_open_ended_ranges_are_accepted(tmp_path):
    entries = [_ranged(tmp_path, "fine", [0, 0.09]), _ranged(tmp_path, "coarse", [0.09, None])]
    m = manifest.load(onnx_models.write_manifest(tmp_path, entries))
    assert [m.route("nucleus", "BF", s).name for s in (1e-4, 0.0899, 0.09, 50)] == [
        "fine", "fine", "coarse", "coarse"]
    assert [r.pixel_sizes for r in m.routing_table([Organelle.NUCLEUS], [Modality.BF])] == [
        "[0, 0.09)", "[0.09, ∞)", "other"]


@pytest.fixture
def magnifications(tmp_path):
    """nucleus on BF: three touching ranges, no range-less entry."""
    entries = [_ranged(tmp_path, "m100x", [0.05, 0.09]), _ranged(tmp_path, "m60x", [0.09, 0.2]),
               _ranged(tmp_path, "m20x", [0.2, None])]
    return manifest.load(onnx_models.write_manifest(tmp_path, entries))


@pytest.mark.parametrize("size,name", [
    (0.05, "m100x"), (0.0899999, "m100x"), (0.09, "m60x"), (0.1999999, "m60x"), (0.2, "m20x"),
    (5.0, "m20x"), ((0.1, 0.1), "m60x"),
    # anisotropic: the geometric mean sqrt(0.045 * 0.2) = 0.0949 (min would say 100x, max 20x)
    ((0.045, 0.2), "m60x"), ((0.2, 0.045), "m60x"), ((0.04, 0.2), "m100x"),  # sqrt = 0.0894
])
def test_range_boundaries_lo_inclusive_hi_exclusive(magnifications, size, name):
    assert magnifications.route("nucleus", "BF", size).name == name


def test_pixel_size_outside_every_range_or_missing_is_one_clear_line(magnifications):
    with pytest.raises(manifest.PixelSizeRouteError) as info:
        magnifications.route("nucleus", "BF", 0.0499)
    text = str(info.value)
    assert "(nucleus, BF) at 0.0499 µm" in text and "\n" not in text
    assert "'m100x' [0.05, 0.09) µm, 'm60x' [0.09, 0.2) µm, 'm20x' [0.2, ∞) µm" in text
    with pytest.raises(manifest.PixelSizeRouteError, match=r"\(y, x\) = \(0.01, 0.2\) µm, "
                       r"routed as their geometric mean 0.04472 µm"):
        magnifications.route("nucleus", "BF", (0.01, 0.2))
    with pytest.raises(manifest.PixelSizeRouteError,
                       match=r"\(nucleus, BF\): the file states no pixel size.*'m20x' \[0.2, ∞\)"):
        magnifications.route("nucleus", "BF", None)
    with pytest.raises(RouteError, match=r"no entry lists 'nucleus' with modality PC or '\*'"):
        magnifications.route("nucleus", "PC", 0.1)  # no entry at all: the plain error


def test_precedence_specific_range_then_star_range_then_rangeless(tmp_path):
    entries = [_ranged(tmp_path, "any", False, modalities=["*"]),
               _ranged(tmp_path, "bf", False),
               _ranged(tmp_path, "any-r", [0.05, 0.3], modalities=["*"]),
               _ranged(tmp_path, "bf-r", [0.1, 0.2])]  # file order must not matter
    m = manifest.load(onnx_models.write_manifest(tmp_path, entries))
    for modality, size, name in [("BF", 0.15, "bf-r"), ("BF", 0.25, "any-r"), ("BF", 0.5, "bf"),
                                 ("BF", None, "bf"), ("PC", 0.15, "any-r"), ("PC", 0.5, "any"),
                                 (None, 0.15, "any-r"), (None, None, "any")]:
        assert m.route("nucleus", modality, size).name == name, (modality, size)


def test_overlapping_ranges_are_refused_naming_both(tmp_path):
    def load(*entries):
        return manifest.load(onnx_models.write_manifest(tmp_path, list(entries)))

    touching = load(_ranged(tmp_path, "a", [0.05, 0.1]), _ranged(tmp_path, "b", [0.1, None]))
    assert [e.name for e in touching.models] == ["a", "b"]
    beside = load(_ranged(tmp_path, "a", [0.05, 0.1]), _ranged(tmp_path, "b", False))
    assert len(beside.models) == 2  # a range-less entry beside a ranged one: the fallback
    star_beside_bf = load(_ranged(tmp_path, "a", [0.05, 0.2]),
                          _ranged(tmp_path, "b", [0.1, 0.3], modalities=["*"]))
    assert len(star_beside_bf.models) == 2  # different modality keys: precedence decides
    for a, b in [([0.05, 0.15], [0.1, 0.2]), ([0.1, None], [0.3, 0.5]), ([0.1, 0.2], [0.1, 0.2])]:
        with pytest.raises(ManifestError, match=rf"route \(nucleus, BF\) is claimed by both 'a' "
                           rf"\[{a[0]}, .*\) µm and 'b' \[{b[0]}, .*\) µm.*must not overlap"):
            load(_ranged(tmp_path, "a", a), _ranged(tmp_path, "b", b))
    with pytest.raises(ManifestError, match=r"\(nucleus, PC\) is claimed by both 'a'.*'b'"):
        load(_ranged(tmp_path, "a", [0.05, 0.15], modalities=["BF", "PC"]),
             _ranged(tmp_path, "b", [0.1, 0.2], modalities=["PC"]))


def test_routing_table_has_a_row_per_range(tmp_path):
    entries = [_ranged(tmp_path, "m100x", [0.05, 0.09]), _ranged(tmp_path, "m60x", [0.09, 0.2]),
               _ranged(tmp_path, "wide", [0.3, None], modalities=["*"]),
               _ranged(tmp_path, "fallback", False, modalities=["PC"])]
    m = manifest.load(onnx_models.write_manifest(tmp_path, entries))
    rows = [(r.modality, r.pixel_sizes, r.model.name if r.model else None)
            for r in m.routing_table([Organelle.NUCLEUS])]
    assert rows == [
        ("BF", "[0.05, 0.09)", "m100x"), ("BF", "[0.09, 0.2)", "m60x"), ("BF", "[0.3, ∞)", "wide"),
        ("BF", "other", None),
        ("PC", "[0.3, ∞)", "wide"), ("PC", "other", "fallback"),
        ("DIC", "[0.3, ∞)", "wide"), ("DIC", "other", None)]
    text = manifest.format_routing_table(m.routing_table([Organelle.NUCLEUS]))
    assert "nucleus    BF        [0.05, 0.09)  m100x" in text
    assert "nucleus    BF        other         -" in text and "MISSING" not in text


def test_routing_table_merges_touching_ranges_of_one_model(tmp_path):
    entries = [_ranged(tmp_path, "bf", [0.1, 0.2]),
               _ranged(tmp_path, "star", [0.05, 0.3], modalities=["*"])]
    m = manifest.load(onnx_models.write_manifest(tmp_path, entries))
    rows = [(r.pixel_sizes, r.model.name if r.model else None)
            for r in m.routing_table([Organelle.NUCLEUS], [Modality.BF])]
    # star serves [0.05, 0.1) and [0.2, 0.3) around bf's range: two stretches, not merged
    assert rows == [("[0.05, 0.1)", "star"), ("[0.1, 0.2)", "bf"), ("[0.2, 0.3)", "star"),
                    ("other", None)]
