"""The project's user-facing error type.

Anything the user can fix (a bad file, a bad config value, a refused checkpoint, a busy run directory) is
raised as :class:`Data2VecError` (or a subclass) with one line that says what to fix. The CLI prints those
as one line and exits with code 2; any other exception is a bug and keeps its traceback.
It subclasses ``ValueError`` so code that catches ``ValueError`` keeps working.
"""

from __future__ import annotations


class Data2VecError(ValueError):
    """A problem with the user's input, files or environment, explained in one line."""
