import csv
import os

import pytest
import torch
import yaml

from tests.test_train_helpers import make_studies, tiny_config, torchrun

pytestmark = [pytest.mark.torch, pytest.mark.slow]


def test_two_process_torchrun_gloo_smoke(tmp_path):
    root = make_studies(tmp_path / "lmc")
    cfg = tiny_config(root, tmp_path / "run", steps=3, checkpoint_every=2, val__every=2)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    done = torchrun(config, os.getcwd())
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("[train] done: step 3") == 2  # both ranks ran to the end
    with (tmp_path / "run" / "log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows if r["loss"]] == [1, 2, 3]  # rank 0 logs once
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["step"] == 3
