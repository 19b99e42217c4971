"""USD prices per million tokens, and the cost of one call.

The table ships with OpenAI's list prices for the models the service offers by default;
``AHC_PRICES`` (JSON: ``{"model": [input_per_1m, output_per_1m]}``) adds or overrides
entries. Models without a price (the local model) cost nothing.
"""

from __future__ import annotations

from decimal import Decimal

# OpenAI list prices, USD per 1M tokens (input, output).
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
    "text-embedding-ada-002": (0.10, 0.0),
}

_MILLION = Decimal(1_000_000)


class PriceTable:
    """Looks up a model's price; unknown models are free (and say so in the docs)."""

    def __init__(self, overrides: dict[str, tuple[float, float]] | None = None) -> None:
        merged = {**DEFAULT_PRICES, **(overrides or {})}
        self._prices = {
            model: (Decimal(str(i)) / _MILLION, Decimal(str(o)) / _MILLION)
            for model, (i, o) in merged.items()
        }

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """USD cost of a call (exact decimal arithmetic)."""
        price = self._prices.get(model)
        if price is None:
            return Decimal(0)
        return price[0] * prompt_tokens + price[1] * completion_tokens

    def known(self, model: str) -> bool:
        """Whether the table has a price for ``model``."""
        return model in self._prices
