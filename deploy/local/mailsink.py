"""A local mail sink: an SMTP server (aiosmtpd) that keeps what it receives instead of delivering it.

    python -m deploy.local.mailsink --port 1025

`make run` starts one and points the service at it (SMTP_URL=smtp://127.0.0.1:1025), so verification,
reset and invite letters work offline: each one received is printed to the terminal (the links in it
are the ones to open) and saved under var/mail/ as an .eml file. Tests start one in-process and read
what it received. It accepts any sender and recipient and never relays anything.
"""

from __future__ import annotations

import argparse
import re
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from .mongo import free_port

ROOT = Path(__file__).resolve().parents[2]


class Mailbox:
    """What the sink received, in order; readers wait for a letter with a deadline."""

    def __init__(self, directory: Path | None = None, echo: bool = False) -> None:
        self.letters: list[tuple[list[str], EmailMessage]] = []  # (the envelope's recipients, the letter)
        self.changed = threading.Condition()
        self.directory = directory
        self.echo = echo

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        letter = message_from_bytes(envelope.content, _class=EmailMessage, policy=policy.default)
        assert isinstance(letter, EmailMessage)
        with self.changed:
            self.letters.append(([str(rcpt).lower() for rcpt in envelope.rcpt_tos], letter))
            self.changed.notify_all()
        if self.directory is not None:
            self._save(letter, envelope.content)
        if self.echo:
            print(_shown(letter), flush=True)
        return "250 OK: kept by the local mail sink"

    def _save(self, letter: EmailMessage, raw: bytes) -> None:
        self.directory_path().mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9@._-]", "_", str(letter.get("To", "unknown")))[:80]
        (self.directory_path() / f"{time.strftime('%Y%m%d-%H%M%S')}-{len(self.letters)}-{name}.eml").write_bytes(raw)

    def directory_path(self) -> Path:
        assert self.directory is not None
        return self.directory

    def to(self, address: str, containing: str = "") -> list[EmailMessage]:
        """The letters to `address` (whose text has `containing`), in the order they came."""
        with self.changed:
            # By the envelope, as a mail server delivers it (a To header can be made to show anything).
            mine = [letter for recipients, letter in self.letters if address.lower() in recipients]
            return [letter for letter in mine if containing in text_of(letter)]

    def wait(self, address: str, containing: str = "", count: int = 1, timeout: float = 20.0) -> list[EmailMessage]:
        """The first `count` letters to `address` with `containing`, once they have come (AssertionError
        after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(found := self.to(address, containing)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(found)} of {count} letters to {address} came within {timeout:.0f}s")
                self.changed.wait(left)
            return found[:count]


def text_of(letter: EmailMessage) -> str:
    body = letter.get_body(("plain",))
    return body.get_content() if body is not None else ""


def code_in(letter: EmailMessage, kind: str) -> str:
    """The code in a letter's link (`#verify=...` or `#reset=...`)."""
    found = re.search(rf"#{kind}=(\S+)", text_of(letter))
    if found is None:
        raise AssertionError(f"no #{kind}= link in the letter:\n{text_of(letter)}")
    return found.group(1)


def _shown(letter: EmailMessage) -> str:
    rule = "-" * 72
    return (
        f"[mail] {rule}\n[mail] To: {letter['To']}\n[mail] Subject: {letter['Subject']}\n"
        + "".join(f"[mail] {line}\n" for line in text_of(letter).splitlines())
        + f"[mail] {rule}"
    )


class MailSink:
    """The SMTP server around a `Mailbox`, on a thread of its own."""

    def __init__(
        self, port: int = 0, directory: Path | None = None, echo: bool = False, hostname: str = "127.0.0.1"
    ) -> None:
        self.mailbox = Mailbox(directory, echo)
        self.hostname = hostname
        self.controller = Controller(self.mailbox, hostname=hostname, port=port or free_port())

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def url(self) -> str:
        return f"smtp://{self.hostname}:{self.port}"

    def start(self) -> MailSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, default=ROOT / "var" / "mail")
    args = parser.parse_args()
    sink = MailSink(args.port, args.dir, echo=True).start()
    print(f"[mail] sink on {sink.url}, saving to {args.dir}; Ctrl-C to stop", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sink.stop()


if __name__ == "__main__":
    main()
