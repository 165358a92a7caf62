"""The CLI refuses bad input with one clear line, before any server, Ray worker or training starts."""

import json

import pytest

from alignpipe.cli import main
from tests.conftest import REPO

TINY = str(REPO / "configs/pipeline/tiny.yaml")


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("alignpipe: error:")  # one line, no traceback
    return err


def test_unknown_key(capsys, tmp_path):
    err = _error(capsys, ["run", "--config", TINY, f"artifacts_dir={tmp_path}", "sft.optim.lrr=1"])
    assert "unknown config key 'sft.optim.lrr'" in err and "tiny.yaml" in err
    assert not (tmp_path / "stages").exists()


def test_missing_model_path(capsys, tmp_path):
    err = _error(capsys, ["run", "--config", TINY, f"artifacts_dir={tmp_path}", "model.name=/no/such/model/dir"])
    assert "/no/such/model/dir" in err
    assert not (tmp_path / "stages").exists()


def test_malformed_data_row(capsys, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps({"prompt": "p", "chosen": "a"}) + "\n")
    err = _error(capsys, ["run", "--config", TINY, f"artifacts_dir={tmp_path}", f"data.preferences.path={data}"])
    assert f"{data} row 1: field 'rejected'" in err
    assert not (tmp_path / "stages").exists()


def test_help_lists_config_keys(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "sft.optim.lr (default 2e-05)" in out and "data.world.length_bias" in out and "ray.address" in out


def test_print_config_resolves_overrides(capsys):
    assert main(["run", "--config", TINY, "--print-config", "rlhf.beta=0.3"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["rlhf"]["beta"] == 0.3 and cfg["model"]["name"] == "tiny"


def test_missing_real_pairs_file_is_named(capsys, tmp_path):
    err = _error(capsys, ["run", "--config", TINY, f"artifacts_dir={tmp_path}", "reward_eval.hh_rlhf=/no/such/hh.jsonl.gz"])
    assert "reward_eval.hh_rlhf" in err and "/no/such/hh.jsonl.gz" in err
