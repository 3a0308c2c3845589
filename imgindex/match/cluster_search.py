"""Search on a Dask cluster: every pair of hashes within a distance, as a job over Parquet.

The same pairs as :func:`imgindex.match.search.pairs_within` (and
:func:`~imgindex.match.search.pairs_from` for some queries), found by the same
pigeonhole principle and the blocks the local search uses
(:func:`~imgindex.match.search.plan`): two hashes within ``t`` bits are within
the allowance ``a`` of some block ``k``. The job, over files in a work
directory that the workers share with this process:

1. This process writes the distinct hashes as ``hashes.parquet`` (``hash``,
   ``query``), in row groups.
2. *Map*, a task per row group: for each block, the hashes sorted by their
   *partition*, the top ``p`` bits of the block (``b{k}-g{g}.npy``, the
   query flags beside them), and the count of each partition. Each hash is
   written once per block: a shuffle by block value without copies.
3. *Reduce*, a task per block and partition: the partition's own hashes
   (its *bases*) are bucketed by the rest of the block's bits, and every
   hash whose partition is within the allowance of this one (a *probe*)
   looks up the buckets within what is left of the allowance, reading its
   slices of the map's files; candidates are compared on all 64 bits
   (numpy popcount). The probes are read a chunk at a time, and a partition
   with more bases than ``table_chunk`` (a block value that very many hashes
   share, as blank pictures do) is searched as several tasks of a chunk of
   bases each, so no task holds more than a chunk of either.
4. Each pair is found once, so nothing is deduplicated across tasks: on the
   first block on which the two are within its allowance, in the partition
   of the larger of their two partitions' numbers (both in one partition:
   from the smaller hash's probe). Results come back task by task.

Nothing here knows of SQLite; :func:`imgindex.pairs.update` stores what it
yields. Needs ``pip install 'imgindex[dask]'`` (Dask and pyarrow).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from imgindex.errors import ClusterError

from .bitorder import block_values
from .search import I64, U8, U64, BucketTable, as_signed, as_unsigned, close_on_any, flips, plan

#: Hashes per row group of ``hashes.parquet``: what one map task reads.
MAP_ROWS = 2_000_000
#: Bases a partition is meant to hold (sets the partition bits for the input's size).
PARTITION_HASHES = 250_000
#: Most bases one reduce task buckets; a larger partition is split into tasks of this many.
TABLE_CHUNK = 1_000_000
#: Probes read and looked up at a time by a reduce task.
PROBE_CHUNK = 1_000_000
#: For fewer hashes than the local search uses blocks for, the blocks it uses for this many.
PLAN_AT_LEAST = 1_000_000

Block = tuple[int, int, int]  # shift, width, allowance
ValuePairs = tuple[I64, I64, U8]  # a < b (signed hash values), distance


@dataclass(frozen=True)
class Slice:
    """Rows ``start:stop`` of a map's file for one block."""

    path: str
    start: int
    stop: int


@dataclass(frozen=True)
class ReduceTask:
    blocks: tuple[Block, ...]
    block: int  # which of blocks
    bits: int  # partition bits
    partition: int
    threshold: int
    bases: tuple[Slice, ...]  # the partition's own hashes (all of them, in map order)
    base_range: tuple[int, int]  # the chunk of them this task buckets
    probes: tuple[tuple[int, tuple[Slice, ...]], ...]  # (partition within the allowance, its slices)
    flags: bool  # whether only pairs with a query are wanted (the files' flags say which are)
    probe_chunk: int


def layout(n: int, threshold: int) -> tuple[Block, ...]:
    """The blocks (shift, width, allowance) for ``n`` hashes: the local search's (for few
    hashes, which it compares all with all, those it uses for :data:`PLAN_AT_LEAST`)."""
    blocks = plan(n, n, threshold).blocks or plan(max(n, PLAN_AT_LEAST), max(n, PLAN_AT_LEAST), threshold).blocks
    if not blocks:
        raise ClusterError(f"no distributed search for a distance of {threshold} bits: use the local search")
    return blocks


def partition_bits(n: int, width: int) -> int:
    """Partition bits for ``n`` hashes: about :data:`PARTITION_HASHES` bases a partition."""
    return min(width, max(0, math.ceil(math.log2(max(n, 1) / PARTITION_HASHES))))


