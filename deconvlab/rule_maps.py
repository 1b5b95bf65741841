"""Rule maps: a backward rule per layer, chosen by where a ReLU runs.

A :class:`RuleMap` maps *where* (module paths with glob patterns, module types, or a
predicate ``(name, module) -> bool``) to *what* (a rule), with a default::

    dl.RuleMap({"features.1*": "guided_backprop", nn.ReLU: "deconvnet"}, default="gradient")

Anywhere one rule is accepted (:class:`~deconvlab.backward_rule`, :func:`~deconvlab.attribute`,
:func:`~deconvlab.project`, :func:`~deconvlab.record`), a rule map or a plain dict (made into
one) is accepted too, also as an item of ``rules=[...]``. :func:`deconvlab.explain_rules`
shows which rule each ReLU got.

How: while a map is active, the module forward hooks of :mod:`deconvlab.observations` keep
the stack of modules being called. Each ReLU evaluated during the forward pass resolves its
*site* from that stack, and gets a :class:`~deconvlab.relu.SiteSlot` holding its rule for
each selection of the context's :class:`~deconvlab.relu.RuleSlot`; the backward pass reads
it from there, so one forward pass still serves several rules (and several maps).
"""

from __future__ import annotations

import difflib
import html
import inspect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Callable, Union, cast

import numpy as np
from torch import Tensor, nn

from .relu import RuleSlot, SiteSlot
from .rules import Rule, RuleLike, get_rule

__all__ = [
    "Key",
    "RuleChoice",
    "RuleMap",
    "RuleSpec",
    "RuleTable",
    "Selection",
    "SiteResolver",
    "as_selection",
    "module_paths_text",
]

#: Where an entry applies: a glob pattern on module paths, a module type, or a predicate.
Key = Union[str, type, Callable[[str, nn.Module], bool]]

PATHS_SHOWN = 40  # module paths listed in an error before it shortens the list


