"""The run loop: the stages in order, resumable from the run folder and the study storage.

- `drive`: starts a run folder and drives it stage by stage
"""

__all__ = ["drive"]
