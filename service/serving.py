"""``serve``: one service process, or ``workers`` of them on one port under a supervisor.

With ``workers`` 1 the service is this process (``serve_here``). With more, this process is
only their supervisor (``supervise``): it starts each worker as a fresh interpreter
(multiprocessing's ``spawn``: nothing of the parent's event loop, threads or connections is
inherited), each with its own store, app and event loop, all listening on the same port with
``SO_REUSEPORT`` so that the kernel spreads the connections over them. It forwards SIGTERM and
SIGINT to them, waits for them, and exits 0 once all have stopped cleanly. A worker that exits
while nobody asked it to (a crash, ``kill -9``) is logged and replaced, so the service does not
shrink; one that keeps dying right after it starts (a port another program holds, say) stops
the whole service with an error instead of restarting forever. A worker whose supervisor is gone
(killed with SIGKILL) stops by itself within a second.

Metrics: the supervisor gives its workers one folder for prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``; a fresh temporary one unless the operator named one, which is
emptied at the start), so that a scrape answered by any worker sees every process; a worker that
exits is marked dead there (its live gauges dropped, its counts kept).

SIGTERM, in each service process: aiohttp's graceful shutdown stops accepting connections,
lets the requests being handled finish for up to ``shutdown_timeout_seconds``, closes the idle
connections, then unwinds the app's ``cleanup_ctx``: the background jobs stop first, then the
gateway and the HTTP client, and the store (its queued appends committed) last. Exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

import structlog
from aiohttp import web
from prometheus_client import multiprocess

from eventstore import open_store
from service.app import create_app, store_options
from service.config import Config
from service.limits import server_options
from service.logging import configure_logging
from service.metrics import MULTIPROC_ENV
from service.views.backends import projectors_for

log = structlog.get_logger("service.supervisor")

# A worker that exits sooner than this after its start has failed to start, not crashed later.
START_GRACE_SECONDS = 5.0
# Failed starts in a row of one worker after which the supervisor gives up.
FAILED_STARTS_TO_GIVE_UP = 3
# Pause before a worker is replaced: a worker that dies at once is not restarted in a hot loop.
RESTART_PAUSE_SECONDS = 0.5
# How often a worker checks that its supervisor is still there.
ORPHAN_CHECK_SECONDS = 1.0
# How long the workers get beyond their own shutdown_timeout_seconds to stop (the jobs, the
# store) after SIGTERM before they are killed.
STOP_MARGIN_SECONDS = 15.0


def serve(config: Config) -> int:
    """Run the service as ``config.workers`` processes; the exit status."""
    configure_logging(config.log_level, config.log_format)
    if config.workers == 1:
        serve_here(config)
        return 0
    return _Supervisor(config).run()


def serve_here(config: Config, *, reuse_port: bool = False) -> None:
    """The service in this process until SIGINT or SIGTERM."""
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        print=None,
        reuse_port=reuse_port,
        shutdown_timeout=config.shutdown_timeout_seconds,
        **server_options(config),
    )


def _worker_main(config: Config, index: int, supervisor: int) -> None:
    """A worker process's start (spawned: a fresh interpreter)."""
    configure_logging(config.log_level, config.log_format)
    structlog.contextvars.bind_contextvars(worker=index)
    threading.Thread(target=_stop_when_orphaned, args=(supervisor,), daemon=True).start()
    serve_here(config, reuse_port=True)


def _stop_when_orphaned(supervisor: int) -> None:
    """Stop this worker (gracefully, by SIGTERM) once its supervisor is gone: a supervisor
    killed with SIGKILL cannot pass anything on, and orphaned workers would go on holding the
    port, unsupervised, after the service was meant to be stopped."""
    while os.getppid() == supervisor:
        time.sleep(ORPHAN_CHECK_SECONDS)
    log.warning("supervisor gone: stopping", supervisor=supervisor)
    os.kill(os.getpid(), signal.SIGTERM)


@dataclass(slots=True)
class _Slot:
    index: int
    process: BaseProcess
    started: float
    failed_starts: int = 0


