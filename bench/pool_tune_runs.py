"""Several bench/tune_rl.py runs read as one: per setting, the gold gain over SFT pooled over training seeds and
over SFT policies (one --ref each), with an error bar that counts all three sources of noise.

    .venv/bin/python bench/tune_rl.py ppo --ref /tmp/ref400 --seed 0 10 > /tmp/ppo_s0.log
    .venv/bin/python bench/tune_rl.py ppo --ref /tmp/ref400s1 --seed 1 11 > /tmp/ppo_s1.log     # one per SFT seed
    .venv/bin/python bench/pool_tune_runs.py /tmp/ppo_s*.log [/tmp/other_setting_*.log ...]

Reads every JSON line tune_rl printed (one per training run: method, overrides, ref, prompts_sha and the
per-prompt gold differences from that ref's SFT policy, gold_diffs). A setting is a (method, overrides) pair.
Within a setting, the runs of one ref (training-seed replicates of one SFT policy) are averaged prompt by
prompt; the refs are then the replicates of alignpipe.eval.metrics.replicated_paired_gain. They are scored
on the same eval prompts (the world has its own seed; prompts_sha is checked), so their prompt noise is
correlated and is counted once, as combine_tables does for whole tables. Averaging within a ref first keeps
the design nested: the refs' spread carries the SFT-seed noise and what is left of the training-seed noise.

Columns: method, overrides, refs, runs, each ref's gain (mean over its runs), the pooled gain, se (± prompts,
± refs) and z. Lines from tune_rl versions that did not print gold_diffs are listed and left out.
`--versus SETTING` measures every other setting against SETTING instead of SFT, ref by ref and prompt by prompt
(e.g. `--versus more_sft`: what IRFT or RFT add over plain SFT continued as long on the same demonstrations).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignpipe.eval.metrics import replicated_paired_gain  # noqa: E402


def read_records(paths: list[Path]) -> list[dict]:
    """The training-run JSON lines of tune_rl logs (lines starting with '{"method"' that carry a seed)."""
    records = []
    for path in paths:
        for line in path.read_text().splitlines():
            if line.startswith('{"method"'):
                record = json.loads(line)
                if "seed" in record:
                    records.append(record | {"log": str(path)})
    return records


def setting_name(method: str, overrides) -> str:
    return " ".join([method, *overrides])


def ref_means(by_ref: dict[str, list]) -> dict[str, np.ndarray]:
    """ref -> per-prompt gold difference from SFT, averaged over that ref's runs (its training seeds)."""
    return {ref: np.mean([r["gold_diffs"] for r in runs], axis=0) for ref, runs in by_ref.items()}


def pool(records: list[dict], versus: str | None = None) -> list[dict]:
    """records: tune_rl training-run records with ref, prompts_sha and gold_diffs. -> one row per setting
    (method, overrides), in the order settings first appear. ValueError when runs to be paired were scored on
    different prompts.

    versus: a setting's name ("method overrides…", or the method alone when it has one setting) to measure the
    others against instead of SFT: on each ref both have, the setting's per-prompt gain minus the baseline's,
    then the refs pooled as before (refs missing from either are left out and counted in `refs_left_out`).
    """
    groups: dict[tuple, dict[str, list]] = {}
    for r in records:
        groups.setdefault((r["method"], tuple(r["overrides"])), {}).setdefault(r["ref"], []).append(r)
    key = None
    if versus is not None:
        matches = [k for k in groups if setting_name(*k) == versus] or [k for k in groups if k[0] == versus]
        if len(matches) != 1:
            raise ValueError(f"--versus {versus!r}: want one of the settings {sorted(setting_name(*k) for k in groups)}")
        key, versus = matches[0], setting_name(*matches[0])
    base = groups.get(key, {})
    base_means = ref_means(base)
    rows = []
    for (method, overrides), by_ref in groups.items():
        if (method, overrides) == key:
            continue
        name = setting_name(method, overrides)
        paired = {ref: runs + base[ref] for ref, runs in by_ref.items() if ref in base} if versus else by_ref
        shas = {ref: {r["prompts_sha"] for r in runs} for ref, runs in paired.items()}
        if len(set().union(*shas.values())) > 1:
            raise ValueError(f"{name}{' vs ' + versus if versus else ''}: runs scored on different eval prompts "
                             f"(prompts_sha per ref: {shas}); they cannot be paired prompt by prompt")
        per_ref = {ref: mean - base_means.get(ref, 0.0) for ref, mean in ref_means(by_ref).items() if ref in paired}
        row = {"method": method, "overrides": " ".join(overrides) or "(defaults)", "versus": versus or "sft",
               "refs": len(per_ref), "runs": sum(len(by_ref[ref]) for ref in paired),
               "refs_left_out": len(set(by_ref) ^ set(base)) if versus else 0}  # refs in only one of the two
        if not per_ref:
            rows.append(row | {"per_ref": {}})
            continue
        stats = replicated_paired_gain(np.stack(list(per_ref.values()), axis=1))
        rows.append(row | {"per_ref": {ref: round(float(d.mean()), 4) for ref, d in per_ref.items()}, **stats})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", type=Path, nargs="+", help="tune_rl outputs")
    ap.add_argument("--versus", default=None, help="a setting to measure the others against instead of SFT, e.g. "
                    "more_sft (the continued-SFT control of IRFT and RFT)")
    args = ap.parse_args()
    missing = [str(p) for p in args.logs if not p.is_file()]
    if missing:
        ap.error(f"no such log file: {', '.join(missing)}")
    records = read_records(args.logs)
    old = [r for r in records if "gold_diffs" not in r]
    for r in old:
        print(f"left out (no gold_diffs): {r['log']} {r['method']} seed {r['seed']} {' '.join(r['overrides'])} "
              f"gold_vs_sft {r['gold_vs_sft']:+.4f}", file=sys.stderr)
    try:
        rows = pool([r for r in records if "gold_diffs" in r], args.versus)
    except ValueError as e:
        ap.error(str(e))
    for row in rows:
        head = f"{row['method']:5s} {row['overrides']:40s} vs {row['versus']}: refs {row['refs']} runs {row['runs']:2d}"
        head += f" ({row['refs_left_out']} refs not in both left out)" if row["refs_left_out"] else ""
        if not row["per_ref"]:
            print(f"{head}  no ref in common")
            continue
        per_ref = " ".join(f"{Path(ref).name} {g:+.4f}" for ref, g in row["per_ref"].items())
        refs = f"± {row['se_seed']:.4f} refs" if row["refs"] > 1 else "one ref: SFT-seed noise not counted"
        print(f"{head}  [{per_ref}]  gain {row['gain']:+.4f} ± {row['se']:.4f} (± {row['se_prompts']:.4f} prompts, "
              f"{refs})  z {row['z']:.2f}")


if __name__ == "__main__":
    main()
