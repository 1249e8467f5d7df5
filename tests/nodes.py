"""Two Ray nodes on one machine that share no disk and no network but their own: each node
in a network namespace of its own (a veth into a bridge the test makes: 10.213.N.0/24,
nothing routed off it) and a mount namespace of its own whose /tmp is a private tmpfs
(Ray's temp dir, HOME, the data cache's local mirror; /dev/shm too), so a file one node writes
locally is invisible to the other and to the test. What they share is what a cluster's
nodes share: the installed code (the repository and its virtual environment, as an
image would hold them) and the services on the bridge (an S3 server on its host side).

Creating namespaces needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2 / util-linux;
where they are missing the test is skipped, or failed where DSSL_REQUIRE_NAMESPACES is
set (`.ci/run` sets it). Everything made here is removed on the way out, on failure too:
every process inside the namespaces is killed, then the namespaces and the bridge are
deleted (the veths go with them).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from shlex import quote
from types import SimpleNamespace
from typing import Iterator

import pytest

REQUIRE_VAR = "DSSL_REQUIRE_NAMESPACES"
TOOLS = ("ip", "unshare", "nsenter")
SUBNET = "10.213.{}"  # one /24 per network; the third octet is picked free on this machine
PRIVATE_TMP = "/tmp"  # a tmpfs of each node's own: Ray's temp dir, HOME and caches live under it
# Where a node's mount namespace keeps this machine's /tmp for a moment, to bind back the code
# that lives there (a CI checkout under /tmp, its .venv): an empty directory on any Debian.
STASH = "/mnt"
MOUNTED = "dssl-node: private /tmp mounted"  # a node's first line: `Node.command` may enter it now


def unavailable(message: str) -> None:
    """Skip the test (namespaces cannot be made here), or fail it where they are required."""
    if os.environ.get(REQUIRE_VAR):  # CI (.ci/run) runs as root with iproute2
        pytest.fail(f"{message} ({REQUIRE_VAR} is set)")
    pytest.skip(message)


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise OSError(f"{' '.join(command)}: {done.stderr.strip() or done.stdout.strip()}")


def _free_subnet() -> str:
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, timeout=30).stdout
    for octet in range(1 + os.getpid() % 200, 255):
        if f" {SUBNET.format(octet)}." not in used:
            return SUBNET.format(octet)
    raise OSError("no free 10.213.N.0/24 subnet on this machine")


@dataclass
class Node:
    """A network namespace and the address of its end of the bridge."""

    netns: str
    ip: str
    process: subprocess.Popen | None = None  # the node's first process: its mount namespace
    services: list[subprocess.Popen] = field(default_factory=list)  # in its network, not its mounts

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside this node: its network and its mount namespace (its private /tmp)."""
        assert self.process is not None, "the node has not been started"
        return ["nsenter", "-t", str(self.process.pid), "-n", "-m", "--", *argv]


@dataclass
class Network:
    bridge: str
    host_ip: str  # the bridge's own address: services the test runs for every node
    nodes: list[Node] = field(default_factory=list)


