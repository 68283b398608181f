"""The one user-facing error type.

Anything a user can cause (a bad path, an unreadable image, missing weights, a bad class list) raises
:class:`DglrsisError`. The CLI prints its message as one line on stderr and exits with code 2; library
callers catch it like any other exception.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class DglrsisError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always a single line


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit 2) that points to ``--help``,
    instead of the usage block followed by the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def guarded(prog: str, fn: Callable[[], int], debug: bool = False, memory_hint: str = "") -> int:
    """Run ``fn()`` the way every console entry point does: a :class:`DglrsisError` is one line on stderr
    and its exit code (2); running out of memory is one line that says what to do (exit 1); Ctrl-C exits
    130; anything else is one line marked *internal error* (exit 1). ``debug`` re-raises instead."""
    try:
        return int(fn() or 0)
    except DglrsisError as exc:
        if debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except MemoryError:
        if debug:
            raise
        hint = memory_hint or "use a smaller input or a machine with more memory"
        print(f"{prog}: error: out of memory; {hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - an entry point never shows a raw traceback without --debug
        if debug:
            raise
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"{prog}: internal error: {msg} (rerun with --debug for details)", file=sys.stderr)
        return 1
