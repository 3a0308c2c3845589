"""Near matching: which indexed pictures are copies of each other.

- :mod:`.search`: every pair of hashes within a distance (multi-index hashing);
- :mod:`.candidates`: those pairs from the index's stored pairs, searching what is not stored;
- :mod:`.verify`: whether two pictures' thumbnails confirm a hash match;
- :mod:`.grouping`: duplicate sets around leaders, best first, no chains;
- :mod:`.matcher`: the one matcher that puts them together over the index,
  used by reports, exports, ``dedup``, ``watch`` and ``query``.
"""
