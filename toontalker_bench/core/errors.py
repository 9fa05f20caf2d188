"""User-facing errors.

A :class:`UserError` is something the user can fix (bad path, bad manifest row, missing asset, unknown key).
The CLI prints ``error: <message>`` plus an optional ``hint:`` line and exits with status 2, without a traceback.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by input the user controls; printed as one line, exit status 2."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(UserError):
    """Unknown config key, bad ``--set`` value, bad profile name."""


class ManifestError(UserError):
    """A manifest file or row that cannot be used."""


class AssetError(UserError):
    """A model file that is missing, corrupt or cannot be obtained."""


class MediaError(UserError):
    """A video or image that cannot be read."""


class DatasetError(UserError):
    """A dataset directory that lacks a domain, a table or the protocol files."""


class CheckpointError(UserError):
    """A checkpoint that belongs to another method, has other shapes, or is an untrusted pickle."""


class LeaderboardError(UserError):
    """A leaderboard CSV that does not match its schema."""
