"""The endpoint server's worker processes, each listening on its own socket.

uvicorn's own supervisor shares one listening socket between its workers: they accept
from it in turn, and keep-alive connections pile onto whichever worker wins the race
(one worker carried 62% of a c=64 load). Here every worker binds the port itself with
`SO_REUSEPORT`, and the kernel spreads connections over their sockets by address hash.

The supervisor holds the port too (bound, never listening: it takes no connections) so
that no other program can take it while a worker restarts; it restarts a worker that
dies, and on SIGTERM or SIGINT stops them all gracefully. A worker whose supervisor dies
(SIGKILL, the OOM killer) stops too. Linux only, as the rest of the server
(`serving/server` falls back to uvicorn's supervisor elsewhere).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import time
from typing import Any

__all__ = ["reuseport_available", "run_workers"]

GRACE = 12.0  # seconds a worker gets to finish its requests (uvicorn's own grace is 10)
RESTART_LIMIT = 5  # workers that die within QUICK_DEATH of their start before giving up
QUICK_DEATH = 5.0
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def reuseport_available() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _follow_parent(parent: int) -> None:
    """SIGTERM this process (a graceful stop) when the supervisor dies, even by SIGKILL:
    else the workers would serve on, with settings no store records, as orphans."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request above
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(host: str, port: int, options: dict[str, Any], parent: int) -> None:
    """One worker: its own socket on the shared port, one uvicorn server on it; it stops
    when the supervisor (`parent`) dies."""
    import uvicorn

    _follow_parent(parent)
    sock = _socket(host, port)
    config = uvicorn.Config(host=host, port=port, workers=1, **options)
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(host: str, port: int, workers: int, options: dict[str, Any]) -> None:
    """Run `workers` uvicorn workers on host:port (`options`: uvicorn.Config's other
    arguments) until SIGTERM or SIGINT."""
    context = multiprocessing.get_context("spawn")
    hold = _socket(host, port)  # bound, not listening: the port stays ours
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}

    def start() -> tuple[Any, float]:
        process = context.Process(target=_worker, args=(host, port, options, os.getpid()),
                                  daemon=False)
        process.start()
        return process, time.monotonic()

    running = [start() for _ in range(workers)]
    quick_deaths = 0
    try:
        while not stopping:
            for i, (process, started) in enumerate(running):
                if process.is_alive() or stopping:
                    continue
                quick_deaths += time.monotonic() - started < QUICK_DEATH
                print(f"custseg: worker {process.pid} exited ({process.exitcode}); "
                      f"starting another", flush=True)
                if quick_deaths > RESTART_LIMIT:
                    print("custseg: workers keep dying at start; stopping the server",
                          flush=True)
                    stopping = True
                    break
                running[i] = start()
            time.sleep(0.2)
    finally:
        for process, _ in running:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE
        for process, _ in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        hold.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
