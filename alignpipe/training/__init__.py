"""One self-contained training loop per algorithm; each exposes `run(cfg, ..., out_dir, log) -> StageResult`."""
