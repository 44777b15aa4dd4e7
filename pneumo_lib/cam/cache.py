"""Per-model memo of traced graphs, keyed by the model object itself (never by ``id()``).

A :class:`weakref.WeakKeyDictionary` maps each model to its own small LRU: an entry goes
away with its model, so a new model that happens to get a dead model's ``id()`` can never
be handed the dead model's graphs. The values (traced graphs) reuse the model's layers but
hold no reference to the model object, so they do not keep it alive.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any, Callable

#: Entries kept per model (target layers x input shapes x kinds).
ENTRIES_PER_MODEL = 8

_ENTRIES: "weakref.WeakKeyDictionary[Any, OrderedDict]" = weakref.WeakKeyDictionary()
#: Serialises look-ups and builds: tracing a Keras model is not safe from two threads at once,
#: and two threads asking for the same graph must get the same one.
_LOCK = threading.RLock()


def cached(model: Any, key: tuple, build: Callable[[], Any]) -> Any:
    """``build()`` once per ``(model, key)``; later calls return the same object.

    Thread-safe: concurrent callers wait for one build and share its result.
    """
    with _LOCK:
        entries = _ENTRIES.get(model)
        if entries is None:
            entries = _ENTRIES[model] = OrderedDict()
        if key in entries:
            entries.move_to_end(key)
            return entries[key]
        value = entries[key] = build()
        while len(entries) > ENTRIES_PER_MODEL:
            entries.popitem(last=False)
        return value


def cached_models() -> int:
    """How many (live) models have cached graphs."""
    with _LOCK:
        return len(_ENTRIES)


def clear_cache() -> None:
    """Forget every traced graph (the next CAM call on a model traces it again, eagerly first)."""
    with _LOCK:
        _ENTRIES.clear()
