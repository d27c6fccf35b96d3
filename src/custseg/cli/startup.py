"""What the command line's process sets up as `custseg.cli` loads, before typer, pydantic
and the rest: a short command need not pay for what suits a long-lived program.

Python's cyclic garbage collector, by default, makes a young collection every 700
allocations and a full one, walking every object alive, every hundred of those. A
command's memory is mostly arrays freed by reference counting, so its young collections
are 70x rarer, and what is alive at its end is left out of the collections of interpreter
shutdown (`gc.freeze` in `commands.main`). A 1M-row `custseg run` takes about 6% less
time (benchmarks/RESULTS.md). Not so the endpoint server's workers, whose requests must
not wait behind a long collection: spawned processes import `custseg.cli` again, so each
sets its own collector when it makes its app (`serving.app.WORKER_GC_THRESHOLD`).
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLD", "set_up_process"]

GC_THRESHOLD = 50_000  # allocations between young collections (Python's default: 700)


def set_up_process() -> None:
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