@contextmanager
def private_network(names: tuple[str, ...] = ("head", "worker")) -> Iterator[Network]:
    """A bridge on this machine and one network namespace per name, each joined to the bridge
    by a veth pair, loopback up. Skips (or fails, see REQUIRE_VAR) where that cannot be made."""
    if os.geteuid() != 0:
        unavailable("network and mount namespaces need root")
    if missing := [t for t in TOOLS if shutil.which(t) is None]:
        unavailable(f"{', '.join(missing)} not installed (iproute2, util-linux)")
    # A node's private /tmp is a tmpfs mounted in a mount namespace of its own.
    if not Path(STASH).is_dir():
        unavailable(f"{STASH} is missing: a node keeps this machine's /tmp there while it mounts its own")
    probe = ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "dssl-probe", PRIVATE_TMP]
    try:
        _run(*probe)
    except OSError as err:
        unavailable(f"cannot give a node a private /tmp: {err}")
    tag = f"d{os.getpid() % 100000}"  # interface names are at most 15 characters
    net = None
    try:
        subnet = _free_subnet()
        net = Network(bridge=f"{tag}br", host_ip=f"{subnet}.254")
        _run("ip", "link", "add", net.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{net.host_ip}/24", "dev", net.bridge)
        _run("ip", "link", "set", net.bridge, "up")
        for i, name in enumerate(names, start=1):
            node = Node(netns=f"{tag}-{name}", ip=f"{subnet}.{i}")
            net.nodes.append(node)
            outside, inside = f"{tag}{name[0]}{i}o", f"{tag}{name[0]}{i}i"
            _run("ip", "netns", "add", node.netns)
            _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            _run("ip", "link", "set", outside, "master", net.bridge, "up")
            _run("ip", "link", "set", inside, "netns", node.netns)
            _run("ip", "-n", node.netns, "addr", "add", f"{node.ip}/24", "dev", inside)
            _run("ip", "-n", node.netns, "link", "set", inside, "up")
            _run("ip", "-n", node.netns, "link", "set", "lo", "up")
    except OSError as err:
        _remove(net)
        unavailable(f"cannot make the nodes' network: {err}")
    try:
        yield net
    finally:
        _remove(net)


def _remove(net: Network | None) -> None:
    """Kill every process in the network's namespaces, then delete them and the bridge."""
    if net is None:
        return
    for node in net.nodes:
        pids = subprocess.run(["ip", "netns", "pids", node.netns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in [node.process, *node.services]:
            if process is not None:
                process.wait(timeout=30)
    for node in net.nodes:
        subprocess.run(["ip", "netns", "del", node.netns], capture_output=True)  # its veth end, and the peer, go too
    subprocess.run(["ip", "link", "del", net.bridge], capture_output=True)


def code_under_private_tmp() -> list[str]:
    """The repository and the Python it runs on, where they lie under PRIVATE_TMP (outermost
    folders only): a node must still run them once its /tmp is its own."""
    import sys

    roots = {Path(p).resolve() for p in (Path(__file__).resolve().parents[1], sys.prefix, sys.base_prefix)}
    under = sorted(p for p in roots if p.is_relative_to(PRIVATE_TMP))
    return [str(p) for p in under if not any(p != q and p.is_relative_to(q) for q in under)]


def start_node(node: Node, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`argv` as the node's first process: in its network namespace and a new mount
    namespace whose /tmp is a fresh tmpfs (gone when its last process exits)."""
    # /dev/shm too: Ray's object store maps its memory there. The project and its interpreter
    # stay visible where they lie under /tmp (a clone made by mktemp): bound back from the stash.
    rebind = "".join(f" && mkdir -p {quote(path)} && mount --bind {quote(STASH + path[len(PRIVATE_TMP):])}"
                     f" {quote(path)}" for path in code_under_private_tmp())
    script = (f'mount --bind {PRIVATE_TMP} {STASH} && mount -t tmpfs dssl-node {PRIVATE_TMP}{rebind} '
              f'&& umount -l {STASH} && mount -t tmpfs dssl-shm /dev/shm && mkdir -p "$HOME" '
              f'&& echo {MOUNTED} && exec "$@"')
    with log.open("w") as out:
        # `ip netns exec` and `unshare` exec (no fork): the Popen's pid is the node's process.
        node.process = subprocess.Popen(
            ["ip", "netns", "exec", node.netns, "unshare", "--mount", "--propagation", "private",
             "sh", "-c", script, "sh", *argv], env=env, stdout=out, stderr=subprocess.STDOUT)
    return node.process


def start_service(node: Node, argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """`argv` in the node's network namespace but this machine's files (a server whose own
    store the test reads), killed with the node."""
    with log.open("w") as out:
        process = subprocess.Popen(["ip", "netns", "exec", node.netns, *argv], env=env, cwd=cwd, stdout=out,
                                   stderr=subprocess.STDOUT)
    node.services.append(process)
    return process


def wait_for_log(node: Node, log: Path, text: str, seconds: float) -> None:
    """Until `text` is in the node's output; fails with the output if it exits or is late."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if node.process is not None and node.process.poll() is not None:
            break
        time.sleep(0.25)
    pytest.fail(f"node {node.netns}: no {text!r} within {seconds} s:\n{log.read_text(errors='replace')[-3000:]}")


@contextmanager
def s3_server(host: str, bucket: str = "dssl") -> Iterator[SimpleNamespace]:
    """moto's S3 server in this process, bound on `host`, with one empty bucket; its endpoint
    and keys as the AWS SDK's variables (`env`), and a boto3 client for the test."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()
        env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=bucket)
        yield SimpleNamespace(bucket=bucket, client=client, env=env)
    finally:
        server.stop()


def object_keys(store, prefix: str = "") -> list[str]:
    """Every key in the object store's bucket under `prefix`."""
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]
