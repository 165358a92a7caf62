"""What every loop shares: seeding, AdamW with warm-up + cosine decay, and the batch order."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import torch

from alignpipe.config import OptimConfig


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(params, cfg: OptimConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW; lr rises linearly over warmup_ratio·steps, then follows a cosine to 0 (§1 defaults)."""
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, round(cfg.warmup_ratio * cfg.steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, cfg.steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def batch_indices(n: int, batch_size: int, steps: int, seed: int) -> Iterator[list[int]]:
    """`steps` batches of indices into n items: shuffled epochs, reshuffled each pass, deterministic in seed."""
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        batch = []
        while len(batch) < min(batch_size, n):
            if not order:
                order = list(range(n))
                rng.shuffle(order)
            batch.append(order.pop())
        yield batch


def set_threads(num_cpus: float) -> None:
    """Match torch's intra-op threads to the CPUs the stage was granted (Ray also sets OMP_NUM_THREADS)."""
    torch.set_num_threads(max(1, int(num_cpus)))
