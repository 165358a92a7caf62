"""Pure weight-merging math (torch only)."""

from alignpipe.merging.average import MergeError, average_state_dicts

__all__ = ["MergeError", "average_state_dicts"]
