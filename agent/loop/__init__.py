"""The run loop: the stages in order, resumable from the run folder and the study storage.

- `drive`: starts a run folder and drives it stage by stage
- `rounds`: the search's rounds, the arms' spaces revised between them, and the matched round
- `arms`: whose trials are whose, the finalists, and which of them each arm is compared with
- `sequential`: more seeds until the answer is clear (`--seeds auto`)
- `conclude`: the run's answer as a RunResult
- `budget`: the command line's overrides, the trials per round, and when the rounds stop
"""

__all__ = ["arms", "budget", "conclude", "drive", "rounds", "sequential"]
