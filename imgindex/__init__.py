"""imgindex: an incremental index of the images in a directory tree, for finding duplicates."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("imgindex")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
