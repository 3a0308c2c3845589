"""The lengths the index's blobs must have, as SQL conditions.

A blob of another length (a careless hand, another tool, a damaged copy) would
break the arrays it is read into: the readers pass such rows over (the picture
is then as one without them), and ``imgindex check`` counts them and
``--repair`` has their images read again.
"""

from __future__ import annotations

from typing import Final

from imgindex.hashing import DESCRIPTOR_BYTES, GRID_BYTES, ORIENTATIONS, REGION_BYTES

_ORIENTATION_BYTES: Final = 8 * ORIENTATIONS

#: ``descriptors`` rows whose thumbnails, all of them, have their lengths.
GOOD_DESCRIPTORS: Final = (
    f"length(picture) = {DESCRIPTOR_BYTES} AND (trimmed IS NULL OR length(trimmed) = {DESCRIPTOR_BYTES})"
    f" AND (grid IS NULL OR length(grid) = {GRID_BYTES})"
)
BAD_DESCRIPTORS: Final = f"NOT ({GOOD_DESCRIPTORS})"
GOOD_REGIONS: Final = f"length(hashes) = {REGION_BYTES}"
BAD_REGIONS: Final = f"NOT ({GOOD_REGIONS})"
#: The orientation hashes of the whole picture, and as many again of the inside when it has a border.
GOOD_ORIENTATIONS: Final = f"length(hashes) IN ({_ORIENTATION_BYTES}, {2 * _ORIENTATION_BYTES})"
BAD_ORIENTATIONS: Final = f"NOT ({GOOD_ORIENTATIONS})"
