"""`make run`: the whole service on this machine, offline.

Starts, unless told otherwise by the environment:
- an embedded MongoDB replica set (unless MONGO_URL is set), see deploy/local/mongo.py;
- the Braintree gateway emulator (unless BRAINTREE_MERCHANT_ID is set), see deploy/local/gateway.py;
- a local mail sink (unless SMTP_URL is set) that prints every letter here and keeps it in var/mail/,
  see deploy/local/mailsink.py;
then `python -m service`, and stops everything on Ctrl-C.
"""

from __future__ import annotations

import os
import sys

from .gateway import GatewayServer
from .mailsink import ROOT, MailSink
from .mongo import port_is_open, run_with_mongo


def main() -> int:
    if not os.environ.get("BRAINTREE_MERCHANT_ID"):
        port = int(os.environ.get("GATEWAY_PORT", "8500"))
        gateway = GatewayServer(0 if port_is_open(port) else port).start()
        os.environ.update(
            BRAINTREE_ENVIRONMENT=gateway.url,
            BRAINTREE_MERCHANT_ID="local-merchant",
            BRAINTREE_PUBLIC_KEY="local-public",
            BRAINTREE_PRIVATE_KEY="local-private",
        )
        print(f"[gateway] Braintree emulator on {gateway.url} (pay with the nonce fake-valid-nonce)", flush=True)
    if not os.environ.get("SMTP_URL"):
        port = int(os.environ.get("MAIL_PORT", "1025"))
        sink = MailSink(0 if port_is_open(port) else port, ROOT / "var" / "mail", echo=True).start()
        os.environ["SMTP_URL"] = sink.url
        print(f"[mail] local mail sink on {sink.url}: letters are printed here and kept in var/mail/", flush=True)
    return run_with_mongo([sys.executable, "-m", "service"], ephemeral=False)


if __name__ == "__main__":
    sys.exit(main())
