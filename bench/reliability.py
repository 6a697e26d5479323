"""Reliability: real faults injected into real studies, and the bad-input corpus played through the CLI.

Runs every fault scenario of tests/faults.py (worker processes, real signals, a real database server going
down) and every case of tests/data/bad_inputs/cases.json, and counts:

- trials asked / finished / lost / finished twice: a ticket is lost when no attempt of it ended, and finished
  twice when two did; the deliberately faulty tickets are counted apart, as failed on purpose;
- faults injected / survived: a fault is survived when its study still ended exactly as asked;
- bad inputs tried / handled: handled means the expected exit code, one error line, no traceback, no secret
  echoed and no file changed outside the run folder.

The PostgreSQL scenarios use $RESEARCH_LOOP_TEST_POSTGRES (default: trust auth on 127.0.0.1:5432, database
`test`) and a throwaway server of their own for the restart; without PostgreSQL they are left out, and said so.

    python bench/reliability.py            # everything (about 3 min on 2 cores)
    python bench/reliability.py --smoke    # a few trials and cases, to check the script runs
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import common

sys.path.insert(0, str(common.REPO / "tests"))

import bad_inputs  # noqa: E402 - the scenarios and the corpus live with the tests that assert them
import faults  # noqa: E402
from faults import Lab, Outcome, Postgres, PostgresUnavailable  # noqa: E402

from experiments import storage as storages  # noqa: E402

POSTGRES = os.environ.get("RESEARCH_LOOP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

Scenario = Callable[[Lab, Postgres | None], Outcome]  # the server: a private one, for the restart


def plain(scenario: Callable[[Lab], Outcome]) -> Scenario:
    return lambda lab, server: scenario(lab)


def scenarios(smoke: bool) -> list[tuple[str, str, Scenario]]:
    """(name, storage, scenario); the storage is 'journal', 'postgresql' or 'private postgresql'."""
    workers, trials = (2, 10) if smoke else (4, 200)
    many = plain(lambda lab: faults.many_workers(lab, workers, trials))
    name = f"{workers} workers x {trials // workers} trials"
    out = [(name, "journal", many), (name, "postgresql", many)]
    out.append(("SIGKILL of a worker mid-trial", "journal", plain(faults.worker_killed)))
    if smoke:
        return out
    return out + [
        ("worker lost on another machine (heartbeat)", "postgresql", plain(faults.heartbeat_lost)),
        ("trial hung in Python past its limit", "journal", plain(faults.python_hang)),
        ("trial hung in native code past its limit", "journal", plain(faults.native_hang)),
        ("trial exhausting memory", "journal", plain(faults.out_of_memory)),
        ("trials aborting / segfaulting the interpreter", "journal", plain(faults.interpreter_crash)),
        ("hostile trial code (key, outside write, database port)", "journal", plain(faults.hostile_code)),
        ("database server down 3 s mid-study", "private postgresql", faults.storage_restart),
    ]


def _postgres() -> str | None:
    try:
        storages.check(POSTGRES)
    except storages.StorageUnavailable:
        return None
    return POSTGRES


def run_faults(smoke: bool, root: Path) -> tuple[list[list[object]], dict[str, int], list[str]]:
    pg, rows, notes = _postgres(), [], []
    totals = dict.fromkeys(("asked", "finished", "on_purpose", "lost", "twice", "faults", "survived"), 0)
    if pg is None:
        notes.append(f"PostgreSQL scenarios left out: no server at {storages.redact(POSTGRES)}.")
    for number, (name, storage, scenario) in enumerate(scenarios(smoke)):
        folder = root / f"fault-{number}"
        server = None
        try:
            if storage == "journal":
                outcome = scenario(Lab(folder, str(folder / storages.JOURNAL_FILE)), None)
            elif storage == "postgresql":
                if pg is None:
                    continue
                outcome = scenario(Lab(folder, pg), None)
            else:
                server = Postgres()
                outcome = scenario(Lab(folder, server.url), server)
        except PostgresUnavailable as exc:
            notes.append(f"{name} left out: {exc}.")
            continue
        finally:
            if server is not None:
                server.close()
        problems = outcome.problems()
        on_purpose = sum(state == "FAIL" for state in outcome.expect.values())
        survived = 0 if problems else outcome.faults
        for key, value in (
            ("asked", len(outcome.expect)),
            ("finished", outcome.finished),
            ("on_purpose", on_purpose),
            ("lost", outcome.lost),
            ("twice", outcome.duplicated),
            ("faults", outcome.faults),
            ("survived", survived),
        ):
            totals[key] += value
        rows.append(
            [
                name,
                storage,
                len(outcome.expect),
                outcome.finished,
                on_purpose,
                outcome.lost,
                outcome.duplicated,
                f"{survived}/{outcome.faults}",
                f"{outcome.elapsed_s:.1f}",
                "; ".join(problems) or "-",
            ]
        )
        print(f"{name} on {storage}: {'; '.join(problems) or 'survived'}", flush=True)
    return rows, totals, notes


def run_corpus(smoke: bool, root: Path) -> tuple[list[list[object]], int, int, list[str]]:
    cases = bad_inputs.load()
    if smoke:
        cases = cases[:5]
    by_category: dict[str, list[int]] = {}
    unhandled = []
    for number, case in enumerate(cases):
        outcome = bad_inputs.play(case, root / f"case-{number}")
        handled = not outcome.problems()
        tried, ok = by_category.setdefault(case.category, [0, 0])
        by_category[case.category] = [tried + 1, ok + handled]
        if not handled:
            unhandled.append(f"{case.id}: {'; '.join(outcome.problems())[:200]}")
    rows = [[category, tried, ok] for category, (tried, ok) in by_category.items()]
    return rows, len(cases), sum(ok for _, ok in by_category.values()), unhandled


def main() -> None:
    args = common.parser(__doc__).parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rl-reliability-") as tmp:
        fault_rows, totals, notes = run_faults(args.smoke, Path(tmp))
        case_rows, tried, handled, unhandled = run_corpus(args.smoke, Path(tmp))
    summary = (
        f"- trials asked {totals['asked']}, finished {totals['finished']}, failed on purpose "
        f"{totals['on_purpose']}, lost {totals['lost']}, finished twice {totals['twice']}\n"
        f"- faults injected {totals['faults']}, survived {totals['survived']}\n"
        f"- bad inputs tried {tried}, handled {handled}\n"
    )
    text = "\n".join(
        [
            common.header("Reliability under faults and bad input", common.command_line()),
            "## Summary\n",
            summary,
            "## Fault scenarios\n",
            common.table(
                [
                    "scenario",
                    "storage",
                    "asked",
                    "finished",
                    "failed on purpose",
                    "lost",
                    "finished twice",
                    "faults survived",
                    "seconds",
                    "problems",
                ],
                fault_rows,
            ),  # fmt: skip
            *[f"{note}\n" for note in notes],
            "## Bad-input corpus (tests/data/bad_inputs/cases.json)\n",
            common.table(["category", "tried", "handled"], case_rows),
            *(["Not handled:\n\n" + "".join(f"- {u}\n" for u in unhandled)] if unhandled else []),
            f"Total time {time.monotonic() - started:.0f} s.\n",
        ]
    )
    path = common.write(args.out, "reliability.md", text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