class _Supervisor:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._context = multiprocessing.get_context("spawn")
        self._stopping = False  # a signal asked to stop, or a worker cannot start
        self._failed = False  # a worker cannot start: the service exits with an error

    def run(self) -> int:
        # Opened once here first: the database is created and migrated before the workers open
        # it, and a bad one (not a database, no space) is one clear error, not N failed workers.
        asyncio.run(_prepare_store(self._config))
        metrics_dir, made = _metrics_folder()
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            slots = [self._start(index) for index in range(self._config.workers)]
            log.info(
                "workers started",
                workers=len(slots),
                pids=[slot.process.pid for slot in slots],
                port=self._config.port,
            )
            return self._watch(slots)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if made:
                shutil.rmtree(metrics_dir, ignore_errors=True)
                os.environ.pop(MULTIPROC_ENV, None)

    def _start(self, index: int, failed_starts: int = 0) -> _Slot:
        process = self._context.Process(
            target=_worker_main,
            args=(self._config, index, os.getpid()),
            name=f"service-worker-{index}",
        )
        process.start()
        return _Slot(index, process, time.monotonic(), failed_starts)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM or SIGINT: noted here, acted on by ``_watch`` (a signal handler must not
        start or wait for processes), which sends the workers SIGTERM, aiohttp's graceful
        shutdown. SIGINT from a terminal reaches the workers too (one process group)."""
        self._stopping = True

    def _watch(self, slots: list[_Slot]) -> int:
        deadline: float | None = None  # set once the workers were asked to stop
        while True:
            if self._stopping and deadline is None:
                log.info("stopping workers")
                self._signal_all(slots, signal.SIGTERM)
                deadline = (
                    time.monotonic() + self._config.shutdown_timeout_seconds + STOP_MARGIN_SECONDS
                )
            wait([slot.process.sentinel for slot in slots], timeout=0.2)
            if deadline is not None:
                if all(slot.process.exitcode is not None for slot in slots):
                    return self._exit_status(slots)
                if time.monotonic() > deadline:
                    log.error("workers did not stop in time: killing them")
                    self._signal_all(slots, signal.SIGKILL)
                    deadline = float("inf")  # killed once; now only wait for them
                continue
            for position, slot in enumerate(slots):
                if slot.process.exitcode is None or self._stopping:
                    continue  # running, or it ended because it was asked to
                replacement = self._replace(slot)
                if replacement is None:  # it cannot start: stop the others and give up
                    self._stopping = True
                    break
                slots[position] = replacement

    def _replace(self, slot: _Slot) -> _Slot | None:
        _mark_dead(slot)
        lived = time.monotonic() - slot.started
        failed_starts = slot.failed_starts + 1 if lived < START_GRACE_SECONDS else 0
        log.error(
            "worker exited unexpectedly",
            worker=slot.index,
            pid=slot.process.pid,
            exitcode=slot.process.exitcode,
            lived_seconds=round(lived, 1),
        )
        if failed_starts >= FAILED_STARTS_TO_GIVE_UP:
            log.error("worker keeps failing to start: stopping the service", worker=slot.index)
            self._failed = True
            return None
        time.sleep(RESTART_PAUSE_SECONDS)
        replacement = self._start(slot.index, failed_starts)
        log.info("worker replaced", worker=slot.index, pid=replacement.process.pid)
        return replacement

    @staticmethod
    def _signal_all(slots: list[_Slot], signum: int) -> None:
        for slot in slots:
            if slot.process.exitcode is None and slot.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signum)

    def _exit_status(self, slots: list[_Slot]) -> int:
        for slot in slots:
            _mark_dead(slot)
        codes = {slot.index: slot.process.exitcode for slot in slots}
        log.info("workers stopped", exitcodes=codes)
        if self._failed:
            return 1
        return 0 if all(code == 0 for code in codes.values()) else 1


def _metrics_folder() -> tuple[str, bool]:
    """The multiprocess metrics folder the workers inherit (through the environment), emptied;
    and whether it was made here (then removed at the end)."""
    named = os.environ.get(MULTIPROC_ENV)
    if named:
        folder = Path(named)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # a previous run's values are not this run's
            stale.unlink()
        return named, False
    made = tempfile.mkdtemp(prefix="invoice-metrics-")
    os.environ[MULTIPROC_ENV] = made
    return made, True


def _mark_dead(slot: _Slot) -> None:
    """Drop an exited worker's live gauges; its counters and histograms still count."""
    if slot.process.pid is not None:
        multiprocess.mark_process_dead(slot.process.pid)  # type: ignore[no-untyped-call]


async def _prepare_store(config: Config) -> None:
    # The backend's own options (an SQLite file's folder made, its synchronous mode; none for a
    # postgresql:// URL), as the workers open it.
    store = await open_store(
        config.database, projectors=projectors_for(config.database), **store_options(config)
    )
    await store.close()
