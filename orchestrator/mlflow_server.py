"""A shared MLflow tracking server for sweeps, and the check that a sweep's store is reachable.

    python -m orchestrator.mlflow_server                       # one machine: SQLite in ./mlflow-server
    MLFLOW_AUTH_ADMIN_PASSWORD=... python -m orchestrator.mlflow_server --host 10.0.0.12 --basic-auth \\
        --backend-store-uri postgresql+psycopg2://mlflow@db.internal:5432/mlflow \\
        --artifacts-destination s3://my-bucket/mlartifacts          # a cluster's server, on the head's private address
    python -m orchestrator.mlflow_server --host $POD_IP --basic-auth ...  # behind a Service (kuberay/mlflow.yaml)

It runs `mlflow server` with a proxied artifact store (`--serve-artifacts`): clients
(the sweep's driver, `mlflow ui` users, `mlflow.pytorch.load_model`) upload and download
artifacts through the server, so only the server needs credentials for the bucket. It
binds 127.0.0.1 unless told otherwise; on a cluster, bind the head's private address
and reach it from a laptop through an SSH tunnel or `kubectl proxy` (README,
"Run on a cluster"). One SQLite file serves one machine; several writers on a cluster
need a database server (PostgreSQL: `postgresql+psycopg2://user@host:5432/db`, the password in
`~/.pgpass` or `PGPASSWORD`, never on the command line).

Three mistakes are refused before the server starts (exit 2, the flag named). Binding any
address but loopback (127.0.0.0/8, ::1, `localhost`) without `--basic-auth`: anyone on
the network could read and delete runs and, through the proxy, write to the bucket; the
server is not switched to basic auth on its own, since that needs an admin password and
gives clients a login they did not ask for. And a runs database other than SQLite
(PostgreSQL, MySQL, ...) without `--artifacts-destination`: the default `<folder>/mlartifacts`
is relative to wherever the server happens to start (a container's throwaway file system,
a job's temporary directory), so a cluster's server names its bucket or shared folder. And
a database whose SQLAlchemy driver is not installed (SQLAlchemy 2.1 reads a bare
`postgresql://` as psycopg 3; the `server` extra installs psycopg2, which
`postgresql+psycopg2://` names).

`--basic-auth` runs MLflow's own basic-auth app (`mlflow server --app-name basic-auth`,
the `mlflow[auth]` extra): every request but `/health` needs a user and password. Its
users live in the runs database (their own tables), the admin's password comes from
`MLFLOW_AUTH_ADMIN_PASSWORD` on first start, and clients send theirs in
`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from datasets.registry import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
# MLflow 3's job runner (GenAI evaluation and trace jobs: a runner and a Huey consumer per
# queue, six more processes) serves nothing a training run logs; off unless the environment
# sets it.
JOB_EXECUTION_ENV_VAR = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
DEFAULT_DIR = "mlflow-server"  # the SQLite store and artifacts of a one-machine server
REACH_TIMEOUT_S = 10.0
DATABASE_SCHEMES = ("postgresql", "postgres", "mysql", "mssql")  # MLflow's SQLAlchemy stores but SQLite
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

    A tracking server (http/https) must answer its `/health` endpoint; a SQLite file's
    folder must exist. A database server (PostgreSQL, MySQL, ...) is refused as a sweep's
    store: MLflow would put the artifacts of a new experiment in `./mlruns` of the driver's
    working directory, which under `ray job submit` is deleted with the job; the tracking
    server in front of the database keeps them in its `--artifacts-destination`. Runs on
    the driver before any trial, so that an unusable store never costs a trial's GPU time.
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
    if is_database_server(uri):
        raise ConfigError(
            f"MLflow store {_redacted(uri)} is a database: a sweep logging to it directly would put its "
            "artifacts in the driver's working directory (a temporary copy under ray job submit). Run the "
            f"tracking server on it (python -m orchestrator.mlflow_server --backend-store-uri {_redacted(uri)} "
            "--artifacts-destination s3://<bucket>/mlartifacts ...) and pass --tracking-uri http://<host>:5000")


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
                        help="interface to bind (default: %(default)s; a cluster's head: its private IP, "
                             "which needs --basic-auth)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    parser.add_argument("--backend-store-uri", default="",
                        help="runs database (default: sqlite:///<folder>/mlflow.db, one machine; "
                             "on a cluster postgresql+psycopg2://user@host:5432/mlflow)")
    parser.add_argument("--artifacts-destination", default="",
                        help="where the server keeps artifacts (default: <folder>/mlartifacts with "
                             "SQLite; required with any other database: s3://bucket/prefix, "
                             "gs://bucket/prefix or a shared folder)")
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


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def is_database_server(uri: str) -> bool:
    """Whether `uri` names a database server (SQLAlchemy's `postgresql+psycopg2://...` included)."""
    return uri.partition("://")[0].split("+")[0] in DATABASE_SCHEMES


def missing_driver(uri: str) -> str | None:
    """The Python module SQLAlchemy would load for database `uri`, when it is not installed.

    SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3; `postgresql+psycopg2://`
    names psycopg2 (the `server` extra's driver).
    """
    import sqlalchemy

    url = sqlalchemy.engine.make_url(uri)
    try:
        url.get_dialect().import_dbapi()
    except sqlalchemy.exc.NoSuchModuleError:  # a driver SQLAlchemy does not know
        return url.drivername
    except ImportError as err:
        return err.name or str(err)
    return None


def refusal(args: argparse.Namespace) -> str | None:
    """Why the server must not start with `args` (the flag that fixes it), or None."""
    if not is_loopback(args.host) and not args.basic_auth:
        return (f"--host {args.host} is reachable from the network: add --basic-auth (MLflow's user "
                "and password check; set MLFLOW_AUTH_ADMIN_PASSWORD for the admin), or bind 127.0.0.1 "
                "and tunnel to it")
    if is_database_server(args.backend_store_uri) and (module := missing_driver(args.backend_store_uri)):
        return (f"--backend-store-uri {_redacted(args.backend_store_uri)}: SQLAlchemy's driver for it, "
                f"{module}, is not installed; name the installed one in the scheme "
                "(postgresql+psycopg2://..., the `server` extra's) or install it")
    if is_database_server(args.backend_store_uri) and not args.artifacts_destination:
        return (f"--backend-store-uri {_redacted(args.backend_store_uri)} needs --artifacts-destination "
                "(s3://bucket/prefix, gs://bucket/prefix or a shared folder): the default "
                f"{args.folder}/mlartifacts lies wherever this server starts, not beside the database")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = command_line()
    args = parser.parse_args(argv)
    if (problem := refusal(args)) is not None:
        parser.error(problem)
    if not args.backend_store_uri or not args.artifacts_destination:
        Path(args.folder).mkdir(parents=True, exist_ok=True)
    command = server_command(args.host, args.port, args.backend_store_uri, args.artifacts_destination,
                             args.workers, args.folder, args.allowed_hosts, args.basic_auth)
    os.environ.setdefault(JOB_EXECUTION_ENV_VAR, "false")
    if args.basic_auth and not os.environ.get(AUTH_CONFIG_ENV_VAR):
        users = command[command.index("--backend-store-uri") + 1]
        os.environ[AUTH_CONFIG_ENV_VAR] = str(write_auth_config(args.folder, users))
    print(f"MLflow server on http://{args.host}:{args.port}  (sweeps: MLFLOW_TRACKING_URI="
          f"http://{args.host}:{args.port})", flush=True)
    os.execvp(command[0], command)  # the server is this process: signals reach it directly
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