class RuleMap:
    r"""A backward rule per layer: which rule a ReLU gets depends on the module it runs in.

    Parameters
    ----------
    entries : dict or sequence of (key, rule) pairs
        In order. A key is a glob pattern on module paths as ``named_modules()`` names them
        (``fnmatch``, case-sensitive: ``"features.1*"``, ``"layer4.*"``, ``"*"``; the model
        itself is ``""``), a module type (``nn.Linear``, matched with ``isinstance``), or a
        predicate ``callable(name, module) -> bool``. A value is a rule name or a
        :class:`~deconvlab.Rule`.
    default : str or Rule, default "gradient"
        The rule of a ReLU that no entry places.
    name : str, optional
        The map's name, e.g. the key of its signal in ``attribute(..., rules=[...])``;
        by default one made from the entries, ``"features.1*: guided_backprop, else gradient"``.

    Notes
    -----
    Matching: a ReLU evaluated during the forward pass (any spelling, including a
    functional ``F.relu`` inside a module's ``forward``) gets the rule of the **innermost**
    module on the current module call stack that some entry matches; among the entries
    that match that module, the **first** in order wins; if no module on the stack is
    matched, the ``default``. This equals entering ``backward_rule(rule)`` in each matched
    module's forward pre-hook and leaving it in its forward hook. A ``nn.ReLU`` module is
    itself on the stack, so ``{nn.ReLU: ...}`` or its path places it.

    Paths are those of the model given to :func:`~deconvlab.attribute` (or ``model=`` of
    :class:`~deconvlab.backward_rule`), else of the outermost module called in the block.
    An entry that matches no module of that model is an error (``ValueError``, listing
    the model's module paths).

    Examples
    --------
    >>> top = dl.RuleMap({"features.1*": "guided_backprop"}, name="guided on top")  # doctest: +SKIP
    >>> maps = dl.attribute(model, x, 3, rules=[top, "gradient"])                   # doctest: +SKIP
    """

    def __init__(
        self,
        entries: Mapping[Any, RuleLike] | Iterable[tuple[Any, RuleLike]],  # keys: see Key
        default: RuleLike = "gradient",
        *,
        name: str | None = None,
    ) -> None:
        pairs = _pairs(entries)
        self.entries: tuple[tuple[Key, Rule], ...] = tuple(_entry(key, value) for key, value in pairs)
        try:
            self.default: Rule = get_rule(default)
        except (TypeError, ValueError) as error:
            raise type(error)(f"default: {error}") from None
        self.name: str = _checked_name(name) if name is not None else self._made_name()

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The distinct rules the map may give, in order, the default last."""
        found: dict[int, Rule] = {}
        for rule in (*(rule for _, rule in self.entries), self.default):
            found.setdefault(id(rule), rule)
        return tuple(found.values())

    @property
    def sign_only(self) -> bool:
        """Every rule of the map reads ``x`` only through ``[x > 0]`` (see :class:`~deconvlab.Rule`)."""
        return all(rule.sign_only for rule in self.rules)

    def rule_of(self, index: int) -> Rule:
        """The rule of entry ``index``; ``-1`` (no entry) gives the default."""
        return self.default if index < 0 else self.entries[index][1]

    def key_text(self, index: int) -> str:
        """Entry ``index``'s key as text: the pattern, the type's name or the predicate's name."""
        return _key_text(self.entries[index][0]) if index >= 0 else "default"

    def match(self, model: nn.Module) -> dict[int, int]:
        """``id(module) -> index of the first entry matching it``, for the modules of ``model`` matched.

        Raises
        ------
        ValueError
            An entry matches no module of ``model``; the message lists its module paths.
        """
        first: dict[int, int] = {}
        used: set[int] = set()
        for path, module in model.named_modules(remove_duplicate=False):
            for index, (key, _) in enumerate(self.entries):
                if _matches(key, path, module):
                    used.add(index)
                    first[id(module)] = min(first.get(id(module), index), index)
        unused = [index for index in range(len(self.entries)) if index not in used]
        if unused:
            raise ValueError(self._unmatched_text(unused[0], model))
        return first

    def _unmatched_text(self, index: int, model: nn.Module) -> str:
        key = self.entries[index][0]
        hint = ""
        if isinstance(key, str):
            close = difflib.get_close_matches(key, [path for path, _ in model.named_modules()], n=3)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        elif isinstance(key, type):
            kinds = sorted({type(module).__name__ for module in model.modules()})
            hint = f" (its module types: {', '.join(kinds)})"
        return (
            f"rule map {self.name!r}: the entry {_key_text(key)!r} matches no module of the "
            f"{type(model).__name__}{hint}. Its module paths: {module_paths_text(model)}"
        )

    def _made_name(self) -> str:
        placed = ", ".join(f"{_key_text(key)}: {rule.name}" for key, rule in self.entries)
        return f"{placed}, else {self.default.name}"

    def __repr__(self) -> str:
        entries = ", ".join(f"{_key_repr(key)}: {rule.name!r}" for key, rule in self.entries)
        return f"RuleMap({{{entries}}}, default={self.default.name!r}, name={self.name!r})"


#: What a rule selection may be: one rule, or a rule map.
Selection = Union[Rule, RuleMap]
#: What ``rule=`` accepts: a rule name, a Rule, a RuleMap, or a dict made into a RuleMap.
RuleSpec = Union[str, Rule, RuleMap, Mapping[Any, RuleLike]]  # keys: see Key


def as_selection(spec: object, name: str = "rule") -> Selection:
    """A rule name, Rule, RuleMap or dict as a Rule or RuleMap; errors name the argument ``name``."""
    try:
        return _selection(spec)
    except (TypeError, ValueError) as error:
        if name == "rule" and not isinstance(spec, Mapping):
            raise  # get_rule's message names the rule already
        raise type(error)(f"{name}: {error}") from None


def _selection(spec: object) -> Selection:
    if isinstance(spec, (Rule, RuleMap)):
        return spec
    if isinstance(spec, Mapping):
        return RuleMap(spec)
    try:
        return get_rule(spec)  # type: ignore[arg-type]
    except TypeError as error:  # says what a rule is, and lists the known ones
        raise TypeError(
            f"{error}; or a rule per layer: a dict such as {{'features.1*': 'guided_backprop'}} or a "
            "deconvlab.RuleMap"
        ) from None


