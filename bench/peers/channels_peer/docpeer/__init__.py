"""The Django Channels peer for `make bench`: documents' changes fanned out through channels_redis.

daphne serves `docpeer.asgi:application`; `python manage.py watch_documents` follows MongoDB's change
stream and sends each change to the document's group. No auth: it does less than Murmuration, which
authenticates each connection, authorizes each event per subscriber and adds resume cursors.
"""
