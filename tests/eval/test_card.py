"""The report card of one model: the enabled sections run on a real (tiny) model; one that fails is
recorded and the others' results are kept; the card table adds the relative tax vs SFT."""

import json
import math

import pytest

from alignpipe.config import EvaluationConfig
from alignpipe.eval import card
from alignpipe.models import load_policy
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "truthfulqa").is_dir(), reason="shared data absent")


def _cfg(**trust) -> EvaluationConfig:
    return EvaluationConfig.model_validate({"batch_size": 4, "trust": trust})


def test_sections_follow_the_config():
    assert card.sections(EvaluationConfig()) == []
    cfg = _cfg(ethics={"enabled": True}, xstest={"enabled": True})
    assert card.sections(cfg) == ["ethics", "xstest"]
    assert set(card.card_config(cfg)["sections"]) == {"ethics", "xstest"}


def test_a_failing_section_is_recorded_and_the_others_kept(tiny_dir, tmp_path):
    model, tok = load_policy(tiny_dir)
    data = str(SHARED_DATA)
    cfg = _cfg(ethics={"enabled": True, "n": 2, "data_dir": data}, truthfulness={"enabled": True, "n": 3, "data_dir": data},
               bbq={"enabled": True, "data_dir": str(tmp_path / "nowhere")})
    result = card.run(model, tok, cfg, tmp_path, rm_dir=tmp_path, seed=0)
    m = result.metrics
    assert 0.0 <= m["trust/truthfulqa_mc1"] <= 1.0 and 0.0 <= m["trust/ethics_fnr"] <= 1.0
    assert m["card_failed/bbq"] == 1.0 and not any(k.startswith("trust/bbq") for k in m)
    errors = json.loads((tmp_path / "errors.json").read_text())
    assert list(errors) == ["bbq"] and "nowhere" in errors["bbq"]
    assert (tmp_path / "bbq" / "traceback.txt").is_file()
    assert {k for k in m if k.startswith("wall_s/")} == {"wall_s/ethics", "wall_s/truthfulness", "wall_s/bbq"}
    assert all(m[k] >= 0 for k in m if k.startswith("wall_s/"))


def test_card_table_relative_tax_against_sft():
    rows = [{"model": "base", "kind": "base", "error": "", "tax/arc_easy/acc": 0.5},
            {"model": "sft", "kind": "sft", "error": "", "tax/arc_easy/acc": 0.4},
            {"model": "dpo", "kind": "rlhf", "error": "", "tax/arc_easy/acc": 0.3},
            {"model": "ppo", "kind": "rlhf", "error": "RuntimeError: boom"}]
    t = card.card_table(rows).set_index("model")
    assert t.loc["dpo", "tax/arc_easy/relative"] == pytest.approx(0.25)   # (0.4 - 0.3) / 0.4
    assert t.loc["base", "tax/arc_easy/relative"] == pytest.approx(-0.25)
    assert math.isnan(t.loc["ppo", "tax/arc_easy/relative"]) and t.loc["ppo", "error"] == "RuntimeError: boom"


def test_a_relative_scorer_cache_lives_under_the_artifacts_dir(tmp_path):
    cfg = _cfg(toxicity={"enabled": True})
    assert card.under_artifacts(cfg, tmp_path).trust.toxicity.scorer_dir == str(tmp_path / "models" / "toxicity-scorer")
    absolute = _cfg(toxicity={"enabled": True, "scorer_dir": "/somewhere/scorer"})
    assert card.under_artifacts(absolute, tmp_path).trust.toxicity.scorer_dir == "/somewhere/scorer"
