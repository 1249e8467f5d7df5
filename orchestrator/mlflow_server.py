"""A shared MLflow tracking server for sweeps, and the check that a sweep's store is reachable.

    python -m orchestrator.mlflow_server                       # one machine: SQLite in ./mlflow-server
    python -m orchestrator.mlflow_server --host 10.0.0.12 \\
        --backend-store-uri postgresql://mlflow@db.internal:5432/mlflow \\
        --artifacts-destination s3://my-bucket/mlartifacts          # a cluster's server, on the head's private address
    python -m orchestrator.mlflow_server --host $POD_IP --basic-auth ...  # behind a Service (kuberay/mlflow.yaml)

It runs `mlflow server` with a proxied artifact store (`--serve-artifacts`): clients
(the sweep's driver, `mlflow ui` users, `mlflow.pytorch.load_model`) upload and download
artifacts through the server, so only the server needs credentials for the bucket. It
binds 127.0.0.1 unless told otherwise; on a cluster, bind the head's private address
and reach it from a laptop through an SSH tunnel or `kubectl port-forward` (README,
"Run on a cluster"). One SQLite file serves one machine; several writers on a cluster
need a database server (PostgreSQL: `postgresql://user@host:5432/db`, the password in
`~/.pgpass` or `PGPASSWORD`, never on the command line).

`--basic-auth` runs MLflow's own basic-auth app (`mlflow server --app-name basic-auth`,
the `mlflow[auth]` extra): every request but `/health` needs a user and password. Its
users live in the runs database (their own tables), the admin's password comes from
`MLFLOW_AUTH_ADMIN_PASSWORD` on first start, and clients send theirs in
`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from datasets.registry import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_DIR = "mlflow-server"  # the SQLite store and artifacts of a one-machine server
REACH_TIMEOUT_S = 10.0
AUTH_CONFIG_ENV_VAR = "MLFLOW_AUTH_CONFIG_PATH"  # MLflow's basic-auth app reads its settings there


def server_command(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, backend_store_uri: str = "",
                   artifacts_destination: str = "", workers: int = 2, folder: str = DEFAULT_DIR,
                   allowed_hosts: str = "", basic_auth: bool = False) -> list[str]:
    """The `mlflow server` command line: SQLite and local artifacts under `folder` by default;
    MLflow's basic-auth app with `basic_auth`."""
    base = Path(folder).expanduser().resolve()
    backend = backend_store_uri or f"sqlite:///{base / 'mlflow.db'}"
    artifacts = artifacts_destination or str(base / "mlartifacts")
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    command = [mlflow, "server", "--backend-store-uri", backend, "--serve-artifacts",
               "--artifacts-destination", artifacts, "--host", host, "--port", str(port),
               "--workers", str(workers)]
    if allowed_hosts:
        command += ["--allowed-hosts", allowed_hosts]
    if basic_auth:
        command += ["--app-name", "basic-auth"]
    return command


def write_auth_config(folder: str, database_uri: str) -> Path:
    """MLflow's basic-auth settings in `folder`: users in `database_uri`, read access for any
    signed-in user, the admin named `admin` (its password from MLFLOW_AUTH_ADMIN_PASSWORD)."""
    import configparser

    config = configparser.ConfigParser(interpolation=None)
    # MLflow reads the file with configparser's `%` interpolation: a literal `%` is written `%%`.
    config["mlflow"] = {"default_permission": "READ", "database_uri": database_uri.replace("%", "%%"),
                        "admin_username": "admin"}
    path = Path(folder).expanduser().resolve() / "basic_auth.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        config.write(out)
    return path


def check_tracking_uri(uri: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Raise ConfigError, naming the URI and the fix, when a sweep could not log to `uri`.

    A tracking server (http/https) must answer its `/health` endpoint; a database URI
    must accept a connection; a SQLite file's folder must exist. Runs on the driver
    before any trial, so that an unreachable store never costs a trial's GPU time.
    """
    fix = ("start it (python -m orchestrator.mlflow_server) or point --tracking-uri / "
           "MLFLOW_TRACKING_URI at a reachable store")
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
                if response.status == 200:
                    return
                reason = f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            reason = f"HTTP {err.code} {err.reason}"
        except (urllib.error.URLError, OSError) as err:
            reason = str(getattr(err, "reason", err))
        raise ConfigError(f"MLflow tracking server {uri} is unreachable ({reason}); {fix}")
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise ConfigError(f"MLflow store {uri}: folder {folder} does not exist; {fix}")
        return
    if uri.partition("://")[0].split("+")[0] in ("postgresql", "postgres", "mysql", "mssql"):
        import sqlalchemy

        try:
            engine = sqlalchemy.create_engine(uri, pool_pre_ping=True)
            with engine.connect():
                pass
        except Exception as err:  # noqa: BLE001 - any driver's error means "cannot log there"
            raise ConfigError(f"MLflow store {_redacted(uri)} is unreachable "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); {fix}") from None


def _redacted(uri: str) -> str:
    """`uri` without a password (`user:secret@host` -> `user:***@host`)."""
    scheme, sep, rest = uri.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return uri
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def command_line() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Start the MLflow tracking server that sweeps log to (proxied artifacts).",
        epilog="Then: MLFLOW_TRACKING_URI=http://<host>:<port> python sweeps/crop_scale.py ...")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="interface to bind (default: %(default)s; a cluster's head: its private IP)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    parser.add_argument("--backend-store-uri", default="",
                        help="runs database (default: sqlite:///<folder>/mlflow.db, one machine; "
                             "on a cluster postgresql://user@host:5432/mlflow)")
    parser.add_argument("--artifacts-destination", default="",
                        help="where the server keeps artifacts (default: <folder>/mlartifacts; "
                             "on a cluster s3://bucket/prefix or gs://bucket/prefix)")
    parser.add_argument("--folder", default=DEFAULT_DIR,
                        help="folder of the default SQLite store and artifacts (default: ./%(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default: %(default)s)")
    parser.add_argument("--allowed-hosts", default="",
                        help="Host headers the server accepts when bound beyond loopback "
                             "(MLflow's DNS-rebinding guard), e.g. 'mlflow.internal,10.0.*'")
    parser.add_argument("--basic-auth", action="store_true",
                        help="require a user and password (MLflow's basic-auth app; users kept in the "
                             "runs database, admin password from MLFLOW_AUTH_ADMIN_PASSWORD)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = command_line().parse_args(argv)
    if not args.backend_store_uri or not args.artifacts_destination:
        Path(args.folder).mkdir(parents=True, exist_ok=True)
    command = server_command(args.host, args.port, args.backend_store_uri, args.artifacts_destination,
                             args.workers, args.folder, args.allowed_hosts, args.basic_auth)
    if args.basic_auth and not os.environ.get(AUTH_CONFIG_ENV_VAR):
        users = command[command.index("--backend-store-uri") + 1]
        os.environ[AUTH_CONFIG_ENV_VAR] = str(write_auth_config(args.folder, users))
    print(f"MLflow server on http://{args.host}:{args.port}  (sweeps: MLFLOW_TRACKING_URI="
          f"http://{args.host}:{args.port})", flush=True)
    os.execvp(command[0], command)  # the server is this process: signals reach it directly
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
