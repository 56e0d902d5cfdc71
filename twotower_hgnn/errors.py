"""The user-error hierarchy: what a launch script reports as one line and exit code 2.

Every error a user can cause (bad input files, flags or configuration values, paths, a full disk)
derives from :class:`UserError`; the launch boundary (``launch.common.run_main``) prints
``error: <message>`` and exits 2 for these and only these. Anything else is a bug: it keeps its
traceback and exits 1. Each subclass also derives from ``ValueError`` (or ``OSError`` for disk) so
that code written against the builtin types keeps working.
"""

from __future__ import annotations


class UserError(ValueError):
    """Base of every error a user can fix: the message names the file / column / row or the flag."""


class DataError(UserError):
    """An input table that cannot be used: the message names the file, column and first bad row."""


class ConfigError(UserError):
    """A flag or configuration value that makes no sense: the message names the flag or field."""


class PathError(UserError):
    """A path that cannot be read or written (missing, a directory, no permission)."""


class DiskError(UserError):
    """Out of disk space (or a read-only file system) while writing an output."""
