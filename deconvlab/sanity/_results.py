"""What the sanity checks' results share: tables keyed by rule, restricted to some rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar

__all__ = ["restrict_to_rules"]


class _PerRule(Protocol):
    @property
    def maps(self) -> Mapping[str, Any]: ...


R = TypeVar("R", bound=_PerRule)


def restrict_to_rules(result: R, rules: Sequence[str], per_rule: Sequence[str]) -> R:
    """``result`` (a dataclass with a ``maps`` table) with its ``per_rule`` tables keyed by ``rules``.

    Raises
    ------
    KeyError
        Naming the rules the result holds no maps for, and those it holds.
    """
    maps = result.maps
    missing = [rule for rule in rules if rule not in maps]
    if missing:
        raise KeyError(f"no maps for {missing}; this result holds {list(maps)}")
    tables = {name: getattr(result, name) for name in per_rule}
    restricted = {name: {rule: table[rule] for rule in rules} for name, table in tables.items()}
    return replace(result, **restricted)  # type: ignore[type-var]  # a dataclass, as every result is
