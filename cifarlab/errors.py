"""Errors that are the user's to fix: the CLI prints their message and exits 2, without a traceback."""


class CifarlabError(Exception):
    """A problem with the user's input (a setting, a data file, a run folder)."""

    exit_code = 2


class ConfigError(CifarlabError):
    """A setting has a value that is not allowed."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


class DataError(CifarlabError):
    """The data could not be found or read."""