class ClusterSearch:
    """A pair search for :func:`imgindex.pairs.update` that runs on a Dask ``client``, over
    files in a directory made under ``work_dir`` (which the workers must see at the same
    path) and removed at the end."""

    def __init__(
        self,
        client: Any,
        work_dir: str | os.PathLike[str],
        *,
        bits: int | None = None,
        map_rows: int = MAP_ROWS,
        table_chunk: int = TABLE_CHUNK,
        probe_chunk: int = PROBE_CHUNK,
    ) -> None:
        self.client = client
        self.work_dir = Path(work_dir)
        self.bits = bits
        self.map_rows = map_rows
        self.table_chunk = table_chunk
        self.probe_chunk = probe_chunk
        #: What the last job did: bytes its files took in the work directory, hashes its reduce
        #: tasks read as probes, tasks run.
        self.stats: dict[str, int] = {}

    def __call__(self, hashes: I64, queries: I64 | None, threshold: int) -> Iterator[ValuePairs]:
        """Every pair of the distinct ``hashes`` within ``threshold`` that involves one of
        ``queries`` (indices; None: all), as chunks of ``(a, b, distance)`` with ``a < b``."""
        if len(hashes) < 2 or (queries is not None and len(queries) == 0):
            return
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            job = Path(tempfile.mkdtemp(prefix=".imgindex-pairs-", dir=self.work_dir))
        except OSError as e:
            raise ClusterError(f"cannot make a work directory in {self.work_dir}: {e.strerror or e}") from None
        try:
            yield from self._run(job, hashes, queries, threshold)
        finally:
            shutil.rmtree(job, ignore_errors=True)

    def _run(self, job: Path, hashes: I64, queries: I64 | None, threshold: int) -> Iterator[ValuePairs]:
        import distributed

        as_completed: Any = distributed.as_completed  # not typed

        blocks = layout(len(hashes), threshold)
        bits = [min(w, self.bits) if self.bits is not None else partition_bits(len(hashes), w) for _, w, _ in blocks]
        flags = queries is not None
        groups = write_hashes(job / "hashes.parquet", hashes, queries, self.map_rows)
        maps = [self.client.submit(map_task, str(job), g, blocks, bits, flags, pure=False) for g in range(groups)]
        try:
            counts: list[list[npt.NDArray[np.int64]]] = self.client.gather(maps)
        except Exception as e:  # noqa: BLE001 -- whatever a worker raised, it stops the job
            raise ClusterError(f"the pair search failed on the cluster: {e}") from None
        tasks = reduce_tasks(job, blocks, bits, counts, threshold, flags, self.table_chunk, self.probe_chunk)
        self.stats = {
            "bytes_written": sum(f.stat().st_size for f in job.iterdir()),
            "probes_read": sum(sum(s.stop - s.start for _, p in t.probes for s in p) for t in tasks),
            "map_tasks": groups,
            "reduce_tasks": len(tasks),
        }
        futures = [self.client.submit(reduce_task, task, pure=False) for task in tasks]
        del maps
        try:
            # On this client's loop: as_completed would otherwise use the *current* client's
            # (a caller's own `with Client(...)`), where its waits may never wake.
            for future, found in as_completed(futures, loop=self.client.loop, with_results=True):
                future.release()
                if len(found[0]):
                    yield found
        except Exception as e:  # noqa: BLE001
            raise ClusterError(f"the pair search failed on the cluster: {e}") from None
        finally:
            for future in futures:
                future.release()


def write_hashes(path: Path, hashes: I64, queries: I64 | None, rows: int) -> int:
    """``hashes.parquet`` in row groups of ``rows``; returns the number of row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    query = np.ones(len(hashes), dtype=bool) if queries is None else np.isin(np.arange(len(hashes)), queries)
    table = pa.table({"hash": pa.array(hashes, type=pa.int64()), "query": pa.array(query, type=pa.bool_())})
    try:
        pq.write_table(table, path, row_group_size=rows, compression="zstd")
    except OSError as e:
        raise ClusterError(f"cannot write {path}: {e.strerror or e}") from None
    return -(-len(hashes) // rows)


def _shard(job: str, block: int, group: int) -> str:
    return os.path.join(job, f"b{block}-g{group}.npy")


def map_task(
    job: str, group: int, blocks: tuple[Block, ...], bits: list[int], flags: bool
) -> list[npt.NDArray[np.int64]]:
    """Row group ``group`` of the hashes, per block sorted by partition into its own file (and
    the query flags into another); returns each block's count of hashes per partition."""
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(os.path.join(job, "hashes.parquet")).read_row_group(group)
    hashes = as_unsigned(rows.column("hash").to_numpy())
    query = rows.column("query").to_numpy(zero_copy_only=False) if flags else None
    counts = []
    for k, (shift, width, _) in enumerate(blocks):
        part = block_values(hashes, shift + width - bits[k], bits[k])
        order = np.argsort(part, kind="stable")
        _save(_shard(job, k, group), as_signed(hashes[order]))
        if query is not None:
            _save(_shard(job, k, group) + ".q.npy", query[order])
        counts.append(np.bincount(part, minlength=1 << bits[k]).astype(np.int64))
    return counts


