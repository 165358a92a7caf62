"""alignpipe: SFT -> reward model -> RLHF -> model averaging -> evaluation, as one reproducible DAG."""

__version__ = "0.1.0"
