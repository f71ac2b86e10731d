"""The catalog: server-side prices, loaded once at start from a JSON file (CATALOG_PATH)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ..config import ConfigError

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Item:
    sku: str
    name: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class Catalog:
    currency: str
    items: dict[str, Item]

    @classmethod
    def load(cls, path: Path) -> Catalog:
        try:
            raw = json.loads(path.read_text())
            currency = str(raw["currency"])
            items = {}
            for entry in raw["items"]:
                price = Decimal(str(entry["price"]))
                if price <= 0 or price != price.quantize(CENT):
                    raise ValueError(f"price of {entry['sku']} must be positive with at most two decimals")
                items[str(entry["sku"])] = Item(str(entry["sku"]), str(entry["name"]), price)
        except (OSError, ValueError, KeyError, TypeError, InvalidOperation) as error:
            raise ConfigError(f"CATALOG_PATH={path}: {error}") from None
        return cls(currency, items)
