"""Which share of a sweep this process takes: ``--shard i/n``, a SLURM job array, ``jax.distributed``.

Shares compose: a job array of ``n`` tasks, each a ``jax.distributed`` job of ``P`` processes, gives
process ``p`` of task ``i`` the share ``(i * P + p, n * P)``. Every process writes its own chunks of
the same store; no process waits for another.
"""

from __future__ import annotations

import os
import re
import sys
import threading


class ShareError(ValueError):
    """This process's share of a sweep cannot be worked out (a malformed option, variable or cluster)."""

#: SLURM job-array variables: the task's id, the array's first id and its number of tasks.
SLURM_VARS = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; a ValueError that says what was expected otherwise.

    Example:
      >>> parse_shard("2/8")
      (2, 8)
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not int(match[1]) < int(match[2]):
        raise ShareError(f"--shard must be i/n with 0 <= i < n (for example 0/4); got {text!r}")
    return int(match[1]), int(match[2])


def slurm_shard(environ=os.environ) -> tuple[int, int] | None:
    """The share of a SLURM array task, or None outside a job array."""
    if "SLURM_ARRAY_TASK_ID" not in environ or "SLURM_ARRAY_TASK_COUNT" not in environ:
        return None
    try:
        task, first, count = (int(environ.get(k, "0")) for k in SLURM_VARS)
    except ValueError:
        raise ShareError(f"SLURM array variables {SLURM_VARS} must be integers; got "
                         f"{[environ.get(k) for k in SLURM_VARS]}") from None
    last = environ.get("SLURM_ARRAY_TASK_MAX")
    if last is not None and last.isdigit() and int(last) - first + 1 != count:
        raise ShareError(f"SLURM array {first}-{last} has {count} tasks: gradflow needs a contiguous array without "
                         "a step (for example --array=0-7)")
    if not 0 <= task - first < count:
        raise ShareError(f"SLURM_ARRAY_TASK_ID={task} is outside the array [{first}, {first + count}); "
                         "gradflow needs a contiguous array (for example --array=0-7)")
    return task - first, count


def process_share(shard: tuple[int, int] | None = None) -> tuple[int, int]:
    """This process's share: ``shard`` (or SLURM's) composed with ``jax.distributed``'s processes."""
    import jax

    index, count = shard or slurm_shard() or (0, 1)
    P = jax.process_count()
    return index * P + jax.process_index(), count * P


#: Seconds a process waits for all of a jax.distributed job to arrive (``--distributed-timeout``).
DISTRIBUTED_TIMEOUT_S = 300


def initialize_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None, *,
                           timeout: int = DISTRIBUTED_TIMEOUT_S, log=None) -> None:
    """Join a ``jax.distributed`` job; with no arguments JAX reads them from the cluster (SLURM, TPU pods...).

    Says on ``log`` (a file, e.g. stderr) what it waits for. JAX aborts the whole process (a fatal C++ check,
    after 300 s in silence) when a peer never arrives, which no Python code can catch; so a watchdog ends the
    wait first: after ``timeout`` seconds it writes one line saying what did not arrive and exits the process
    with status 2 (JAX's own deadline is set a minute later).

    Raises:
      ShareError: the arguments cannot form a job (no coordinator outside a cluster, ...).
    """
    import jax

    who = f"process {process_id} of {num_processes}" if num_processes else "this process (as the cluster assigns)"
    where = coordinator or "the coordinator the cluster names"
    if log is not None:
        print(f"gradflow: joining a jax.distributed job as {who} at {where}; waiting up to {timeout} s for every "
              "process to arrive", file=log, flush=True)
    joined = threading.Event()

    def watchdog():
        if not joined.wait(timeout):
            print(f"gradflow: error: --distributed: not every process of the job arrived at {where} within {timeout} s "
                  f"(this is {who}); start them all, or raise --distributed-timeout", file=sys.stderr, flush=True)
            os._exit(2)

    threading.Thread(target=watchdog, name="gradflow-distributed-watchdog", daemon=True).start()
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id,
                                   initialization_timeout=timeout + 60)
    except (ValueError, RuntimeError) as err:
        raise ShareError(f"--distributed could not join a jax.distributed job ({err}); give --coordinator HOST:PORT "
                         "--num-processes N --process-id I, or run where JAX finds them (SLURM, TPU pods)") from None
    finally:
        joined.set()
