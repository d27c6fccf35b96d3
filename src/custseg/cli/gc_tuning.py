"""The command line's process tunes its cyclic garbage collector (`custseg.cli` applies
this as it loads, before typer, pydantic and the rest).

Python's defaults suit long-lived programs: a young collection every 700 allocations, and
a full one, walking every object alive, every hundred of those. A `custseg` command is
one short process whose memory is mostly arrays freed by reference counting. With young
collections 70x rarer (from the moment the command line's modules start to load), and
what is alive at the end left out of the collections of interpreter shutdown
(`gc.freeze` in `commands.main`), a 1M-row `custseg run` takes about 6% less time
(benchmarks/RESULTS.md). The endpoint server's workers are spawned processes, with
Python's defaults.
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLD", "tune_collector"]

GC_THRESHOLD = 50_000  # allocations between young collections (Python's default: 700)


def tune_collector() -> None:
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
