"""The index in a columnar form: Parquet files that other engines read as they are, and that
hashes computed elsewhere come back in by.

``export_index(index, DIR)`` writes:

- ``items.parquet``: one row per item (file, or record in a web archive) with
  its stat data, status, exact and perceptual hashes, URL, the hash settings
  they were made under, and its thumbnails (``picture``, ``trimmed``), its regions' hashes
  and grey grid (``regions``, ``grid``);
- ``pairs.parquet``: the stored near pairs of hash values;
- ``matches.parquet``: the stored verified matches of pictures;
- ``index.json``: what the files are (format, version, counts, settings).

``import_index(index, DIR)`` merges the items of such a directory (written by
``export_index`` here or elsewhere, or by a job of another engine that writes
the same columns) into an index: their rows are written as a scan would write
them, so the next scan reads only what changed since; items hashed under
other settings than this index's are refused, whole. Pairs and matches are
derived: the index makes its own (``pairs.update``). The columns are in the
README ("The index as Parquet").

Needs pyarrow (``pip install 'imgindex[parquet]'``); nothing else does.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from . import __version__, pairs
from .errors import ExchangeError
from .hashing import HashSettings
from .sources.archives import MARK
from .storage import FileRecord, Index
from .storage.exchange import ITEM_COLUMNS, MATCH_COLUMNS, PAIR_COLUMNS

FORMAT = "imgindex-index"
VERSION = 1
ITEMS, PAIRS, MATCHES, META = "items.parquet", "pairs.parquet", "matches.parquet", "index.json"
#: Rows written to the index per transaction when importing.
IMPORT_BATCH = 2_000


def _arrow() -> tuple[ModuleType, ModuleType]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExchangeError("the Parquet form needs pyarrow: pip install 'imgindex[parquet]'") from None
    return pa, pq


def _schemas(pa: Any) -> dict[str, Any]:
    i64, text, blob = pa.int64(), pa.string(), pa.binary()
    item_types = {
        "path": blob, "root": blob, "archived": pa.bool_(), "status": text, "error": text, "format": text,
        "size": i64, "mtime_ns": i64, "ctime_ns": i64, "inode": i64, "device": i64, "sha256": blob,
        "width": i64, "height": i64, "phash": i64, "trim_hash": i64, "url": text, "read_ns": i64,
        "hash_settings": text, "picture": blob, "trimmed": blob, "regions": blob, "grid": blob,
    }  # fmt: skip
    pair_types = {"kind": text, "a": i64, "b": i64, "distance": i64}
    match_types = {"kind": text, "a": i64, "b": i64, "whole": i64, "inside": i64, "region": i64}
    return {
        ITEMS: pa.schema([(c, item_types[c]) for c in ITEM_COLUMNS]),
        PAIRS: pa.schema([(c, pair_types[c]) for c in PAIR_COLUMNS]),
        MATCHES: pa.schema([(c, match_types[c]) for c in MATCH_COLUMNS]),
    }


@dataclass
class ExportIndexSummary:
    directory: Path
    items: int = 0
    pairs: int = 0
    matches: int = 0


@dataclass
class ImportIndexSummary:
    directory: Path
    items: int = 0
    roots: int = 0
    near_pairs: pairs.PairsUpdate | None = None


def export_index(index: Index, directory: str | os.PathLike[str]) -> ExportIndexSummary:
    """Write the index's items, pairs and matches as Parquet under ``directory`` (made if missing;
    files already there are replaced whole, each written under a temporary name first)."""
    pa, pq = _arrow()
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExchangeError(f"cannot write into {out}: {e.strerror or e}") from None
    schemas = _schemas(pa)
    summary = ExportIndexSummary(out)
    with index.snapshot():
        exchange = index.exchange
        summary.items = _write(pa, pq, out / ITEMS, schemas[ITEMS], exchange.items())
        summary.pairs = _write(pa, pq, out / PAIRS, schemas[PAIRS], exchange.pairs())
        summary.matches = _write(pa, pq, out / MATCHES, schemas[MATCHES], exchange.matches())
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "imgindex_version": __version__,
        "schema_version": index.schema_version,
        "hash_settings": HashSettings().key(),
        "items": summary.items,
        "pairs": summary.pairs,
        "matches": summary.matches,
        "exported_at": time.time(),
    }
    _replace(out / META, json.dumps(meta, indent=1).encode())
    return summary


def _write(pa: Any, pq: Any, path: Path, schema: Any, batches: Any) -> int:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    count = 0
    try:
        with pq.ParquetWriter(temp, schema, compression="zstd") as writer:
            for rows in batches:
                columns = list(zip(*rows, strict=True))
                arrays = [_array(pa, col, field.type) for col, field in zip(columns, schema, strict=True)]
                writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
                count += len(rows)
        os.replace(temp, path)
    except OSError as e:
        temp.unlink(missing_ok=True)
        raise ExchangeError(f"cannot write {path}: {e.strerror or e}") from None
    return count


def _array(pa: Any, values: tuple[object, ...], kind: Any) -> Any:
    """A column; SQLite gives truth values as 0 and 1."""
    if kind == pa.bool_():
        return pa.array([None if v is None else bool(v) for v in values], type=kind)
    return pa.array(list(values), type=kind)


def _replace(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except OSError as e:
        temp.unlink(missing_ok=True)
        raise ExchangeError(f"cannot write {path}: {e.strerror or e}") from None


def import_index(
    index: Index,
    directory: str | os.PathLike[str],
    settings: HashSettings | None = None,
    *,
    update_pairs: bool = True,
) -> ImportIndexSummary:
    """Merge the items of a Parquet directory into the index (each row replaces the row of its
    path); refused whole when any was hashed under settings other than ``settings``."""
    _, pq = _arrow()
    source = Path(directory)
    settings = settings or HashSettings()
    try:
        meta = json.loads((source / META).read_bytes())
        items = pq.ParquetFile(source / ITEMS)
    except (OSError, ValueError) as e:
        raise ExchangeError(f"{source} holds no index in Parquet form ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ExchangeError(f"{source / META} is not an index of this format ({FORMAT} version {VERSION})")
    missing = [c for c in ITEM_COLUMNS if c not in items.schema_arrow.names]
    if missing:
        raise ExchangeError(f"{source / ITEMS} lacks the columns {', '.join(missing)}")
    wanted = settings.key()
    keys: set[str] = set()
    for batch in items.iter_batches(batch_size=100_000, columns=["hash_settings"]):  # bounded memory
        keys.update(k for k in batch.column(0).unique().to_pylist() if k is not None)
    if keys - {wanted}:
        raise ExchangeError(
            f"{source} was hashed under other settings than this index's ({len(keys - {wanted})} other"
            " sets: the hashing library's version, or the settings themselves); nothing was imported"
        )
    catalog = index.catalog
    params_id = catalog.params_id(wanted)
    summary = ImportIndexSummary(source)
    roots: dict[bytes, int] = {}
    dirs: dict[bytes, int] = {}
    for batch in items.iter_batches(batch_size=IMPORT_BATCH, columns=list(ITEM_COLUMNS)):
        columns = {name: batch.column(name).to_pylist() for name in ITEM_COLUMNS}
        records = []
        for row in zip(*(columns[c] for c in ITEM_COLUMNS), strict=True):
            item = dict(zip(ITEM_COLUMNS, row, strict=True))
            root = bytes(item["root"])
            if root not in roots:
                roots[root] = catalog.ensure_root(root).id
            path = bytes(item["path"])
            joint = MARK if item["archived"] else b"/"
            parent, _, name = path.rpartition(joint)
            parent = parent or b"/"
            if parent not in dirs:
                if item["archived"]:
                    dirs[parent] = catalog.archive_dir(parent, roots[root])[0]
                else:
                    dirs[parent] = catalog.dir_id(parent, roots[root])
            records.append(_record(item, dirs[parent], name, params_id))
        catalog.write_files(records)
        summary.items += len(records)
    summary.roots = len(roots)
    if update_pairs:
        summary.near_pairs = pairs.update(index)
        index.images.keep_table()
    return summary


def _record(item: dict[str, Any], dir_id: int, name: bytes, params_id: int) -> FileRecord:
    def blob(value: bytes | None) -> bytes | None:
        return None if value is None else bytes(value)

    hashed = item["hash_settings"] is not None
    return FileRecord(
        dir_id, name, item["size"], item["mtime_ns"], item["ctime_ns"], item["inode"], item["device"],
        item["status"], item["error"], item["format"], blob(item["sha256"]), item["width"], item["height"],
        item["phash"], params_id if hashed else None, item["read_ns"], item["trim_hash"],
        blob(item["picture"]), blob(item["trimmed"]), item["url"], blob(item["regions"]), blob(item["grid"]),
    )  # fmt: skip
