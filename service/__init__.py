"""Murmuration: a realtime document service on Sanic and MongoDB.

The wiring: `app` (the app factory, the composition root: the only module that imports `handlers`),
`lifecycle` (builds a worker's parts and stops them in reverse), `context` (what handlers reach),
`supervisor` and `health`. Infrastructure: `config`, `errors`, `database` (the only driver import),
`schemas`, `stored`, `payloads`, `metrics`, `ratelimit`, `pages`. Domains: `accounts`, `contacts`,
`documents`, `rooms`. Subsystems: `realtime/` and `payments/` (each says what it may import).

Imports run handlers -> service -> models (tests/test_layout.py): domains and infrastructure never
import the subsystems or the wiring.
"""
