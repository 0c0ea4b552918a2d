"""Running a sweep on Dask, with a Parquet store of results that makes it resumable.

* The cells of the configuration are keyed by hashes (:mod:`.config`); a result row whose
  key is already in ``results.parquet`` (with a status other than ``error``) is not
  recomputed. A cell runs only its missing methods.
* Cells run as Dask tasks: on a :class:`distributed.LocalCluster` of ``workers`` processes with
  one thread each by default, or on an existing cluster (``scheduler`` address).
* Results are written to the Parquet file as they arrive (atomically, at most every
  :data:`FLUSH_SECONDS`) and at the end, also when interrupted.
* A scheduler address is checked before anything runs: its scheme (``tcp://``, ``tls://``,
  ...; not the dashboard's ``http://``), that something listens there (within
  :data:`PROBE_TIMEOUT_S`), that a Dask scheduler answers (:data:`CONNECT_TIMEOUT_S`) and that
  it has at least one worker (:data:`WORKERS_TIMEOUT_S`); each failure is an input error.
* While cells run, progress is reported as they finish and at least every
  :data:`HEARTBEAT_S` seconds, so that a long cell never leaves the log silent.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from siftopt.errors import InputError
from siftopt.experiments.bench.cells import run_cell
from siftopt.experiments.bench.config import BenchConfig, Cell, cells, result_key

RESULTS_FILE = "results.parquet"
#: Longest interval between two writes of the results file while a sweep runs (s).
FLUSH_SECONDS = 10.0
#: Seconds to wait for a TCP connection to a scheduler address (the port must be open).
PROBE_TIMEOUT_S = 3.0
#: Seconds to wait for the Dask handshake with a scheduler given by address.
CONNECT_TIMEOUT_S = 5.0
#: Seconds to wait for a scheduler given by address to have a worker.
WORKERS_TIMEOUT_S = 5.0
#: Longest interval between two progress reports while cells run (s).
HEARTBEAT_S = 10.0
#: Address schemes of Dask schedulers (a bare ``host:port`` means ``tcp://``).
SCHEDULER_SCHEMES = ("tcp", "tls", "inproc", "ucx", "ws", "wss")


class ResultStore:
    """The rows of ``results.parquet``: existing ones plus those added in this run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frame = self._read(path)
        self.pending: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()

    @staticmethod
    def _read(path: Path) -> pd.DataFrame:
        if not path.exists():
            return pd.DataFrame()
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is an input error
            raise InputError(f"cannot read the results of an earlier run: {exc} (delete the "
                             "file to start afresh)", file=str(path)) from None

    def finished_keys(self) -> set[str]:
        """Keys of rows that need not be recomputed (every status but ``error``)."""
        frame = self.all_rows()
        if frame.empty:
            return set()
        return set(frame.loc[frame["status"] != "error", "key"])

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.pending.extend(rows)
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def all_rows(self) -> pd.DataFrame:
        """Every row, the newest one per key (earlier errors are replaced by retries)."""
        if not self.pending:
            return self.frame.copy()
        records = self.frame.to_dict("records") if not self.frame.empty else []
        frame = pd.DataFrame(records + self.pending)
        return frame.drop_duplicates("key", keep="last").reset_index(drop=True)

    def flush(self) -> None:
        """Write every row to the Parquet file (atomically: temporary file, then rename)."""
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        frame = _normalise(self.all_rows())
        tmp = self.path.with_suffix(".parquet.tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.path)
        self.frame, self.pending = frame, []


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Consistent column types for Parquet (numbers as float, None as NaN/null)."""
    for column in frame.columns:
        if frame[column].dtype == object:
            values = frame[column].dropna()
            if len(values) and all(isinstance(v, bool) for v in values):
                frame[column] = frame[column].astype("boolean")
            elif len(values) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                     for v in values):
                frame[column] = frame[column].astype("float64")
    return frame


def task_specs(bench: BenchConfig, done: set[str]) -> tuple[list[dict[str, Any]], int]:
    """The tasks still to run (one per cell with missing methods) and how many result rows
    were already finished."""
    specs, skipped = [], 0
    for cell in cells(bench):
        methods = _missing(bench, cell, done)
        skipped += len(cell.methods) - len(methods)
        if methods:
            specs.append({"config": cell.config.to_dict(), "seed": cell.seed,
                          "instance_key": cell.key, "methods": methods,
                          "time_limit_s": bench.time_limit_s, "profile": bench.profile,
                          "formulation": bench.formulation,
                          "simulate_runs": bench.simulate_runs})
    return specs, skipped


def _missing(bench: BenchConfig, cell: Cell, done: set[str]) -> list[list[str]]:
    keyed = [[m, result_key(cell.key, m, bench, cell.config.fading)] for m in cell.methods]
    return [pair for pair in keyed if pair[1] not in done]


def current_keys(bench: BenchConfig) -> set[str]:
    """Result keys of the configuration (rows of other configurations are ignored)."""
    return {result_key(c.key, m, bench, c.config.fading) for c in cells(bench)
            for m in c.methods}


def check_scheduler_address(address: str) -> tuple[str, str | None, int | None]:
    """``(scheme, host, port)`` of a scheduler address; an :class:`InputError` (path
    ``--scheduler``) when it is not a Dask scheduler address."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme not in SCHEDULER_SCHEMES:
        hint = " (http:// is the dashboard; the scheduler listens on tcp://, port 8786 by " \
            "default)" if scheme in ("http", "https") else ""
        raise InputError(f"{address!r} is not a Dask scheduler address: the scheme must be "
                         f"one of {', '.join(s + '://' for s in SCHEDULER_SCHEMES)}{hint}",
                         path="--scheduler")
    if scheme in ("inproc", "ucx"):
        return scheme, None, None
    host, colon, port = rest.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{address!r} is not a Dask scheduler address: expected "
                         f"{scheme}://HOST:PORT, e.g. tcp://127.0.0.1:8786", path="--scheduler")
    return scheme, host, int(port)


