"""User-facing errors: the CLI prints these as one clear message, never as a traceback."""


class AlignkitError(Exception):
    """An error caused by the user's input or environment, with a message that says how to fix it."""


class ConfigError(AlignkitError):
    """A bad config key or value."""


class DataError(AlignkitError):
    """A bad data file or record; the message names the file, the line (or row) and the field."""


class ModelError(AlignkitError):
    """A model or tokenizer folder that cannot be used as asked."""
