"""The one user-facing error type.

Anything a user can cause (a bad path, an unreadable image, missing weights, a bad class list) raises
:class:`DglrsisError`. The CLI prints its message as one line on stderr and exits with code 2; library
callers catch it like any other exception.
"""

from __future__ import annotations


class DglrsisError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always a single line
