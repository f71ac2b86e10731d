"""SMTP delivery with aiosmtplib: one connection per letter, a total deadline, and a verdict on failure
(worth retrying, or never going to work)."""

from __future__ import annotations

import asyncio
import ssl
from email.message import EmailMessage
from email.utils import parseaddr

import aiosmtplib

from ..config import Smtp

# aiosmtplib's start_tls: required, used when offered, or never (TLS from the first byte instead).
STARTTLS: dict[str, bool | None] = {"starttls": True, "opportunistic": None, "tls": False}


class MailRefused(Exception):
    """The mail server refused the letter for good (a 5xx: no such mailbox, policy): no retry helps."""


class MailDelayed(Exception):
    """The letter could not be handed over now (no connection, a timeout, a 4xx): try again later.
    `ours`: the server refused our settings (credentials, MAIL_FROM, TLS), not the letter."""

    def __init__(self, reason: str, ours: bool = False) -> None:
        super().__init__(reason)
        self.ours = ours


LOOPBACK = ("localhost", "127.0.0.1", "::1")


class Mailer:
    def __init__(self, smtp: Smtp, timeout: float, sender: str) -> None:
        self.smtp = smtp
        self.timeout = timeout
        self.sender = parseaddr(sender)[1]
        # A password never crosses a network in clear: STARTTLS is required unless the server is this host.
        remote = smtp.host not in LOOPBACK
        self.start_tls = (
            True if smtp.username and remote and smtp.security == "opportunistic" else STARTTLS[smtp.security]
        )

    async def send(self, message: EmailMessage, to: str) -> None:
        """Hand `message` to the server for `to` alone (the envelope, not the headers, decides where it
        goes); `MailRefused` or `MailDelayed` if it is not taken."""
        smtp = self.smtp
        try:
            async with asyncio.timeout(self.timeout):
                await aiosmtplib.send(
                    message,
                    sender=self.sender,
                    recipients=[to],
                    hostname=smtp.host,
                    port=smtp.port,
                    username=smtp.username,
                    password=smtp.password,
                    use_tls=smtp.security == "tls",
                    start_tls=self.start_tls,
                    timeout=self.timeout,
                )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [answer.code for answer in error.recipients]
            kind = MailRefused if all(code >= 500 for code in codes) else MailDelayed
            raise kind(f"the recipient was refused {codes}") from None
        except (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError) as error:
            # About this letter or its address: a 5xx stays a 5xx however often it is sent.
            kind = MailRefused if error.code >= 500 else MailDelayed
            raise kind(f"the mail server answered {error.code}") from None
        except aiosmtplib.SMTPNotSupported:
            # An address that needs SMTPUTF8 on a server without it: the same on every try.
            raise MailRefused("the mail server cannot take this address (no SMTPUTF8)") from None
        except aiosmtplib.SMTPResponseException as error:
            # About us (credentials, MAIL_FROM, TLS): every letter waits until an operator fixes it.
            raise MailDelayed(
                f"the mail server answered {error.code}; check SMTP_URL and MAIL_FROM", ours=True
            ) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected) as error:
            raise MailDelayed(f"{type(error).__name__}") from None
        except aiosmtplib.SMTPException as error:  # no AUTH or STARTTLS where SMTP_URL asks for them, ...
            raise MailDelayed(f"{type(error).__name__}: {str(error)[:120]}; check SMTP_URL", ours=True) from None
        except (OSError, ssl.SSLError, TimeoutError) as error:
            raise MailDelayed(f"{type(error).__name__}") from None
