"""A Dask worker preload (``dask worker --preload``) for the tests: the worker it runs in hashes as
another version of the pipeline would."""

import imgindex.hashing

imgindex.hashing.PIPELINE_VERSION = 99  # type: ignore[misc]
