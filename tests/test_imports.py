"""Every module imports (torchtune's lesson: a module that cannot be imported must fail CI), and the
pure layers pull in none of the orchestration or model libraries."""

import importlib
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

MODULES = sorted(
    ".".join(p.relative_to(REPO).with_suffix("").parts)
    for pkg in ("alignpipe", "tasks", "flows") for p in (REPO / pkg).rglob("*.py") if p.name != "__init__.py"
)
PURE = sorted(
    ".".join(p.relative_to(REPO).with_suffix("").parts)
    for layer in ("losses", "rl", "merging", "calibration") for p in (REPO / "alignpipe" / layer).glob("*.py")
) + ["alignpipe.eval.metrics", "alignpipe.data.world"]
HEAVY = ("prefect", "ray", "mlflow", "transformers")


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports(module):
    importlib.import_module(module)


def _loaded_after_import(module: str) -> list[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_orchestration_or_model_libraries(module):
    assert _loaded_after_import(module) == []


@pytest.mark.parametrize("module", ["alignpipe.training.sft", "alignpipe.training.dpo", "alignpipe.tracking", "alignpipe.config"])
def test_library_modules_import_no_orchestration(module):
    assert [m for m in _loaded_after_import(module) if m != "transformers"] == []
