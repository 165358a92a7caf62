"""Benchmark of the ratio search (issue #5): prints numbers, asserts nothing.

1. in-memory merge time of two checkpoints (MA and a 3-block HMA spec);
2. peak resident memory of the streamed merge (`merge_files`) in a fresh process, against the
   checkpoint size and against an in-memory merge in the same kind of process;
3. candidates evaluated per minute (in-memory merge + the evaluation stage's work) with 1 Ray worker
   holding both CPUs and with 2 workers of 1 CPU each.

    .venv/bin/python bench/hma_search.py --sft DIR --rlhf DIR --rm DIR --data DIR [--candidates 4]

The directories are stage outputs of a pipeline run (e.g. artifacts/stages/sft/<fp>/model, …/rlhf_dpo/<fp>/model,
…/reward_model/<fp>/model, …/data/<fp>); by default the newest of each under artifacts/stages.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Peak RSS from /proc: VmHWM, reset by writing 5 to clear_refs after the imports (ru_maxrss would
# carry the parent's high-water mark across fork + exec).
_CHILD = r"""
import sys, threading, time
from pathlib import Path
import torch
from safetensors.torch import load_file
from alignpipe.merging.blocks import BlockSpec, merge_blocks
from alignpipe.merging.stream import merge_files
def status(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field))
peak_anon, done = [0], threading.Event()
def sample():  # anonymous memory has no high-water mark in /proc: poll it
    while not done.is_set():
        peak_anon[0] = max(peak_anon[0], status("RssAnon:"))
        time.sleep(0.002)
mode, sft, rl, out = sys.argv[1:5]
open("/proc/self/clear_refs", "w").write("5")
base, base_anon = status("VmHWM:"), status("RssAnon:")
threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
spec = BlockSpec((0, 10, 20, 30), (0.1, 0.2, 0.3), 0.2, 0.2)
if mode == "stream":
    merge_files(Path(sft), Path(rl), spec, Path(out))
elif mode == "memory":
    merged = merge_blocks(load_file(Path(sft) / "model.safetensors"), load_file(Path(rl) / "model.safetensors"), spec)
secs = time.perf_counter() - t0
done.set()
print(base, status("VmHWM:"), secs, base_anon, peak_anon[0])
"""


def newest(stage: str, sub: str = "") -> Path:
    dirs = sorted((REPO / "artifacts" / "stages" / stage).glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not dirs:
        raise SystemExit(f"no finished '{stage}' stage under artifacts/stages: pass its directory explicitly")
    return dirs[-1].parent / sub if sub else dirs[-1].parent


def merge_timing(sft: Path, rl: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from alignpipe.merging.blocks import BlockSpec, layer_count, merge_blocks

    s, r = load_file(sft / "model.safetensors"), load_file(rl / "model.safetensors")
    n = layer_count(r)
    params = sum(t.numel() for t in r.values())
    torch.set_num_threads(2)
    for name, spec in {"MA α=0.2": BlockSpec.uniform(n, 3, 0.2),
                       "HMA (0.1, 0.2, 0.3)": BlockSpec((0, n // 3, 2 * n // 3, n), (0.1, 0.2, 0.3), 0.2, 0.2)}.items():
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            merge_blocks(s, r, spec)
            times.append(time.perf_counter() - t0)
        print(f"in-memory merge, {name}: {min(times):.3f} s (best of 3; {params / 1e6:.1f} M parameters, {n} layers)")


def merge_memory(sft: Path, rl: Path, tmp: Path) -> None:
    size = sum(f.stat().st_size for f in rl.glob("*.safetensors")) / 2**20
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for mode in ("stream", "memory"):
        out = tmp / f"merged-{mode}-{time.time_ns()}"
        line = subprocess.run([sys.executable, "-c", _CHILD, mode, str(sft), str(rl), str(out)], env=env, check=True,
                              capture_output=True, text=True).stdout.split()
        base, peak, secs, base_anon, peak_anon = (float(x) for x in line)
        extra, anon = (peak - base) / 1024, (peak_anon - base_anon) / 1024
        print(f"{mode:6s} merge: {secs:.1f} s; peak RSS +{extra:.0f} MiB ({extra / size:.2f}× the {size:.0f} MiB checkpoint), "
              f"of which anonymous +{anon:.0f} MiB ({anon / size:.2f}×; the rest is memory-mapped input pages)")


def throughput(sft: Path, rl: Path, rm: Path, data: Path, n: int) -> None:
    import ray

    from alignpipe.config import EvaluationConfig

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}})

    @ray.remote
    def evaluate_candidate(alphas: tuple[float, ...], threads: int) -> float:
        import tempfile

        import torch

        from alignpipe.data.snapshot import read_snapshot
        from alignpipe.eval import evaluate
        from alignpipe.merging.search import slice_spec
        from alignpipe.models import load_merged_policy

        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        model, tok = load_merged_policy(sft, rl, slice_spec(30, alphas, sum(alphas) / len(alphas)))
        with tempfile.TemporaryDirectory() as out:
            evaluate.run(model, tok, rm, read_snapshot(data / "eval_prompts.parquet"), read_snapshot(data / "probes.parquet"),
                         EvaluationConfig(), Path(out), max_length=160, seed=0)
        return time.perf_counter() - t0

    vectors = [(0.2 + 0.02 * i, 0.2, 0.2 - 0.02 * i) for i in range(n)]
    ray.get(evaluate_candidate.options(num_cpus=2).remote(vectors[0], 2))  # warm the worker (imports, page cache)
    for workers in (1, 2):
        cpus = 2 // workers
        t0 = time.perf_counter()
        each = ray.get([evaluate_candidate.options(num_cpus=cpus).remote(v, cpus) for v in vectors])
        wall = time.perf_counter() - t0
        print(f"{workers} worker(s) × {cpus} CPU: {n} candidates in {wall:.1f} s = {60 * n / wall:.2f} candidates/min "
              f"(each {min(each):.1f}–{max(each):.1f} s)")
    ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft", type=Path)
    ap.add_argument("--rlhf", type=Path)
    ap.add_argument("--rm", type=Path)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--tmp", type=Path, default=Path("/tmp"))
    ap.add_argument("--skip-throughput", action="store_true")
    a = ap.parse_args()
    sft, rl = a.sft or newest("sft", "model"), a.rlhf or newest("rlhf_dpo", "model")
    print(json.dumps({"sft": str(sft), "rlhf": str(rl)}))
    merge_timing(sft, rl)
    merge_memory(sft, rl, a.tmp)
    if not a.skip_throughput:
        throughput(sft, rl, a.rm or newest("reward_model", "model"), a.data or newest("data"), a.candidates)


if __name__ == "__main__":
    main()
