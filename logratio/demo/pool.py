"""Running independent jobs in order, in this process or spread over worker processes.

The demo's (seed, method) training runs share nothing, so :func:`run_jobs` may hand them to
``workers`` fresh (spawned) processes; the results come back in job order and are the same as
in one process, because every job builds its own data, weights and batches from its
arguments.  Each job reports its progress through an ``advance(n)`` callable: directly to the
progress bar in this process, through a shared counter from the workers.  ``limits`` is a
context manager factory (the demo's thread limits) entered around the jobs in this process,
and once for its lifetime in each worker.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["machine_cores", "run_jobs"]


def machine_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_jobs(
    job: Callable[..., Any],
    jobs: Sequence[tuple[Any, ...]],
    *,
    workers: int,
    limits: Callable[[], contextlib.AbstractContextManager],
    bar: Any,
    describe: Callable[[tuple[Any, ...]], str] = str,
) -> list[Any]:
    """``[job(*args, advance) for args in jobs]``, in this process when ``workers`` is 1, else
    on a pool of ``workers`` spawned processes.

    ``job`` and ``limits`` must be picklable (module-level functions, or partials of them) to
    reach the workers.  ``bar`` is a tqdm progress bar advanced by the jobs' ``advance``;
    ``describe(args)`` labels it while a job runs in this process.
    """
    if workers == 1:
        out = []
        with limits():
            for args in jobs:
                bar.set_postfix_str(describe(args))
                out.append(job(*args, bar.update))
        return out
    return _run_parallel(job, jobs, workers, limits, bar)


def _run_parallel(job, jobs, workers, limits, bar) -> list[Any]:  # arguments of run_jobs
    """The jobs on a pool of ``workers`` fresh (spawned) processes, in job order."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")  # no fork of a process with thread pools
    counter = ctx.Value("q", 0)
    pool = ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(limits, counter)
    )
    try:
        futures = [pool.submit(_call, job, args) for args in jobs]
        bar.set_postfix_str(f"{workers} worker processes")
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
            bar.update(counter.value - bar.n)
            failed = [f for f in futures if f.done() and f.exception() is not None]
            if failed:
                failed[0].result()  # re-raises the worker's exception
        runs = [f.result() for f in futures]
    except BaseException:  # a failed run or Ctrl-C: drop the queued runs
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return runs


#: Set in each worker by :func:`_init_worker`: the shared step counter, and the worker's
#: entered ``limits`` (kept open for the process's lifetime).
_COUNTER: Any = None
_LIMITS = contextlib.ExitStack()


def _init_worker(limits: Callable[[], contextlib.AbstractContextManager], counter: Any) -> None:
    global _COUNTER
    _COUNTER = counter
    _LIMITS.enter_context(limits())
    # leave the limits while the interpreter is whole (closing them at teardown would call
    # into modules already cleared, and print "Exception ignored" from every worker)
    atexit.register(_LIMITS.close)


def _call(job: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return job(*args, _advance_shared_counter)


def _advance_shared_counter(n: int) -> None:
    if _COUNTER is not None:
        with _COUNTER.get_lock():
            _COUNTER.value += n