def _probe(address: str, host: str, port: int) -> None:
    """Fail fast when nothing listens at ``host:port``."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise InputError(f"cannot reach the Dask scheduler at {address}: {reason} (is "
                         "`dask scheduler` running there?)", path="--scheduler") from None


def _handshake(address: str) -> Any:
    """``distributed.Client(address)`` within :data:`CONNECT_TIMEOUT_S` (plus 2 s), whatever
    answers there: the handshake runs in a daemon thread, since a server that accepts the
    connection but does not speak Dask's protocol can block it indefinitely or send a reply
    that fails to decode."""
    from distributed import Client

    box: dict[str, Any] = {}

    def attempt() -> None:
        try:
            box["client"] = Client(address, timeout=CONNECT_TIMEOUT_S)
        except BaseException as exc:  # noqa: BLE001 - reported as the input error below
            box["error"] = exc

    thread = threading.Thread(target=attempt, name="siftopt-dask-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S + 2.0)
    if thread.is_alive():
        raise InputError(f"no Dask scheduler answered at {address} within "
                         f"{CONNECT_TIMEOUT_S + 2.0:g} s (something listens there, but it does "
                         "not speak Dask's protocol)", path="--scheduler")
    if "error" in box:
        exc = box["error"]
        detail = (str(exc).splitlines() or [""])[0][:200]
        raise InputError(f"cannot connect to the Dask scheduler at {address}: "
                         f"{type(exc).__name__}: {detail}", path="--scheduler")
    return box["client"]


def connect(address: str) -> Any:
    """A client of the scheduler at ``address`` that has at least one worker, within a few
    seconds, or an :class:`InputError`."""
    _, host, port = check_scheduler_address(address)
    if host is not None and port is not None:
        _probe(address, host, port)
    client = _handshake(address)
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
    except (TimeoutError, OSError):
        client.close()
        raise InputError(f"the Dask scheduler at {address} has no workers (waited "
                         f"{WORKERS_TIMEOUT_S:g} s); start some with `dask worker {address} "
                         "--nthreads 1`", path="--scheduler") from None
    return client


@contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[Any]:
    """A Dask client: on a new local cluster (processes, one thread each) or on ``scheduler``
    (checked by :func:`connect`)."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = connect(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.CRITICAL)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


#: ``progress(done, total, note)``: called as cells finish and every :data:`HEARTBEAT_S`.
ProgressCallback = Callable[[int, int, str], None]


def run_specs(specs: list[dict[str, Any]], store: ResultStore, *, scheduler: str | None,
              workers: int, progress: ProgressCallback | None = None) -> None:
    """Run the tasks on Dask, adding each cell's rows to the store as it completes;
    ``progress(done, total, note)`` after each cell and at least every :data:`HEARTBEAT_S`
    seconds while none finishes."""
    from distributed import as_completed

    total = len(specs)
    with dask_client(scheduler, workers) as client:
        futures = client.map(run_cell, specs, pure=False)
        spec_of = {f.key: spec for f, spec in zip(futures, specs, strict=True)}
        pending = as_completed(futures)
        done, last_report = 0, time.monotonic()
        try:
            while not pending.is_empty():
                batch = pending.next_batch(block=False)
                if not batch:
                    time.sleep(0.1)
                    if progress is not None and time.monotonic() - last_report >= HEARTBEAT_S:
                        last_report = time.monotonic()
                        progress(done, total, "running")
                    continue
                for future in batch:
                    store.add(_rows_of(future, spec_of[future.key]))
                    done += 1
                    if progress is not None:
                        last_report = time.monotonic()
                        progress(done, total, "")
        finally:
            client.cancel(futures)
            store.flush()


def _rows_of(future: Any, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a finished task; ``error`` rows when the task itself failed."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - e.g. a worker died
        return [{**spec["config"], "seed": spec["seed"], "instance_key": spec["instance_key"],
                 "key": key, "method": method, "status": "error", "feasible": False,
                 "message": f"task failed: {type(exc).__name__}: {exc}"[:500]}
                for method, key in spec["methods"]]


def run_bench(bench: BenchConfig, out_dir: Path, *, scheduler: str | None = None,
              workers: int | None = None, progress: ProgressCallback | None = None
              ) -> dict[str, Any]:
    """Run the missing cells of ``bench`` and return ``{"frame", "computed", "skipped",
    "elapsed_s"}``; ``frame`` holds the rows of this configuration only."""
    started = time.perf_counter()
    store = ResultStore(out_dir / RESULTS_FILE)
    specs, skipped = task_specs(bench, store.finished_keys())
    if specs:
        run_specs(specs, store, scheduler=scheduler, workers=workers or default_workers(),
                  progress=progress)
    frame = store.all_rows()
    if not frame.empty:
        frame = frame[frame["key"].isin(current_keys(bench))].reset_index(drop=True)
    computed = sum(len(s["methods"]) for s in specs)
    return {"frame": frame, "computed": computed, "skipped": skipped,
            "elapsed_s": time.perf_counter() - started}


def default_workers() -> int:
    """Worker processes of the local cluster: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
