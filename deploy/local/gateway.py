"""A local Braintree gateway emulator: the real `braintree` SDK talks to it over plain HTTP.

    python -m deploy.local.gateway --port 8500

Point the service at it with BRAINTREE_ENVIRONMENT=http://127.0.0.1:8500 and any merchant id and
keys (it checks none). It follows Braintree's documented sandbox behaviour:

- nonces: `fake-valid-*nonce` and `fake-paypal-one-time-nonce` succeed (and may be reused, as in the
  sandbox); a UUID or `tokencc_*` nonce, the shape Drop-in hands out, succeeds once, like a real one;
  `fake-processor-declined-*` are declined (2000 Do Not Honor); `fake-processor-failure-*` fail (3000);
  `fake-gateway-rejected-fraud-nonce` is gateway-rejected (fraud); `fake-consumed-nonce`,
  `fake-luhn-invalid-nonce` and unknown or reused nonces are validation errors (422, reuse is 93107);
- amounts: 2000.00-2999.99 processor-declined with that code, 3000.00-3000.99 failed (3000),
  5001.00 gateway-rejected (application_incomplete).

Tests (and curious operators) steer it through `/__emulator/...` JSON routes:
- `POST /__emulator/faults` `{"call": "sale"|"void"|"refund"|"client_token"|"find"|"search", "mode": ...,
  "delay": s, "count": n, "status": s}` queues faults for the next calls of that kind (default `sale`):
  `error` (500) and `unavailable` (503) answer at once and do nothing; `timeout` stalls `delay` seconds,
  answers 504 and does nothing; `timeout_after` does the call, then stalls and answers 504 (the answer
  is lost; `timeout_after_sale` is its old name); `slow` does the call and sends the answer a few bytes
  at a time over `delay` seconds (each read is quick, the whole is slow); `status` makes the next sale a
  transaction with that Braintree status;
- `POST /__emulator/search_lag` `{"seconds": n}`: new transactions show in searches only n seconds after
  they are made (Braintree's search is not immediately consistent; finding by id is);
- `POST /__emulator/settle/<id>`, `POST /__emulator/status/<id>` `{"status"}`, `GET /__emulator/transactions`,
  `POST /__emulator/reset` (faults and search lag).
It keeps every transaction, so a test can check that one order made exactly one sale; unlike Braintree it
lets a sale be refunded twice, so that a test sees a second refund instead of the gateway hiding it.
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

SETTLEABLE = ("authorized", "submitted_for_settlement", "settling", "settlement_pending")


SINGLE_USE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|tokencc_[a-z0-9_]+")


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    stall: float = 0.0  # seconds to wait before answering
    drip: float = 0.0  # seconds over which the answer is sent, a few bytes at a time


@dataclass
class Emulator:
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    used_nonces: set[str] = field(default_factory=set)
    faults: list[dict[str, Any]] = field(default_factory=list)  # applied to the next calls, in order
    search_lag: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- the gateway ---------------------------------------------------------------------

    def fault(self, call: str) -> dict[str, Any] | None:
        with self.lock:
            for index, fault in enumerate(self.faults):
                if fault.get("call", "sale") == call:
                    return self.faults.pop(index)
        return None

    def call(self, call: str, act: Any) -> Answer:
        """Answer one gateway call, with the next fault queued for its kind, if any."""
        fault = self.fault(call)
        mode = fault["mode"] if fault else None
        delay = float(fault.get("delay", 30)) if fault else 0.0
        if mode == "error":
            return Answer(500, {})
        if mode == "unavailable":
            return Answer(503, {})
        if mode == "timeout":
            return Answer(504, {}, stall=delay)
        status, body = act(fault)
        if mode in ("timeout_after", "timeout_after_sale"):  # done, but the answer never arrives
            return Answer(504, {}, stall=delay)
        if mode == "slow":
            return Answer(status, body, drip=delay)
        return Answer(status, body)

    def sale(self, params: dict[str, Any], fault: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
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
            if not re.fullmatch(r"fake-[a-z0-9-]+-nonce", nonce) and not SINGLE_USE.fullmatch(nonce):
                return 422, _validation("91565", "payment_method_nonce", "Unknown or expired payment_method_nonce.")
            if not nonce.startswith("fake-valid"):
                self.used_nonces.add(nonce)  # fake-valid nonces may be reused, as in the sandbox
            transaction = self._transaction(params, amount)
            outcome = _outcome(nonce, amount)
            transaction.update(outcome)
            if transaction["status"] == "authorized" and (params.get("options") or {}).get("submit_for_settlement"):
                transaction["status"] = "submitted_for_settlement"
            if fault and fault["mode"] == "status":
                transaction["status"] = str(fault["status"])
            self.transactions[transaction["id"]] = transaction
        if transaction["status"] in ("processor_declined", "gateway_rejected", "failed"):
            message = (
                transaction.get("processor_response_text")
                or f"Gateway Rejected: {transaction.get('gateway_rejection_reason')}"
            )
            return 422, {
                "api_error_response": {"errors": {"errors": []}, "message": message, "transaction": _shown(transaction)}
            }
        return 201, {"transaction": _shown(transaction)}

    def _transaction(self, params: dict[str, Any], amount: Decimal) -> dict[str, Any]:
        stamp = datetime.now(UTC).replace(microsecond=0)
        return {
            "_visible_at": time.monotonic() + self.search_lag,
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
            return _shown(found) if found else None

    def void(self, transaction_id: str, fault: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
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
            return 200, {"transaction": _shown(transaction)}

    def refund(self, transaction_id: str, params: dict[str, Any], fault: Any = None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            original = self.transactions.get(transaction_id)
            if original is None:
                return 404, {}
            if original["status"] not in ("settled", "settling", "settlement_confirmed"):
                return 422, _validation("91506", "base", "Cannot refund a transaction unless it is settled.")
            amount = Decimal(str(params.get("amount") or original["amount"])).quantize(Decimal("0.01"))
            credit = self._transaction({"order_id": original.get("order_id")}, amount)
            credit.update(type="credit", status="submitted_for_settlement", refunded_transaction_id=transaction_id)
            original["refund_ids"].append(credit["id"])
            self.transactions[credit["id"]] = credit
            return 201, {"transaction": _shown(credit)}

    def search_ids(self, criteria: dict[str, Any]) -> list[str]:
        order = (criteria.get("order_id") or {}).get("is")
        clock = time.monotonic()
        with self.lock:
            return [tid for tid, t in self.transactions.items()
                    if (order is None or t.get("order_id") == order) and t["_visible_at"] <= clock]  # fmt: skip

    # --- steering, for tests -----------------------------------------------------------------

    def settle(self, transaction_id: str) -> bool:
        with self.lock:
            transaction = self.transactions.get(transaction_id)
            if transaction is None or transaction["status"] not in SETTLEABLE:
                return False
            transaction["status"] = "settled"
            return True

    def set_status(self, transaction_id: str, status: str) -> bool:
        with self.lock:
            transaction = self.transactions.get(transaction_id)
            if transaction is None:
                return False
            transaction["status"] = status
            return True


def _shown(transaction: dict[str, Any]) -> dict[str, Any]:
    """A transaction as the API shows it (without the emulator's own bookkeeping)."""
    return {key: value for key, value in transaction.items() if not key.startswith("_")}


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

        def _answer(self, status: int, body: dict[str, Any] | None = None) -> None:
            self._send(Answer(status, body or {}))

        def _send(self, answer: Answer) -> None:
            if answer.stall:
                time.sleep(answer.stall)
            payload = _xml(answer.body) if answer.body else b""
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if not answer.drip:
                self.wfile.write(payload)
                return
            pieces = max(1, int(answer.drip / 0.25))  # a piece every quarter second: no read times out
            size = max(1, -(-len(payload) // pieces))
            for start in range(0, len(payload), size):
                self.wfile.write(payload[start : start + size])
                self.wfile.flush()
                time.sleep(answer.drip / pieces)

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
                        _shown(t)
                        for t in emulator.transactions.values()
                        if not order or t.get("order_id") == order.group(1)
                    ]
                return self._json(200, found)
            match = re.fullmatch(r"/merchants/[^/]+/transactions/([^/]+)", self.path)
            if match is None:
                return self._answer(404)

            def find(fault: Any) -> tuple[int, dict[str, Any]]:
                transaction = emulator.find(match.group(1))
                return (200, {"transaction": transaction}) if transaction else (404, {})

            self._send(emulator.call("find", find))

        def do_PUT(self) -> None:
            match = re.fullmatch(r"/merchants/[^/]+/transactions/([^/]+)/void", self.path)
            if not match:
                return self._answer(404)
            self._body()
            self._send(emulator.call("void", lambda fault: emulator.void(match.group(1), fault)))

        def do_POST(self) -> None:
            path = self.path
            if path.startswith("/__emulator/"):
                return self._control(path)
            merchant = re.match(r"/merchants/([^/]+)/", path)
            if merchant is None:
                return self._answer(404)
            params = self._params()
            if path.endswith("/client_token"):
                token = {"client_token": {"value": _client_token(merchant.group(1))}}
                return self._send(emulator.call("client_token", lambda fault: (201, token)))
            if path.endswith("/transactions"):
                return self._send(emulator.call("sale", lambda fault: emulator.sale(params.get("transaction") or {},
                                                                                    fault)))  # fmt: skip
            if path.endswith("/transactions/advanced_search_ids"):

                def search(fault: Any) -> tuple[int, dict[str, Any]]:
                    ids = emulator.search_ids(params.get("search") or {})
                    return 200, {"search_results": {"page_size": 50, "ids": ids}}

                return self._send(emulator.call("search", search))
            if path.endswith("/transactions/advanced_search"):
                ids = (params.get("search") or {}).get("ids") or []
                wanted = ids if isinstance(ids, list) else ids.get("in") or []
                found = [t for t in (emulator.find(tid) for tid in wanted) if t]
                return self._answer(200, {"credit_card_transactions": {"transaction": found}})
            refund = re.fullmatch(r"/merchants/[^/]+/transactions/([^/]+)/refund", path)
            if refund:
                transaction = params.get("transaction") or {}
                return self._send(emulator.call("refund", lambda fault: emulator.refund(refund.group(1), transaction)))
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
            status = re.fullmatch(r"/__emulator/status/([^/]+)", path)
            if status:
                return self._json(200 if emulator.set_status(status.group(1), str(body.get("status"))) else 404, {})
            if path == "/__emulator/search_lag":
                emulator.search_lag = float(body.get("seconds", 0))
                return self._json(200, {"search_lag": emulator.search_lag})
            if path == "/__emulator/reset":
                with emulator.lock:
                    emulator.faults.clear()
                    emulator.search_lag = 0.0
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
