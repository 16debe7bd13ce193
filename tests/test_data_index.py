"""index on the replica: every injected quirk reported with its action; counts; exit status."""

from __future__ import annotations

import csv
import json
from collections import Counter

import numpy as np
import pytest
import tifffile

from lightmycells.data import catalog
from lightmycells.data.__main__ import main
from lightmycells.data.index import Action, Issue, build_index
from lightmycells.simulate.replica import Quirk, make_replica, metadata_only_bigtiff

#: The replica's quirk → the issue index must report, and what it must do with the file.
EXPECTED = {
    Quirk.DUPLICATE_ENTRIES: (Issue.DUPLICATE_ENTRY, Action.KEPT_ONCE),
    Quirk.METADATA_ONLY_BIGTIFF: (Issue.METADATA_ONLY, Action.SKIPPED),
    Quirk.INVALID_TIFF_TARGET: (Issue.NOT_A_TIFF, Action.SKIPPED),
    Quirk.CONSTANT_IMAGES: (Issue.CONSTANT, Action.SKIPPED),
    Quirk.MISSING_POSITION_Z: (Issue.NO_POSITION_Z, Action.KEPT),
    Quirk.COMPRESSED_BIGTIFF: (Issue.COMPRESSED_BIGTIFF, Action.KEPT),
}


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    root = tmp_path_factory.mktemp("replica")
    return make_replica(root, studies=[3, 4, 7, 25, 28], max_fovs=2, seed=3)


def _quirks(root):
    with (root / "quirks.tsv").open() as handle:
        return [(Quirk(r["quirk"]), r["file"]) for r in csv.DictReader(handle, delimiter="\t")]


def test_replica_follows_the_organisers_lists(replica):
    root = replica.root
    studies = catalog.studies()
    for rel in replica.files:
        study, name = rel.split("/")
        assert name in studies[study].rows  # every file name is a listed one
    # the real quirk locations and partial labels of PROVENANCE.md are reproduced
    assert ("Study_28/image_2492_Nucleus.ome.tiff" in replica.files)
    assert (root / "Study_28/image_2492_Nucleus.ome.tiff").stat().st_size == 4096
    nuclei = {r for r in replica.files if r.startswith("Study_28/") and r.endswith("Nucleus"
                                                                                   ".ome.tiff")}
    mitos = {r for r in replica.files if r.startswith("Study_28/") and "Mitochondria" in r}
    assert len(mitos) > len(nuclei)  # Study 28: some fields of view have no nucleus target
    # planes per field of view as listed (Study 7: 13 DIC planes each), pixel size per study
    study7 = Counter(r.split("_DIC_")[0] for r in replica.files if "Study_7/" in r and "_z" in r)
    assert set(study7.values()) == {13}
    with tifffile.TiffFile(root / "Study_4" / "image_61_DIC_z0.ome.tiff") as tif:
        assert 'PhysicalSizeX="0.06"' in tif.ome_metadata  # REMBI: Study 4 is 60 nm
        assert tif.pages.first.dtype == np.uint16


def test_index_reports_every_injected_quirk_with_its_action(replica):
    result = build_index(replica.root, jobs=2)
    found = {(f.issue, f.file): f.action for f in result.findings}
    injected = _quirks(replica.root)
    assert {q for q, _ in injected} == set(Quirk)
    for quirk, rel in injected:
        issue, action = EXPECTED[quirk]
        assert found.get((issue, rel)) == action, (quirk, rel)
    listed = {(i, f) for i, f in found}
    assert {i for i, _ in listed} == {e[0] for e in EXPECTED.values()}  # nothing invented
    usable = {p for f in result.fovs for p in [*f["planes"], *f["targets"].values()]}
    skipped = {rel for q, rel in injected if EXPECTED[q][1] is Action.SKIPPED}
    assert skipped and not skipped & usable
    kept = {rel for q, rel in injected if EXPECTED[q][1] is not Action.SKIPPED} - skipped
    assert kept and kept <= usable


def test_index_counts_and_file(replica, capsys, tmp_path):
    out = tmp_path / "idx.json"
    assert main(["index", str(replica.root), "--out", str(out), "--jobs", "1",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    for _, rel in _quirks(replica.root):
        assert rel in text
    data = json.loads(out.read_text())
    skipped = {rel for q, rel in _quirks(replica.root) if EXPECTED[q][1] is Action.SKIPPED}
    # fields of view per study: those of the replica's files (planes that were not skipped)
    expected = Counter()
    for rel in {r for r in replica.files if "_z" in r and r not in skipped}:
        study, name = rel.split("/")
        expected[study, name.split("_z")[0]] += 1
    got = {(f["study"], f"image_{f['image_id']}_{f['modality']}"): len(f["planes"])
           for f in data["fovs"]}
    assert got == dict(expected)
    assert data["counts"]["study"] == dict(Counter(s for s, _ in expected))
    assert data["counts"]["total"]["planes"] == sum(expected.values())
    targets = Counter(r.rsplit("_", 1)[1].split(".")[0].lower() for r in replica.files
                      if "_z" not in r and r not in skipped)
    assert data["counts"]["organelle"] == dict(targets)
    assert "Study_28\t" in text and "usable:" in text


def test_clean_replica_has_no_findings(tmp_path):
    make_replica(tmp_path, studies=[1], max_fovs=2, quirks=())
    result = build_index(tmp_path)
    assert result.findings == []
    assert result.counts()["total"]["fovs"] == 2


def test_exit_nonzero_only_when_nothing_usable(tmp_path, capsys):
    make_replica(tmp_path, studies=[28], max_fovs=1, quirks=())
    for target in tmp_path.glob("Study_28/*_Mitochondria.ome.tiff"):
        target.write_bytes(metadata_only_bigtiff((64, 64), "Mitochondria", 0.106))
    for target in tmp_path.glob("Study_28/*_Nucleus.ome.tiff"):
        target.unlink()
    assert main(["index", str(tmp_path), "--no-progress", "--jobs", "1"]) == 1
    assert "nothing usable" in capsys.readouterr().err
    (tmp_path / "Study_28" / "notes.txt").write_text("x")
    result = build_index(tmp_path)
    assert any(f.issue is Issue.UNKNOWN_NAME and f.file == "Study_28/notes.txt"
               for f in result.findings)


def test_replica_command_line(tmp_path, capsys):
    from lightmycells.simulate.replica import main as replica_main

    assert replica_main([str(tmp_path), "--studies", "4", "--max-fovs", "1", "--quirks",
                         "duplicate-entries", "constant-images"]) == 0
    assert "injected quirks" in capsys.readouterr().out
    quirks = {q for q, _ in _quirks(tmp_path)}
    assert quirks == {Quirk.DUPLICATE_ENTRIES, Quirk.CONSTANT_IMAGES}
    listed = (tmp_path / "files.tsv").read_text().splitlines()[1:]
    assert len(listed) == len(set(listed)) + 1  # the one nucleus listed twice
