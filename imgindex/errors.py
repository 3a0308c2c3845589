"""The errors imgindex reports to its user.

Every error a user can meet is an :class:`ImgindexError` carrying the exit
code the command line ends with; the command line has one handler that turns
any of them into a message and that code. Files that cannot be read are not
errors but data (a status in the index); an interrupted scan is not an error
but a result (:class:`imgindex.scan.ScanInterrupted`).
"""

from __future__ import annotations

#: Exit codes of the command line (see the README's table).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


class ImgindexError(Exception):
    """Something the user asked for cannot be done; the message says why, in their words."""

    exit_code = EXIT_ERROR


class UsageError(ImgindexError):
    """Options that do not go together, or values out of range."""


class IndexOpenError(ImgindexError):
    """The index cannot be opened, created or migrated."""


class NotAnIndexError(IndexOpenError):
    """The file is not an imgindex index."""


class NewerIndexError(IndexOpenError):
    """The index was written by a newer imgindex."""


class ScanError(ImgindexError):
    """A scan that cannot start (e.g. a root that is not a directory)."""


class ReportError(UsageError, ValueError):
    """Report options that do not go together."""


class ExportError(ImgindexError):
    """An export target that cannot be used."""


class OutputError(ImgindexError):
    """An output file that cannot be written."""


class WorkerPoolError(ImgindexError):
    """Worker processes cannot be started or cannot run anything here."""


class ExchangeError(ImgindexError):
    """The index's columnar form cannot be written or read (``export-index``, ``import-index``)."""


class ClusterError(ImgindexError):
    """A Dask cluster cannot be reached or started (``--dask``)."""


class WorkerVersionError(ImgindexError):
    """A worker would hash with other library versions than the process that writes the index
    (a Dask worker that joined after the check at connect, a library upgraded during a scan):
    it refused to read anything."""
