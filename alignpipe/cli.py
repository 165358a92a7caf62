"""`alignpipe run [--config PATH] [key=value ...]`: run the pipeline flow.

The option list in `--help` is generated from the config models, so the CLI, the YAML schema and
the Prefect parameter schema cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from alignpipe.config import ConfigError, PipelineConfig, load_config
from alignpipe.data.sources import DataError
from alignpipe.models.loading import ModelNotFoundError

DEFAULT_CONFIG = "configs/pipeline/quickstart.yaml"


def config_keys(model: type[BaseModel] = PipelineConfig, prefix: str = "") -> list[str]:
    """One help line per leaf key: `a.b (default): description`."""
    lines = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            lines += config_keys(ann, f"{prefix}{name}.")
        else:
            default = field.get_default(call_default_factory=True)
            default = default.model_dump() if isinstance(default, BaseModel) else default
            desc = f": {field.description}" if field.description else ""
            lines.append(f"  {prefix}{name} (default {default!r}){desc}")
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alignpipe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="run the pipeline flow (Prefect on Ray, tracked in MLflow)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run SFT -> reward model -> RLHF -> averaging -> evaluation.",
        epilog="overrides (key=value, value parsed as YAML), e.g. sft.optim.steps=10 ray.address=auto\n\nconfig keys:\n"
        + "\n".join(config_keys()),
    )
    run.add_argument("--config", default=None, help=f"pipeline YAML (default: {DEFAULT_CONFIG} if present)")
    run.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    run.add_argument("overrides", nargs="*", metavar="key=value")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None)
    try:
        config = load_config(path, args.overrides)
        if args.print_config:
            print(json.dumps(config.model_dump(mode="json"), indent=2))
            return 0
        from alignpipe.preflight import preflight

        preflight(config)
    except (ConfigError, DataError, ModelNotFoundError) as e:
        print(f"alignpipe: error: {e}", file=sys.stderr)
        return 2
    from flows.align import run_pipeline  # heavy imports (prefect, ray) only when running

    config_text = Path(path).read_text() if path else ""
    config_text += "".join(f"# override: {o}\n" for o in args.overrides)
    result = run_pipeline(config, config_text)
    print(f"pipeline finished: MLflow parent run {result['parent_run_id']}; evaluation table and plots in {result['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
