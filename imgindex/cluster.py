"""Dask clusters: a client from an address, and an executor for the scan's workers on it.

The scan hands chunks of items to any ``concurrent.futures.Executor``
(:mod:`imgindex.workers`); a Dask client gives one. The workers read the items
from storage they share with this process (a shared mount), so the source and
the items' paths are sent as they are; results come back chunk by chunk and
this process stays the one writer of the index. Dask runs a chunk again on
another worker when the worker running it is lost. The near-pair search
(:mod:`imgindex.match.cluster_search`) runs on a :func:`dask_client` too.

Needs ``pip install 'imgindex[dask]'``; nothing else does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import ClusterError, UsageError
from .hashing import HashSettings
from .workers import Workers

_LOCAL = re.compile(r"local(?::(\d+))?")
#: How long to try to reach a scheduler.
CONNECT_SECONDS = 10
#: Items per task sent to a Dask worker: a task costs a millisecond or two of scheduling and
#: transfer, so chunks are larger than the local pool's (3,000 JPEGs on 2 workers: 7.1-7.4 s
#: with 16 a chunk, 6.6-6.7 s with 64).
CHUNK_SIZE = 64


@contextmanager
def dask_client(address: str, *, hashing: bool = True) -> Iterator[Any]:
    """A client of a Dask cluster: ``local`` or ``local:N`` starts a LocalCluster of N worker
    processes here (default: one per core), anything else is a scheduler's address
    (``tcp://host:8786``). Workers that cannot run imgindex are refused, and with ``hashing``
    those whose hashing libraries differ from this process's: those present now, here; a
    worker that joins later refuses each chunk of the scan it is given (every chunk carries
    this process's settings key: :func:`imgindex.reading.refuse_other_versions`), which ends
    the scan with :class:`~imgindex.errors.WorkerVersionError`. The cluster this starts is
    closed at the end; one given is left running."""
    try:
        import distributed
    except ImportError:
        raise UsageError("--dask needs Dask: pip install 'imgindex[dask]'") from None
    dask: Any = distributed  # its classes are not typed
    local = _LOCAL.fullmatch(address)
    cluster: Any = None
    client: Any
    try:
        if local:
            workers = int(local.group(1)) if local.group(1) else None
            if workers is not None and workers < 1:
                raise UsageError("--dask local:N needs N of at least 1")
            cluster = dask.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            client = dask.Client(cluster)
        else:
            client = dask.Client(address, timeout=CONNECT_SECONDS)
    except OSError as e:
        if cluster is not None:
            cluster.close()
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    try:
        _check_versions(client, hashing=hashing)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextmanager
def dask_workers(address: str, *, item_seconds: float | None = None) -> Iterator[Workers]:
    """:class:`Workers` running on a Dask cluster (see :func:`dask_client` for ``address``)."""
    with dask_client(address) as client:
        threads = sum(client.nthreads().values()) or 1
        # pure=False: a chunk submitted again (after a failure) is run again, not looked up.
        yield Workers(threads, client.get_executor(pure=False), item_seconds=item_seconds)


def settings_key() -> str:
    """This process's hash settings key (run on each worker to compare with the client's)."""
    return HashSettings().key()


def _check_versions(client: Any, *, hashing: bool = True) -> None:
    """Workers whose hashing libraries differ would hash differently under the same settings
    key: refuse them rather than let their hashes in (with ``hashing``)."""
    try:
        keys = client.run(settings_key)
    except Exception as e:  # noqa: BLE001 -- a worker without imgindex raises whatever unpickling raises
        raise ClusterError(f"the Dask workers cannot run imgindex ({e}); install it where they run") from None
    if not hashing:
        return
    here = settings_key()
    other = sorted(worker for worker, key in keys.items() if key != here)
    if other:
        raise ClusterError(
            f"{len(other)} Dask workers (e.g. {other[0]}) hash with other library versions than this"
            " process: install the same imgindex, Pillow and imagehash there"
        )
