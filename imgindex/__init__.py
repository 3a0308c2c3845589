"""imgindex: an incremental index of the images in a directory tree, for finding duplicates."""

#: The one place the version is written (pyproject.toml reads it from here): looking it up in
#: the installed package's metadata cost every command a tenth of a second to start.
__version__ = "0.1.0"
