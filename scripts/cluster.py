"""Independent points (exploration, sweep) as tasks on Dask distributed, cached by content.

A :class:`Task` is a module-level function and a self-contained payload (configs as
dicts, operands as arrays, build plans as their files' bytes: nothing that names a path
on the submitting machine), so any worker with the package installed can run it. Its key
is a digest of the function's name, the payload and the package's sources
(:func:`code_digest`): a finished task's result is kept under that key
(:class:`TaskCache`), so an interrupted run started again redoes only the tasks that had
not finished, and a change of the code or of the inputs runs them again.

:func:`dask_client` opens a local cluster (one single-threaded worker process per CPU by
default) or connects to a running scheduler (``tcp://HOST:8786``); :func:`run_tasks` runs
a list of tasks there (or in this process with no client) and shows progress.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .progress import Progress

__all__ = ["Task", "TaskCache", "TaskFailed", "code_digest", "content_digest", "dask_client",
           "run_tasks", "say", "CACHE_DIR_ENV"]

#: the environment variable naming the task result cache's folder
CACHE_DIR_ENV = "DS_TASK_CACHE_DIR"
#: changes whenever a task's result format changes, so older entries are not used
CACHE_FORMAT = 1
#: seconds between the "still running" lines while no task finishes
HEARTBEAT = 60.0


def say(msg: str) -> None:
    """Print a line at once (progress lines in CI logs and pipes are not held back)."""
    print(msg, flush=True)


class TaskFailed(RuntimeError):
    """Some tasks raised; the message names each with its error (the others finished)."""


def _feed(h, obj) -> None:
    """Feed a canonical encoding of ``obj`` (dicts, lists, tuples, arrays, bytes, scalars)
    into the hash ``h``."""
    if isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=str):
            _feed(h, str(k))
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"nd{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(obj, (bytes, bytearray)):
        h.update(f"b{len(obj)}:".encode())
        h.update(bytes(obj))
    elif isinstance(obj, np.generic):
        _feed(h, obj.item())
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(json.dumps(obj).encode() + b";")
    else:
        raise TypeError(f"cannot digest a {type(obj).__name__} in a task payload")


def content_digest(obj) -> str:
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()[:32]


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of the package's Python sources (``rtl/``, ``sim/``, ``scripts/``, ``tb/``)
    and the versions of Python and NumPy: part of every task key."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for sub in ("rtl", "sim", "scripts", "tb"):
        for f in sorted((root / sub).rglob("*.py")):
            data = f.read_bytes()
            h.update(f"{f.relative_to(root)}\0{len(data)}\0".encode())
            h.update(data)
    h.update(f"{sys.version}\0{np.__version__}\0{CACHE_FORMAT}".encode())
    return h.hexdigest()[:32]


@dataclass
class Task:
    """``fn(payload)`` under the name ``name`` (progress lines and errors)."""

    name: str
    fn: Callable
    payload: dict
    key: str = field(default="")

    def __post_init__(self) -> None:
        if getattr(self.fn, "__qualname__", "").count("<"):
            raise ValueError(f"task {self.name!r}: {self.fn!r} is not a module-level "
                             f"function (workers import it by name)")
        if not self.key:
            self.key = content_digest({"fn": f"{self.fn.__module__}.{self.fn.__qualname__}",
                                       "payload": self.payload, "code": code_digest()})


class TaskCache:
    """Finished tasks' results by key, one pickle file each (written atomically), in
    ``root`` (default ``$DS_TASK_CACHE_DIR``, else ``~/.cache/doublesparse/tasks``).
    ``enabled=False`` reads and writes nothing."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        if root is None:
            root = os.environ.get(CACHE_DIR_ENV) or (
                Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "doublesparse" / "tasks")
        self.root = Path(root)
        self.enabled = enabled

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pkl"

    def get(self, key: str):
        """The result kept under ``key``, or None."""
        if not self.enabled:
            return None
        try:
            with self._path(key).open("rb") as f:
                return pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            return None

    def put(self, key: str, result) -> None:
        """Keep ``result``; a cache that cannot be written is no error."""
        if not self.enabled or result is None:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                pickle.dump(result, f)
            os.replace(tmp, path)
        except OSError:
            pass


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                say: Callable[[str], None] = say) -> Iterator:
    """A ``distributed.Client``: connected to ``scheduler`` (``tcp://HOST:8786``), or to a
    local cluster of ``workers`` single-threaded worker processes (default: one per CPU),
    closed on exit."""
    from distributed import Client, LocalCluster

    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as e:
            raise ConnectionError(f"no Dask scheduler at {scheduler}: {e}") from None
        n = len(client.scheduler_info().get("workers", {}))
        say(f"dask: scheduler {scheduler}, {n} worker{'s' if n != 1 else ''}")
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster)
    say(f"dask: local cluster, {n} worker process{'es' if n != 1 else ''} "
        f"(scheduler {cluster.scheduler_address})")
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _call(fn: Callable, payload: dict):
    return fn(payload)


