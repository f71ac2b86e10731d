"""What `/health` says: MongoDB answers, the change stream follows, every background task runs."""

from __future__ import annotations

from typing import Any

from .context import Context


async def check(context: Context) -> tuple[bool, dict[str, Any]]:
    """(healthy, the body): healthy only if MongoDB, the stream and every supervised task are."""
    mongo_ok = await context.db.ping()
    stream_ok = context.hub.following
    healthy = mongo_ok and stream_ok and context.supervisor.healthy()
    return healthy, {
        "status": "ok" if healthy else "degraded",
        "mongo": "ok" if mongo_ok else "unreachable",
        "change_stream": "ok" if stream_ok else "reconnecting",
        "tasks": context.supervisor.report(),
        "mail": await _mail(context, mongo_ok),
        "heap": context.heap.report(),
        "instance": context.settings.instance,
    }


async def _mail(context: Context, mongo_ok: bool) -> dict[str, Any]:
    """Whether letters can go out, and how many wait (they wait for good while mail is off); the count is
    null while MongoDB cannot say."""
    delivery = "smtp" if context.outbox.mailer is not None else "off"
    return {"delivery": delivery, "waiting": await context.outbox.waiting() if mongo_ok else None}
