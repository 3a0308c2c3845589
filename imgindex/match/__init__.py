"""Near matching: which indexed pictures are copies of each other.

- :mod:`.search`: every pair of hashes within a distance (multi-index hashing);
- :mod:`.candidates`: those pairs from the index's stored pairs, searching what is not stored;
- :mod:`.links`, :mod:`.regions`, :mod:`.orientations`: candidate pairs of pictures, by
  link (whole, inside, a region, an orientation);
- :mod:`.verify`: whether two pictures' thumbnails confirm a hash match;
- :mod:`.region_check`: whether a region's thumbnails, cut from its grid, confirm one;
- :mod:`.units`: the pictures to match, and what is read of them from the index;
- :mod:`.stored_matches`: the matches the index holds between them;
- :mod:`.grouping`: duplicate sets around leaders, best first, no chains;
- :mod:`.matcher`: the one matcher that puts them together over the index,
  used by reports, exports, ``dedup``, ``watch`` and ``query``.
"""
