"""Object storage (``s3://``, ``gs://``, ...) for the sweep's checkpoints and the data cache,
one way for every room: pyarrow's filesystems, configured by the standard environment.

An S3-compatible store other than AWS (MinIO, Ceph, a cloud's S3 API) is reached by the
AWS SDK's own variable ``AWS_ENDPOINT_URL`` (e.g. ``http://minio.internal:9000``), with
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_REGION``; pyarrow's
``S3FileSystem`` reads them, as boto3 and the AWS CLI do.

Ray's worker processes have the environment Ray was started with, not the sweep
driver's: a driver that sets these later (or joins a Ray started without them) would
write checkpoints to AWS itself. So the sweep hands them on: the checkpoints' filesystem
is built once on the driver (:func:`storage_filesystem`; its endpoint travels with it
when Ray pickles it to Tune's and Train's workers), and :func:`driver_env` is set in
every trial driver and Train worker (:func:`use_driver_env`), for the data cache's
mirror (datasets.cache).
"""
from __future__ import annotations

import os

# What a trial's processes need of the driver's environment to reach the same storage:
# the object store's endpoint, region and credentials, and the local data cache folder.
DRIVER_ENV_VARS = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "DSSL_CACHE_DIR",
)


def is_object_store(path: str) -> bool:
    """A URI pyarrow opens as a remote filesystem (``s3://``, ``gs://``, ...), not ``file://``."""
    return "://" in str(path) and not str(path).startswith("file://")


def storage_filesystem(storage: str):
    """``(filesystem, path)`` for Ray's ``storage_filesystem`` and ``storage_path``: the
    object store's pyarrow filesystem (with the endpoint of ``AWS_ENDPOINT_URL``) and the
    path in it; ``(None, storage)`` for a local folder, which Ray opens itself."""
    if not is_object_store(storage):
        return None, storage
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(storage)


def driver_env() -> dict[str, str]:
    """The driver's values of :data:`DRIVER_ENV_VARS` (those set)."""
    return {name: os.environ[name] for name in DRIVER_ENV_VARS if name in os.environ}


def use_driver_env(env: dict[str, str]) -> None:
    """Set the driver's values (from :func:`driver_env`) in this Ray worker process."""
    os.environ.update(env)
