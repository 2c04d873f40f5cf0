"""The few exceptions zonemap raises on purpose; each message says what to do."""


class ZonemapError(Exception):
    """Base class: an error whose message is meant for the user as it is."""


class InputError(ZonemapError):
    """A file, option or value the user gave cannot be used (names the file, row, field)."""


class StoreError(ZonemapError):
    """The store cannot be opened or written."""
