"""The review: a page in the browser over the index's duplicate groups, where people look
and decide (:mod:`imgindex.decisions`).

- :mod:`.groups`: the groups as the review shows them (a snapshot as arrays) and views of
  them: filters, orders, pages, statistics;
- :mod:`.session`: the index under review, kept up to date, and the decisions each action
  makes, recorded and undone (no HTTP);
- :mod:`.pictures`: thumbnails and differences made on demand, cached by content;
- :mod:`.app`: the Starlette application (token, escaping, routes);
- :mod:`.server`: serving it on this machine;
- :mod:`.static`: the read-only page to share (``--static``).
"""
