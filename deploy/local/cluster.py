"""`make cluster`: a whole deployment on loopback, without Docker.

Three mongod members as one replica set (ports MONGO_PORT, +1, +2), two service instances
(PORT+1 and PORT+2, named `a` and `b`), the Braintree emulator, and nginx on PORT in front of
both instances. Ctrl-C stops everything. Tests drive the same `Cluster` on free ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from . import debian
from .gateway import GatewayServer
from .mailsink import MailSink
from .mongo import ROOT, VAR, MongoNode, MongoSetupError, find_mongod, initiate, kill_group, port_is_open, terminate

TEMPLATE = ROOT / "deploy" / "nginx" / "murmuration.conf.in"
KEYS = {
    "BRAINTREE_MERCHANT_ID": "local-merchant",
    "BRAINTREE_PUBLIC_KEY": "local-public",
    "BRAINTREE_PRIVATE_KEY": "local-private",
}


def say(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def ensure_nginx() -> str:
    return debian.ensure("nginx")


def render_site(listen: str, upstreams: list[str]) -> str:
    """The nginx site for instances at `upstreams` (host:port), listening on `listen`."""
    servers = "\n".join(f"    server {upstream} max_fails=1 fail_timeout=2s;" for upstream in upstreams)
    return TEMPLATE.read_text().replace("@LISTEN@", listen).replace("@UPSTREAMS@", servers)


def nginx_conf(site: Path, prefix: Path) -> str:
    """A complete nginx.conf for an unprivileged nginx whose files all live under `prefix`."""
    return f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
}}
"""


@dataclass
class Instance:
    name: str
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.process.poll() is not None:
                raise MongoSetupError(f"instance {self.name} exited; see {self.log}")
            if time.monotonic() > deadline:
                raise MongoSetupError(f"instance {self.name} not healthy in {timeout:.0f}s; see {self.log}")
            time.sleep(0.1)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        terminate(process, 20)

    def kill(self) -> None:
        process, self.process = self.process, None
        kill_group(process)


@dataclass
class Cluster:
    port: int = 8000
    mongo_port: int = 27017
    home: Path = field(default_factory=lambda: VAR / "cluster")
    db_name: str = "murmuration"
    extra_env: dict[str, str] = field(default_factory=dict)
    instance_ports: list[int] = field(default_factory=list)  # default: port + 1, port + 2
    mongo_ports: list[int] = field(default_factory=list)  # default: mongo_port, + 1, + 2
    members: list[MongoNode] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    gateway: GatewayServer | None = None
    mail: MailSink | None = None
    nginx: subprocess.Popen[bytes] | None = None
    mongo_url: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Cluster:
        nginx = ensure_nginx()
        binary = find_mongod()
        self.home.mkdir(parents=True, exist_ok=True)
        mongo_ports = self.mongo_ports or [self.mongo_port + i for i in range(3)]
        instance_ports = self.instance_ports or [self.port + 1, self.port + 2]
        for i, mongo_port in enumerate(mongo_ports):
            member = MongoNode(mongo_port, self.home / f"mongo-{i}", binary=binary)
            say(f"starting mongod member {i} on 127.0.0.1:{member.port}")
            member.start()
            self.members.append(member)
        self.mongo_url = initiate(self.members, timeout=120)
        say(f"replica set ready: {self.mongo_url}")
        self.gateway = GatewayServer(0).start()
        smtp = self.extra_env.get("SMTP_URL") or os.environ.get("SMTP_URL")
        if not smtp:  # letters go to a local sink, printed here and kept in the cluster's home
            self.mail = MailSink(0, self.home / "mail", echo=True).start()
            smtp = self.mail.url
            say(f"mail sink on {smtp}: letters are printed here and kept in {self.home / 'mail'}")
        for name, instance_port in zip(("a", "b"), instance_ports, strict=True):
            env = {
                **os.environ, **KEYS, "MONGO_URL": self.mongo_url, "MONGO_DB": self.db_name,
                "PORT": str(instance_port), "HOST": "127.0.0.1", "INSTANCE_NAME": name, "PROXIES_COUNT": "1",
                "BRAINTREE_ENVIRONMENT": self.gateway.url, "SMTP_URL": smtp, "PUBLIC_URL": self.url,
                **self.extra_env,
            }  # fmt: skip
            instance = Instance(name, instance_port, env, self.home / f"instance-{name}.log")
            say(f"starting instance {name} on 127.0.0.1:{instance.port}")
            instance.start()
            self.instances.append(instance)
        site = self.home / "murmuration.conf"
        upstreams = [f"127.0.0.1:{instance.port}" for instance in self.instances]
        site.write_text(render_site(f"127.0.0.1:{self.port}", upstreams))
        conf = self.home / "nginx.conf"
        conf.write_text(nginx_conf(site, self.home))
        self.nginx = subprocess.Popen([nginx, "-p", str(self.home), "-c", str(conf)], start_new_session=True)
        deadline = time.monotonic() + 20
        while not port_is_open(self.port):
            if self.nginx.poll() is not None or time.monotonic() > deadline:
                raise MongoSetupError(f"nginx did not start; see {self.home / 'error.log'}")
            time.sleep(0.05)
        say(f"nginx on {self.url} in front of instances a ({instance_ports[0]}) and b ({instance_ports[1]})")
        return self

    def instance(self, name: str) -> Instance:
        return next(instance for instance in self.instances if instance.name == name)

    def stop(self) -> None:
        terminate(self.nginx, 10)
        self.nginx = None
        for instance in self.instances:
            instance.stop()
        if self.gateway is not None:
            self.gateway.shutdown()
        if self.mail is not None:
            self.mail.stop()
        # All members at once: a primary told to stop alone waits for its secondaries to catch up.
        for member in self.members:
            if member.process is not None and member.process.poll() is None:
                member.process.terminate()
        for member in self.members:
            member.stop()


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    mongo_port = int(os.environ.get("MONGO_PORT", "27017"))
    cluster = Cluster(port=port, mongo_port=mongo_port)
    stop = False

    def interrupt(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        cluster.start()
        say("ready; Ctrl-C stops everything")
        while not stop:
            time.sleep(0.2)
        return 0
    except MongoSetupError as error:
        say(f"error: {error}")
        return 1
    finally:
        say("stopping")
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
