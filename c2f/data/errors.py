"""Error type for bad input data (manifests, label CSVs, audio files)."""


class DataError(ValueError):
    """Bad input data; the message names the file/line and the fix."""
