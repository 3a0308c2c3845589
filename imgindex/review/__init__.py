"""The review: a page in the browser over the index's duplicate groups, where people look
and decide (:mod:`imgindex.decisions`).

- :mod:`.groups`: the groups as the review shows them, views of them, and the decisions
  each action makes (no HTTP);
- :mod:`.pictures`: thumbnails and differences made on demand, cached by content;
- :mod:`.app`: the Starlette application (token, escaping, routes);
- :mod:`.server`: serving it on this machine;
- :mod:`.static`: the read-only page to share (``--static``).
"""
