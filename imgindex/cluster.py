"""Hashing on a Dask cluster: an executor for the scan's workers, from an address.

The scan hands chunks of items to any ``concurrent.futures.Executor``
(:mod:`imgindex.workers`); a Dask client gives one. The workers read the items
from storage they share with this process (a shared mount), so the source and
the items' paths are sent as they are; results come back chunk by chunk and
this process stays the one writer of the index. Dask runs a chunk again on
another worker when the worker running it is lost.

Needs ``pip install 'imgindex[dask]'``; nothing else does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import ClusterError, UsageError
from .workers import Workers

_LOCAL = re.compile(r"local(?::(\d+))?")
#: How long to try to reach a scheduler.
CONNECT_SECONDS = 10


@contextmanager
def dask_workers(address: str, *, item_seconds: float | None = None) -> Iterator[Workers]:
    """:class:`Workers` running on a Dask cluster: ``local`` or ``local:N`` starts a LocalCluster
    of N worker processes here (default: one per core), anything else is a scheduler's address
    (``tcp://host:8786``). The cluster this starts is closed at the end; one given is left running."""
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
        threads = sum(client.nthreads().values()) or 1
        # pure=False: a chunk submitted again (after a failure) is run again, not looked up.
        yield Workers(threads, client.get_executor(pure=False), item_seconds=item_seconds)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
