"""The exception hierarchy. The CLI turns these into exit codes in one place."""

from __future__ import annotations


class ImgstatsError(Exception):
    """Base class of every error imgstats raises on purpose.

    ``exit_code`` is what the CLI exits with: 2 for bad usage or bad input,
    1 for a run that failed, 3 for drift above a ``diff --fail-above`` limit.
    """

    exit_code = 1


class UsageError(ImgstatsError, ValueError):
    """Bad options or configuration (unknown key, wrong type, unreadable config)."""

    exit_code = 2


class InputError(ImgstatsError):
    """The input cannot be used: missing source, no images, mixed layouts."""

    exit_code = 2


class SourceNotFoundError(InputError, FileNotFoundError):
    """SOURCE does not exist or cannot be listed."""


class SourceUnreachableError(InputError, OSError):
    """SOURCE cannot be listed: access denied, bad credentials, unreachable endpoint."""


class NoImagesError(InputError):
    """SOURCE holds no image files (after filters)."""


class LayoutError(InputError):
    """Native mode found images with different channel layouts or sample types."""


class SchedulerError(InputError, ConnectionError):
    """The Dask scheduler cannot be reached."""


class ClusterError(ImgstatsError):
    """The cluster started for the run went without workers too long: its batch jobs never
    started within ``--cluster-timeout``, or all ended and none replaced them."""


class ClusterUnavailableError(ClusterError):
    """The cluster cannot be started as configured: its batch system's commands are missing,
    the queue refused the job, the cluster manager cannot be imported or took bad arguments."""

    exit_code = 2


class StoreError(ImgstatsError, OSError):
    """The stats store cannot be read or written."""




class StoreUnreachableError(StoreError):
    """The store's bucket or endpoint is missing, denied or unreachable (bad input: exit 2)."""

    exit_code = 2


class ResultNotStoredError(StoreError):
    """The statistics were computed but could not be stored; ``document`` holds them."""

    def __init__(self, message: str, document: dict[str, object]) -> None:
        super().__init__(message)
        self.document = document


class StoreConflictError(StoreError, FileExistsError):
    """A version could not be created because it exists already."""


class UnsafeStoreError(StoreError):
    """The store cannot create files exclusively, so concurrent writers could race."""

    exit_code = 2


class StatsFileError(ImgstatsError, ValueError):
    """A stats file is missing keys, has wrong types or is not JSON."""


class StoreNotFoundError(StatsFileError, FileNotFoundError):
    """The store to read (``show``, ``history``) does not exist: bad input."""

    exit_code = 2


class SourceVanishedError(ImgstatsError):
    """The source itself disappeared during the run (its bucket was deleted): not a file to
    skip but a run that cannot be completed."""


class DecodeError(ImgstatsError):
    """One image file could not be decoded."""


class TooManyErrorsError(ImgstatsError):
    """Files failed to decode and ``--on-error fail`` or ``--max-errors`` stops the run."""


class DriftError(ImgstatsError):
    """``diff --fail-above``: a metric exceeds its limit on some channel (cron can alert)."""

    exit_code = 3
