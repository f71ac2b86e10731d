"""A local Braintree gateway emulator: the real `braintree` SDK talks to it over plain HTTP.

    python -m deploy.local.gateway --port 8500

Point the service at it with BRAINTREE_ENVIRONMENT=http://127.0.0.1:8500 and any merchant id and
keys (it checks none). It follows Braintree's documented sandbox behaviour:

- nonces: `fake-valid-*nonce` and `fake-paypal-one-time-nonce` succeed; `fake-processor-declined-*`
  are declined (2000 Do Not Honor); `fake-processor-failure-*` fail (3000); `fake-gateway-rejected-fraud-nonce`
  is gateway-rejected (fraud); `fake-consumed-nonce`, `fake-luhn-invalid-nonce` and unknown or reused
  nonces are validation errors (422);
- amounts: 2000.00-2999.99 processor-declined with that code, 3000.00-3000.99 failed (3000),
  5001.00 gateway-rejected (application_incomplete).

Tests (and curious operators) steer it through `/__emulator/...` JSON routes: make the next sales
time out or fail, list its transactions, settle one. It keeps every transaction, so a test can
check that one order made exactly one sale.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from braintree.util.xml_util import XmlUtil

SETTLEABLE = ("authorized", "submitted_for_settlement", "settling")


@dataclass
class Emulator:
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    used_nonces: set[str] = field(default_factory=set)
    faults: list[dict[str, Any]] = field(default_factory=list)  # applied to the next sales, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- the gateway ---------------------------------------------------------------------

    def sale(self, params: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        """(HTTP status, body, seconds to stall before answering)."""
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault and fault["mode"] == "error":
            return 500, {}, 0.0
        if fault and fault["mode"] == "unavailable":
            return 503, {}, 0.0
        if fault and fault["mode"] == "timeout":
            return 504, {}, float(fault.get("delay", 30))
        status, body = self._sale(params)
        if fault and fault["mode"] == "timeout_after_sale":  # charged, but the answer never arrives
            return 504, {}, float(fault.get("delay", 30))
        return status, body, 0.0

    def _sale(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        nonce = str(params.get("payment_method_nonce") or "")
        try:
            amount = Decimal(str(params.get("amount"))).quantize(Decimal("0.01"))
        except InvalidOperation:
            return 422, _validation("81503", "amount", "Amount is an invalid format.")
        if amount <= 0:
            return 422, _validation("81531", "amount", "Amount must be greater than zero.")
        with self.lock:
            if nonce in self.used_nonces or nonce == "fake-consumed-nonce":
                return 422, _validation(
                    "93107", "payment_method_nonce", "Cannot use a payment_method_nonce more than once."
                )
            if nonce == "fake-luhn-invalid-nonce":
                return 422, _validation("81715", "number", "Credit card number is invalid.")
            if not re.fullmatch(r"fake-[a-z0-9-]+-nonce", nonce):
                return 422, _validation("91565", "payment_method_nonce", "Unknown or expired payment_method_nonce.")
            if not nonce.startswith("fake-valid"):
                self.used_nonces.add(nonce)  # fake-valid nonces may be reused, as in the sandbox
            transaction = self._transaction(params, amount)
            outcome = _outcome(nonce, amount)
            transaction.update(outcome)
            if transaction["status"] == "authorized" and (params.get("options") or {}).get("submit_for_settlement"):
                transaction["status"] = "submitted_for_settlement"
            self.transactions[transaction["id"]] = transaction
        if transaction["status"] in ("processor_declined", "gateway_rejected", "failed"):
            message = (
                transaction.get("processor_response_text")
                or f"Gateway Rejected: {transaction.get('gateway_rejection_reason')}"
            )
            return 422, {
                "api_error_response": {"errors": {"errors": []}, "message": message, "transaction": transaction}
            }
        return 201, {"transaction": transaction}

    def _transaction(self, params: dict[str, Any], amount: Decimal) -> dict[str, Any]:
        stamp = datetime.now(UTC).replace(microsecond=0)
        return {
            "id": secrets.token_hex(4),
            "type": "sale",
            "amount": str(amount),
            "currency_iso_code": "USD",
            "order_id": params.get("order_id"),
            "merchant_account_id": params.get("merchant_account_id") or "local",
            "created_at": stamp,
            "updated_at": stamp,
            "refund_ids": [],
        }

    def find(self, transaction_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.transactions.get(transaction_id)
            return dict(found) if found else None

    def void(self, transaction_id: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            transaction = self.transactions.get(transaction_id)
            if transaction is None:
                return 404, {}
            if transaction["status"] not in ("authorized", "submitted_for_settlement"):
                return 422, _validation(
                    "91504",
                    "base",
                    "Transaction can only be voided if status is authorized or submitted_for_settlement.",
                )
            transaction["status"] = "voided"
            return 200, {"transaction": dict(transaction)}

    def refund(self, transaction_id: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            original = self.transactions.get(transaction_id)
            if original is None:
                return 404, {}
            if original["status"] not in ("settled", "settling"):
                return 422, _validation("91506", "base", "Cannot refund a transaction unless it is settled.")
            amount = Decimal(str(params.get("amount") or original["amount"])).quantize(Decimal("0.01"))
            credit = self._transaction({"order_id": original.get("order_id")}, amount)
            credit.update(type="credit", status="submitted_for_settlement", refunded_transaction_id=transaction_id)
            original["refund_ids"].append(credit["id"])
            self.transactions[credit["id"]] = credit
            return 201, {"transaction": credit}

    def search_ids(self, criteria: dict[str, Any]) -> list[str]:
        order = (criteria.get("order_id") or {}).get("is")
        with self.lock:
            return [tid for tid, t in self.transactions.items() if order is None or t.get("order_id") == order]

    # --- steering, for tests -----------------------------------------------------------------

    def settle(self, transaction_id: str) -> bool:
        with self.lock:
            transaction = self.transactions.get(transaction_id)
            if transaction is None or transaction["status"] not in SETTLEABLE:
                return False
            transaction["status"] = "settled"
            return True


def _outcome(nonce: str, amount: Decimal) -> dict[str, Any]:
    approved = {"status": "authorized", "processor_response_code": "1000", "processor_response_text": "Approved"}
    if "processor-declined" in nonce:
        return {
            "status": "processor_declined",
            "processor_response_code": "2000",
            "processor_response_text": "Do Not Honor",
        }
    if "processor-failure" in nonce or Decimal("3000.00") <= amount <= Decimal("3000.99"):
        return {
            "status": "failed",
            "processor_response_code": "3000",
            "processor_response_text": "Processor Network Unavailable - Try Again",
        }
    if "gateway-rejected-fraud" in nonce:
        return {"status": "gateway_rejected", "gateway_rejection_reason": "fraud"}
    if amount == Decimal("5001.00"):
        return {"status": "gateway_rejected", "gateway_rejection_reason": "application_incomplete"}
    if Decimal("2000.00") <= amount <= Decimal("2999.99"):
        code = str(int(amount))
        return {
            "status": "processor_declined",
            "processor_response_code": code,
            "processor_response_text": f"Declined ({code})",
        }
    return approved


def _validation(code: str, attribute: str, message: str) -> dict[str, Any]:
    error = {"code": code, "attribute": attribute, "message": message}
    return {"api_error_response": {"errors": {"errors": [], "transaction": {"errors": [error]}}, "message": message}}


def _client_token(merchant: str) -> str:
    token = {
        "version": 2,
        "authorizationFingerprint": secrets.token_hex(16),
        "merchantId": merchant,
        "environment": "development",
        "configUrl": f"/merchants/{merchant}/client_api/v1/configuration",
    }
    return base64.b64encode(json.dumps(token).encode()).decode()


def _xml(body: dict[str, Any]) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>' + XmlUtil.xml_from_dict(body)).encode()


def handler_for(emulator: Emulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
            pass

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _params(self) -> dict[str, Any]:
            raw = self._body()
            return XmlUtil.dict_from_xml(raw) if raw.strip() else {}

        def _answer(self, status: int, body: dict[str, Any] | None = None, stall: float = 0.0) -> None:
            if stall:
                time.sleep(stall)
            payload = _xml(body) if body else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _json(self, status: int, body: Any) -> None:
            payload = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            if self.path.startswith("/__emulator/transactions"):
                order = re.search(r"order_id=([^&]+)", self.path)
                with emulator.lock:
                    found = [
                        t for t in emulator.transactions.values() if not order or t.get("order_id") == order.group(1)
                    ]
                return self._json(200, found)
            match = re.fullmatch(r"/merchants/[^/]+/transactions/([^/]+)", self.path)
            transaction = emulator.find(match.group(1)) if match else None
            self._answer(200, {"transaction": transaction}) if transaction else self._answer(404)

        def do_PUT(self) -> None:
            match = re.fullmatch(r"/merchants/[^/]+/transactions/([^/]+)/void", self.path)
            if not match:
                return self._answer(404)
            self._body()
            self._answer(*emulator.void(match.group(1)))

        def do_POST(self) -> None:
            path = self.path
            if path.startswith("/__emulator/"):
                return self._control(path)
            merchant = re.match(r"/merchants/([^/]+)/", path)
            if merchant is None:
                return self._answer(404)
            params = self._params()
            if path.endswith("/client_token"):
                return self._answer(201, {"client_token": {"value": _client_token(merchant.group(1))}})
            if path.endswith("/transactions"):
                status, body, stall = emulator.sale(params.get("transaction") or {})
                return self._answer(status, body, stall)
            if path.endswith("/transactions/advanced_search_ids"):
                ids = emulator.search_ids(params.get("search") or {})
                return self._answer(200, {"search_results": {"page_size": 50, "ids": ids}})
            if path.endswith("/transactions/advanced_search"):
                ids = (params.get("search") or {}).get("ids") or []
                wanted = ids if isinstance(ids, list) else ids.get("in") or []
                found = [t for t in (emulator.find(tid) for tid in wanted) if t]
                return self._answer(200, {"credit_card_transactions": {"transaction": found}})
            refund = re.fullmatch(r"/merchants/[^/]+/transactions/([^/]+)/refund", path)
            if refund:
                return self._answer(*emulator.refund(refund.group(1), params.get("transaction") or {}))
            self._answer(404)

        def _control(self, path: str) -> None:
            raw = self._body()
            body = json.loads(raw) if raw else {}
            if path == "/__emulator/faults":
                with emulator.lock:
                    emulator.faults.extend(
                        [{k: v for k, v in body.items() if k != "count"}] * int(body.get("count", 1))
                    )
                return self._json(200, {"queued": len(emulator.faults)})
            settle = re.fullmatch(r"/__emulator/settle/([^/]+)", path)
            if settle:
                return self._json(200 if emulator.settle(settle.group(1)) else 409, {})
            if path == "/__emulator/reset":
                with emulator.lock:
                    emulator.faults.clear()
                return self._json(200, {})
            self._json(404, {})

    return Handler


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.emulator = Emulator()
        super().__init__((host, port), handler_for(self.emulator))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> GatewayServer:
        threading.Thread(target=self.serve_forever, name="gateway-emulator", daemon=True).start()
        return self


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 in a container")
    args = parser.parse_args()
    server = GatewayServer(args.port, args.host)
    print(f"[gateway] Braintree emulator on {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
