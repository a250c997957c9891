"""Errors with messages that say what was wrong, where, and what to do."""


class RedundancyError(Exception):
    """Base class of every error this library raises on purpose."""


class DataFormatError(RedundancyError, ValueError):
    """A data file could not be parsed; the message names the file and line."""


class DataError(RedundancyError, ValueError):
    """Data parsed but cannot be used as given (empty split, unseen labels, ...)."""


class UnknownTaskError(RedundancyError, KeyError):
    """A task name that is not in the registry."""

    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ModelNotFoundError(RedundancyError, OSError):
    """A model name or path that cannot be loaded (offline, typo, missing files)."""


class SequenceTooLongError(RedundancyError, ValueError):
    """A sentence is longer than the model's maximum input length."""


class CacheError(RedundancyError, OSError):
    """A cached file is incomplete, truncated or does not match its metadata."""


class DataNote(UserWarning):
    """A fact about a task's data worth knowing, not an error: dev or test items whose labels
    never occur in train, left out of scoring. The book lists them in its data chapter and
    keeps them out of the other pages (:func:`redundancy.paper.pages.setup_page`)."""
