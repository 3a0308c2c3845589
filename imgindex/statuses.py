"""The statuses a file's row can have, and which of them count as images.

One place for the rule: scan summaries, ``stats``, ``watch`` events and the
index all ask here.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Statuses of files that were recognised as images but could not be hashed.
FAILED_STATUSES = ("truncated", "corrupt", "unsupported", "too_large", "unreadable")
#: Statuses of files that are not images.
NOT_IMAGES = ("not_image", "empty")
#: Every status a file row can have.
STATUSES = ("ok", *NOT_IMAGES, *FAILED_STATUSES)


def image_count(by_status: Mapping[str, int]) -> int:
    """How many of the counted files were recognised as images (decoded or not)."""
    return sum(n for status, n in by_status.items() if status not in NOT_IMAGES)


def failed_count(by_status: Mapping[str, int]) -> int:
    return sum(n for status, n in by_status.items() if status in FAILED_STATUSES)