def _pairs(entries: object) -> list[tuple[Key, RuleLike]]:
    if isinstance(entries, RuleMap):
        return list(entries.entries)
    if isinstance(entries, Mapping):
        pairs = list(entries.items())
    elif isinstance(entries, Iterable) and not isinstance(entries, (str, bytes, Tensor, np.ndarray)):
        pairs = list(entries)
        if not all(isinstance(pair, Sequence) and len(pair) == 2 for pair in pairs):
            raise TypeError("entries must be a dict {where: rule} or a sequence of (where, rule) pairs")
    else:
        raise TypeError(
            f"entries must be a dict {{where: rule}} such as {{'features.1*': 'guided_backprop'}}, "
            f"not {type(entries).__name__}"
        )
    if not pairs:
        raise ValueError(
            "entries is empty: a rule map needs at least one entry (for one rule everywhere, pass the rule)"
        )
    keys = [key for key, _ in pairs]
    for key in keys:
        _check_key(key)  # before comparing keys (a tensor or an array has no truth value)
    for position, key in enumerate(keys):
        if key in keys[:position]:
            raise ValueError(f"entries lists the key {_key_text(key)!r} twice; the second would never apply")
    return pairs


def _entry(key: object, value: object) -> tuple[Key, Rule]:
    """One checked ``(key, rule)`` pair; :func:`_pairs` has checked the key."""
    if isinstance(value, (RuleMap, Mapping)):
        raise TypeError(f"entries: the rule for {_key_text(key)!r} is a rule map; rule maps do not nest")
    try:
        return cast(Key, key), get_rule(cast(RuleLike, value))  # get_rule refuses a non-rule
    except (TypeError, ValueError) as error:
        raise type(error)(f"entries: the rule for {_key_text(key)!r}: {error}") from None


def _check_key(key: object) -> None:
    """A key is a pattern, an nn.Module type, or a predicate ``(name, module)``."""
    if isinstance(key, str):
        if not key:
            raise ValueError("entries: an empty pattern ''; use '*' for every module")
        return
    if isinstance(key, type):
        if not issubclass(key, nn.Module):
            raise TypeError(f"entries: the key {key.__name__} is a type but no nn.Module type")
        return
    if isinstance(key, nn.Module):
        raise TypeError(
            f"entries: the key is a module ({type(key).__name__}); give its path as a string "
            "(e.g. 'features.3') or its type"
        )
    if not callable(key):
        raise TypeError(
            "entries: a key must be a module path pattern (str), an nn.Module type or a predicate "
            f"callable(name, module) -> bool, not {type(key).__name__}"
        )
    try:
        inspect.signature(key).bind(None, None)
    except TypeError:
        raise TypeError(
            f"entries: the predicate {_key_text(key)!r} must take two arguments (name, module); its "
            f"signature is {inspect.signature(key)}"
        ) from None
    except ValueError:  # no signature to read: it will tell when called
        pass


def _checked_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    if not name:
        raise ValueError("name is empty; give the map a readable name such as 'guided on top'")
    return name


def _matches(key: Key, path: str, module: nn.Module) -> bool:
    if isinstance(key, str):
        return fnmatchcase(path, key)
    if isinstance(key, type):
        return isinstance(module, key)
    return bool(key(path, module))


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, type):
        return key.__name__
    return getattr(key, "__name__", type(key).__name__)


def _key_repr(key: object) -> str:
    return repr(key) if isinstance(key, str) else _key_text(key)


def module_paths_text(model: nn.Module, limit: int = PATHS_SHOWN) -> str:
    """The model's module paths, shortened for a big model: only the shallow ones, with a count."""
    paths = [path for path, _ in model.named_modules() if path]
    if not paths:
        return "none (the model has no submodules)"
    if len(paths) <= limit:
        return ", ".join(paths)
    depth = 1
    while sum(path.count(".") < depth + 1 for path in paths) <= limit:
        depth += 1
    shown = [path for path in paths if path.count(".") < depth][:limit]
    return (
        f"{', '.join(shown)} and {len(paths) - len(shown)} more "
        "(all of them: [name for name, _ in model.named_modules()])"
    )