def _save(path: str, array: npt.NDArray[Any]) -> None:
    """Under a temporary name first: a task run again (its worker lost) rewrites it whole."""
    temp = f"{path}.{os.getpid()}.tmp.npy"
    np.save(temp, array)
    os.replace(temp, path)


def reduce_tasks(
    job: Path,
    blocks: tuple[Block, ...],
    bits: list[int],
    counts: list[list[npt.NDArray[np.int64]]],
    threshold: int,
    flags: bool,
    table_chunk: int,
    probe_chunk: int,
) -> list[ReduceTask]:
    """A task per block, partition and chunk of the partition's bases; each reads its slices."""
    tasks = []
    for k, (_, _, allowance) in enumerate(blocks):
        offsets = [np.concatenate([[0], np.cumsum(c[k])]) for c in counts]

        def slices(partition: int, k: int = k, offsets: list[npt.NDArray[np.int64]] = offsets) -> tuple[Slice, ...]:
            return tuple(
                Slice(_shard(str(job), k, g), int(o[partition]), int(o[partition + 1]))
                for g, o in enumerate(offsets)
                if o[partition + 1] > o[partition]
            )

        near = flips(bits[k], allowance)
        for p in range(1 << bits[k]):
            size = sum(int(c[k][p]) for c in counts)
            if size == 0:
                continue
            probes = tuple((p ^ f, s) for f in near if (s := slices(p ^ f)))
            for start in range(0, size, table_chunk):
                tasks.append(
                    ReduceTask(
                        blocks=blocks,
                        block=k,
                        bits=bits[k],
                        partition=p,
                        threshold=threshold,
                        bases=slices(p),
                        base_range=(start, min(size, start + table_chunk)),
                        probes=probes,
                        flags=flags,
                        probe_chunk=probe_chunk,
                    )
                )
    return tasks


def _read(slices: tuple[Slice, ...], start: int, stop: int, flags: bool) -> tuple[U64, npt.NDArray[np.bool_] | None]:
    """Rows ``start:stop`` of the slices laid end to end (and their query flags)."""
    values, query = [], []
    at = 0
    for s in slices:
        lo, hi = max(start - at, 0), min(stop - at, s.stop - s.start)
        if lo < hi:
            values.append(np.load(s.path, mmap_mode="r")[s.start + lo : s.start + hi])
            if flags:
                query.append(np.load(s.path + ".q.npy", mmap_mode="r")[s.start + lo : s.start + hi])
        at += s.stop - s.start
    hashes = as_unsigned(np.concatenate(values)) if values else np.empty(0, np.uint64)
    return hashes, (np.concatenate(query) if query else np.empty(0, bool)) if flags else None


def reduce_task(task: ReduceTask) -> ValuePairs:
    """The pairs one reduce task owns (see the module's docstring)."""
    shift, width, allowance = task.blocks[task.block]
    earlier = task.blocks[: task.block]
    low = width - task.bits  # the bits of the block below the partition's
    bases, base_query = _read(task.bases, *task.base_range, task.flags)
    table = BucketTable(block_values(bases, shift, low), bases, low)
    table_query = None if base_query is None else base_query[table.order]
    found_a, found_b, found_d = [], [], []
    for partition, slices in task.probes:
        distance = (partition ^ task.partition).bit_count()
        total = sum(s.stop - s.start for s in slices)
        for start in range(0, total, task.probe_chunk):
            probes, probe_query = _read(slices, start, min(total, start + task.probe_chunk), task.flags)
            keys = block_values(probes, shift, low)
            for flip in flips(low, allowance - distance):
                for owner, pos, x, d in table.matches(probes, keys ^ flip, task.threshold):
                    a, b = probes[owner], table.hashes[pos]
                    # Both in this partition: from the smaller's probe; else from the larger partition's task.
                    keep = a < b if distance == 0 else np.full(len(a), task.partition > partition)
                    keep &= ~close_on_any(x, earlier)
                    if probe_query is not None and table_query is not None:
                        keep &= probe_query[owner] | table_query[pos]
                    sa, sb = as_signed(a[keep]), as_signed(b[keep])
                    found_a.append(np.minimum(sa, sb))
                    found_b.append(np.maximum(sa, sb))
                    found_d.append(d[keep])
    if not found_a:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8)
    return np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_d)
