"""Operations: health, metrics, the OpenAPI document and the offline docs page."""

from __future__ import annotations

import re

import httpx


def test_health_is_ok_when_mongodb_answers(anon: httpx.Client) -> None:
    answer = anon.get("/health")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    assert answer.json()["heap"]["policy"] == "freeze"
    tasks = answer.json()["tasks"]  # every background task, by name (no Braintree here: no payment loops)
    assert tasks == {"hub-follow": {"state": "running", "restarts": 0}, "mail": {"state": "running", "restarts": 0},
                     "roster-heartbeat": {"state": "running", "restarts": 0},
                     "coedit-keeper": {"state": "running", "restarts": 0},
                     "heap": {"state": "running", "restarts": 0}}  # fmt: skip


def test_every_answer_names_the_instance(anon: httpx.Client, server) -> None:
    assert anon.get("/health").headers["X-Instance"] == f"test-{server.port}"
    assert anon.get("/nowhere").headers["X-Instance"] == f"test-{server.port}"


def test_made_up_methods_share_one_metric_label(anon: httpx.Client) -> None:
    for method in ("BREW", "XYZZY1", "XYZZY2"):
        anon.request(method, "/contacts")
    text = anon.get("/metrics").text
    assert "XYZZY" not in text and "BREW" not in text
    assert re.search(r'murmuration_http_requests_total\{method="other",route="[^"]*",status="\d+"\} \d', text)


def test_metrics_are_prometheus_text_with_request_counts(anon: httpx.Client, signup) -> None:
    signup().get("/contacts")
    answer = anon.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert re.search(r'murmuration_http_requests_total\{method="GET",route="contacts",status="200"\} \d', text)
    for name in ("murmuration_http_request_duration_seconds", "murmuration_websockets_open",
                 "murmuration_events_fanned_out_total", "murmuration_change_stream_lag_seconds",
                 "murmuration_payment_outcomes_total"):  # fmt: skip
        assert name in text


def test_openapi_documents_every_rest_route(anon: httpx.Client) -> None:
    spec = anon.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    expected = {
        ("/auth/register", "post"), ("/auth/login", "post"), ("/auth/logout", "post"), ("/auth/me", "get"),
        ("/contacts", "post"), ("/contacts", "get"), ("/contacts/{contact_id}", "get"),
        ("/contacts/{contact_id}", "patch"), ("/contacts/{contact_id}", "delete"),
        ("/documents", "post"), ("/documents", "get"), ("/documents/{document_id}", "get"),
        ("/documents/{document_id}", "patch"), ("/documents/{document_id}", "delete"),
        ("/documents/{document_id}/collaborators", "post"),
        ("/documents/{document_id}/collaborators/{user_id}", "delete"),
        ("/documents/{document_id}/revisions", "get"), ("/documents/{document_id}/presence", "get"),
        ("/rooms", "post"), ("/rooms", "get"), ("/rooms/{room_id}/members", "post"),
        ("/rooms/{room_id}/members/{user_id}", "delete"), ("/rooms/{room_id}/messages", "post"),
        ("/rooms/{room_id}/messages", "get"), ("/rooms/{room_id}/read", "post"),
        ("/catalog", "get"), ("/payments/client-token", "get"), ("/orders", "post"), ("/orders", "get"),
        ("/orders/{order_id}", "get"), ("/payments/webhooks", "post"),
        ("/health", "get"), ("/metrics", "get"), ("/openapi.json", "get"), ("/docs", "get"),
    }  # fmt: skip
    assert expected <= documented
    create = spec["paths"]["/contacts"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert spec["components"]["schemas"][ref]["required"] == ["name"]


def test_the_docs_page_loads_only_local_assets(anon: httpx.Client) -> None:
    page = anon.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(source.startswith("/docs/assets/") for source in sources)
    for source in sources:
        asset = anon.get(source)
        assert asset.status_code == 200 and len(asset.content) > 1000, source
    assert anon.get("/docs/assets/../../service/config.py").status_code == 404


def test_the_websocket_route_without_an_upgrade_is_a_bad_request_in_the_contracts_shape(anon) -> None:
    answer = anon.get("/ws")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_request"


def test_by_default_a_made_up_x_forwarded_for_does_not_buy_a_fresh_rate_limit_bucket(anon) -> None:
    codes = [anon.get("/auth/me", headers={"X-Forwarded-For": f"10.9.{i // 250}.{i % 250}"}).status_code
             for i in range(80)]  # fmt: skip
    assert 429 in codes  # PROXIES_COUNT=0: the address is the socket's, whatever the header says


def test_a_wrong_method_is_a_405_that_names_the_methods_that_work(anon: httpx.Client) -> None:
    answer = anon.delete("/catalog")
    assert answer.status_code == 405 and answer.json()["error"]["code"] == "method_not_allowed"
    assert set(answer.headers["allow"].replace(" ", "").split(",")) >= {"GET"}
    assert "DELETE" not in answer.headers["allow"]


def test_a_405_on_a_path_with_several_handlers_names_every_method_that_works(anon: httpx.Client) -> None:
    for method in ("PUT", "TRACE"):
        answer = anon.request(method, "/contacts/0123456789abcdef01234567")
        assert answer.status_code == 405
        assert set(answer.headers["allow"].replace(" ", "").split(",")) >= {"GET", "PATCH", "DELETE"}
