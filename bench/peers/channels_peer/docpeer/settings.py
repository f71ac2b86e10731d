"""Settings of the Channels peer: no SQL database, no sessions, a Redis channel layer.

Env: MONGO_URL, MONGO_DB (the database Murmuration writes), REDIS_URL (the channel layer's Redis).
"""

import os
import secrets

# Nothing here signs anything (no sessions, no auth), but Django wants a key.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["docpeer"]
DATABASES: dict[str, dict[str, str]] = {}

ASGI_APPLICATION = "docpeer.asgi.application"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")]},
    }
}

MONGO_URL = os.environ.get("MONGO_URL", "mongodb://127.0.0.1:27017/?replicaSet=rs0")
MONGO_DB = os.environ.get("MONGO_DB", "murmuration")
