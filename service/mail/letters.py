"""What each mail says: plain text, written from the stored facts at the moment it is sent (pure)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate


@dataclass(frozen=True, slots=True)
class Letter:
    subject: str  # fixed text only: nothing a user typed goes into a header
    text: str


def shown(value: object, limit: int = 120) -> str:
    """A name or title someone typed, as a line of a mail: no control characters, bounded."""
    text = value if isinstance(value, str) else ""
    flat = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text).strip()
    return (flat[: limit - 1] + "…" if len(flat) > limit else flat) or "someone"


def verification(base: str, token: str, hours: int) -> Letter:
    # No greeting by name: whoever registered the address chose it, and it may not be its owner.
    return Letter(
        "Verify your email address for Murmuration",
        "Hello,\n\n"
        "An account on Murmuration was created with this address. If it was you, sign in and open this\n"
        f"link to verify the address (it works once, for {hours} hours):\n\n"
        f"  {base}/#verify={token}\n\n"
        "Or send the code from a terminal, with the token your registration answered:\n\n"
        f'  curl -X POST {base}/auth/verify -H "Authorization: Bearer $TOKEN" \\\n'
        f"       -H 'Content-Type: application/json' -d '{{\"token\": \"{token}\"}}'\n\n"
        "Until then nobody can share documents or rooms with you by this address.\n\n"
        "If you did not create it, someone else used your address: do not use this code. The account\n"
        f"is yours to take over: choose 'Forgot your password?' at {base}/ and reset its password.\n",
    )


def reset(name: str, base: str, token: str, minutes: int) -> Letter:
    return Letter(
        "Reset your Murmuration password",
        f"Hello {shown(name)},\n\n"
        f"Someone (we hope you) asked to reset the password of this account. Open this link to choose a new\n"
        f"one (it works once, for {minutes} minutes):\n\n"
        f"  {base}/#reset={token}\n\n"
        "Or from a terminal:\n\n"
        f"  curl -X POST {base}/auth/password/reset -H 'Content-Type: application/json' \\\n"
        f'       -d \'{{"token": "{token}", "password": "your new password"}}\'\n\n'
        "Resetting signs out every session of the account. If you did not ask for this, ignore this mail:\n"
        "your password stays as it is.\n",
    )


def invitation(inviter: str, what: str, title: str, base: str) -> Letter:
    return Letter(
        "You were invited to Murmuration",
        f"{shown(inviter)} shared the {what} “{shown(title)}” with this address on Murmuration.\n\n"
        f"Create an account with this address, or sign in to yours, and verify the address: the {what}\n"
        f"is yours to open as soon as the address is verified.\n\n  {base}/\n\n"
        "If you do not know this person, ignore this mail.\n",
    )


def message(letter: Letter, to: str, sender: str, message_id: str) -> EmailMessage:
    """The letter as a MIME message. The Message-ID is the outbox entry's: a mail sent twice (a lost
    answer, then a retry) is the same message to the receiving side."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = letter.subject
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = message_id
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(letter.text)
    return mail