class SiteResolver:
    """For one open context with rule maps: the :class:`SiteSlot` of each ReLU, from the module stack.

    Parameters
    ----------
    slot : RuleSlot
        The context's slot; some of its selections are rule maps.
    tables : list of dict, optional
        :meth:`RuleMap.match` of each map on the model (fixed paths); else each outermost module called
        is matched when it first runs a ReLU.
    record : list
        Gets ``(innermost module, ((entry index, deciding module), ...))`` per ReLU, one
        pair per map: what :func:`deconvlab.explain_rules` shows.
    """

    def __init__(self, slot: RuleSlot, tables: list[dict[int, int]] | None, record: list) -> None:
        self.slot, self.fixed, self.record = slot, tables, record
        self.maps = [item for item in slot.rules if isinstance(item, RuleMap)]
        self.roots: dict[int, tuple[nn.Module, list[dict[int, int]]]] = {}
        self.slots: dict[tuple[int, ...], SiteSlot] = {}

    def slot_for(self, modules: list[nn.Module]) -> SiteSlot:
        """The slot of a ReLU evaluated now, with ``modules`` the module call stack (innermost last)."""
        decisions = tuple(_decide(table, modules) for table in self._tables(modules))
        key = tuple(index for index, _ in decisions)
        site = self.slots.get(key)
        if site is None:
            site = self.slots[key] = self._new_slot(key)
        self.record.append((modules[-1] if modules else None, decisions))
        return site

    def _tables(self, modules: list[nn.Module]) -> list[dict[int, int]]:
        if self.fixed is not None:
            return self.fixed
        if not modules:
            return [{} for _ in self.maps]
        root = modules[0]
        known = self.roots.get(id(root))
        if known is None or known[0] is not root:
            known = self.roots[id(root)] = (root, [item.match(root) for item in self.maps])
        return known[1]

    def _new_slot(self, key: tuple[int, ...]) -> SiteSlot:
        indices = iter(key)
        by_selection = {
            id(item): item.rule_of(next(indices)) if isinstance(item, RuleMap) else item
            for item in self.slot.rules
        }
        return SiteSlot(self.slot, by_selection)


def _decide(table: dict[int, int], modules: list[nn.Module]) -> tuple[int, nn.Module | None]:
    """The first entry matching the innermost matched module of the stack, and that module."""
    for module in reversed(modules):
        index = table.get(id(module))
        if index is not None:
            return index, module
    return -1, None


@dataclass(frozen=True)
class RuleChoice:
    """Which rule one ReLU call got under a rule map, and why.

    Attributes
    ----------
    call : int
        The ReLU call's place in the forward pass, from 0.
    module : str
        Path of the module it ran in (``""``: the model itself).
    rule : str
        The rule's name.
    decided_by : str or None
        Path of the module whose entry placed it; None when the default applied.
    entry : str
        That entry's key (pattern, type name or predicate name), or ``"default"``.
    """

    call: int
    module: str
    rule: str
    decided_by: str | None
    entry: str


@dataclass(frozen=True)
class RuleTable:
    """The rule each ReLU call got, in call order: made by :func:`deconvlab.explain_rules`."""

    map: RuleMap
    rows: tuple[RuleChoice, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[RuleChoice]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> RuleChoice:
        return self.rows[index]

    def counts(self) -> dict[str, int]:
        """``{rule name: number of ReLU calls}``."""
        found: dict[str, int] = {}
        for row in self.rows:
            found[row.rule] = found.get(row.rule, 0) + 1
        return found

    def _cells(self) -> list[tuple[str, str, str, str]]:
        return [
            (
                str(row.call),
                row.module or "<model>",
                row.rule,
                "default" if row.decided_by is None else f"{row.decided_by or '<model>'} via {row.entry!r}",
            )
            for row in self.rows
        ]

    def __str__(self) -> str:
        header = ("call", "module", "rule", "decided by")
        cells = [header, *self._cells()]
        widths = [max(len(line[column]) for line in cells) for column in range(3)]
        lines = [
            "  ".join([*(text.ljust(width) for text, width in zip(line, widths)), line[3]]) for line in cells
        ]
        return f"rule map {self.map.name!r}, {len(self.rows)} ReLU calls\n" + "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(text)}</td>" for text in cells) + "</tr>"
            for cells in self._cells()
        )
        head = "".join(f"<th>{name}</th>" for name in ("call", "module", "rule", "decided by"))
        caption = html.escape(f"rule map {self.map.name!r}")
        return f"<table><caption>{caption}</caption><tr>{head}</tr>{rows}</table>"
