"""The two exceptions of predict.py: an input that is skipped, and a usage error (exit code 2)."""


class Skip(Exception):
    """An input that is skipped: the message says why (one line)."""


class UsageError(Exception):
    """A problem with the options: exit code 2."""