def run_tasks(tasks: list[Task], client=None, cache: TaskCache | None = None,
              label: str = "tasks", on_result: Callable[[int, object], None] | None = None,
              say: Callable[[str], None] = say) -> list:
    """Run ``tasks`` on ``client`` (None: here, one after another) and return their
    results in order. A task whose key is in ``cache`` is not run; every result is put in
    ``cache`` as it arrives, so an interrupted run loses only the tasks in flight.
    ``on_result(i, result)`` is called as each arrives. If any task raises, the others
    still finish (and are kept) and :class:`TaskFailed` names the failures."""
    cache = cache or TaskCache(enabled=False)
    results: list = [None] * len(tasks)
    todo = []
    for i, t in enumerate(tasks):
        hit = cache.get(t.key)
        if hit is not None:
            results[i] = hit
            if on_result:
                on_result(i, hit)
        else:
            todo.append(i)
    where = "here" if client is None else "on the cluster"
    say(f"{label}: {len(tasks)} task{'s' if len(tasks) != 1 else ''}, "
        f"{len(tasks) - len(todo)} from the cache, {len(todo)} to run {where}")
    if not todo:
        return results
    bar = Progress(len(todo), label)
    failed: list[str] = []

    def done(i: int, res=None, err: BaseException | None = None, t0: float = 0.0) -> None:
        t = tasks[i]
        if err is not None:
            failed.append(f"{t.name}: {type(err).__name__}: {err}")
            bar.step(f"{t.name}: FAILED ({type(err).__name__})")
            return
        results[i] = res
        cache.put(t.key, res)
        if on_result:
            on_result(i, res)
        bar.step(t.name)

    if client is None:
        for i in todo:
            try:
                res = _call(tasks[i].fn, tasks[i].payload)
            except Exception as e:  # noqa: BLE001 - reported with the others below
                done(i, err=e)
            else:
                done(i, res)
    else:
        from distributed import wait

        futs = {client.submit(_call, tasks[i].fn, tasks[i].payload, pure=False,
                              key=f"{tasks[i].name}-{tasks[i].key}"): i for i in todo}
        pending = set(futs)
        t0 = last = time.time()
        while pending:
            try:
                finished, pending = wait(pending, timeout=HEARTBEAT / 4,
                                         return_when="FIRST_COMPLETED")
            except TimeoutError:      # none finished in the time: the heartbeat below
                finished = set()
            for fut in finished:
                try:
                    res = fut.result()
                except Exception as e:  # noqa: BLE001
                    done(futs[fut], err=e)
                else:
                    done(futs[fut], res)
                fut.release()
            if finished:
                last = time.time()
            elif time.time() - last >= HEARTBEAT:    # long tasks (synthesis): alive
                last = time.time()
                names = sorted(tasks[futs[f]].name for f in pending)
                say(f"{label}: {len(pending)} running or queued after "
                    f"{(last - t0) / 60:.0f} min: {', '.join(names[:6])}"
                    + (" ..." if len(names) > 6 else ""))
    if failed:
        raise TaskFailed(f"{label}: {len(failed)} of {len(todo)} tasks failed:\n  "
                         + "\n  ".join(failed))
    return results

