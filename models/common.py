"""Shared pieces of every shape: strict inputs, outputs, times and pages. Imports nothing of the service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Input(BaseModel):
    """A client payload: unknown fields and wrong JSON types are refused, never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class Output(BaseModel):
    """A response shape; used to document the API (answers are built by plain functions, for speed)."""


def iso(moment: datetime) -> str:
    """ISO 8601, UTC, milliseconds, `Z`: `2026-11-20T10:00:00.123Z`.

    `isoformat` is C code (strftime was a sixth of a contacts page's CPU); datetimes from MongoDB are
    UTC (the client is tz-aware) and ones without a zone are taken as UTC.
    """
    text = moment.isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if moment.tzinfo is not None else text + "Z"


def page(items: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next": next_cursor}


class Page(Output):
    items: list[Any]
    next: str | None = Field(description="cursor for `?after=`, or null on the last page")


class ErrorBody(Output):
    class Error(BaseModel):
        code: str
        message: str
        details: list[dict[str, Any]] | None = None

    error: Error
