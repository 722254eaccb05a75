"""The data error every loader raises: a bad dataset is reported with the path at fault."""


class DataError(ValueError):
    """A dataset problem; the message names the path."""
