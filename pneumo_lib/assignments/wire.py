"""What crosses the sandbox wall: values as data (JSON lines), never pickles or code.

The grader (trusted) and the worker in the sandbox (untrusted: it runs student code) talk
over two pipes, one JSON object per line. Values are encoded by :func:`encode` into tagged
JSON and rebuilt by :func:`decode`, which only ever makes plain values: ``None``, ``bool``,
``int``, ``float``, ``str``, lists, tuples, dicts, numpy arrays and scalars of numeric, bool
or string dtypes (rebuilt from raw bytes, never unpickled), :class:`~pneumo_lib.data.ImageRecord`,
the placeholder ``____``, Keras models (a ``.keras`` file, loaded in safe mode, so no code
travels with it), a reference to a callable of the student's namespace (:class:`Callable`:
the grader calls it *in the sandbox*) and, for anything else, an :class:`Opaque` stand-in
that only carries the type name and a short repr. Subclasses (an ``int`` whose ``__eq__``
always says yes) arrive as the plain type, so nothing the student defines runs in the grader.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import tempfile
from typing import Any

import numpy as np

#: Longest message line accepted from the sandbox (bytes).
MAX_LINE = 64 << 20
#: Deepest nesting of lists/dicts accepted.
MAX_DEPTH = 40
_KINDS = "biufU"


class WireError(ValueError):
    """A message could not be encoded or decoded (the message says which value)."""


class Opaque:
    """Stand-in for a value that cannot cross the wall (its type name and a short repr)."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other) -> bool:
        return False

    __hash__ = object.__hash__


class Callable:
    """A function of the student's namespace, by name (path of names from the namespace)."""

    def __init__(self, ref: str, name: str):
        self.ref, self.name = ref, name


def _is_keras_model(value) -> bool:
    mod = type(value).__module__ or ""
    if not (mod.startswith("keras") or mod.startswith("tf_keras") or "keras" in mod):
        return False
    from pneumo_lib._tf import keras

    return isinstance(value, keras.Model)


def _model_bytes(model) -> bytes:
    with tempfile.TemporaryDirectory(prefix="pneumo-wire-") as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        with open(path, "rb") as fh:
            return fh.read()


def _load_model(raw: bytes):
    from pneumo_lib._tf import keras

    with tempfile.TemporaryDirectory(prefix="pneumo-wire-") as tmp:
        path = os.path.join(tmp, "model.keras")
        with open(path, "wb") as fh:
            fh.write(raw)
        return keras.saving.load_model(path, safe_mode=True, compile=False)


def encode(value: Any, *, callables: dict | None = None, ref: str = "", depth: int = 0) -> Any:
    """Tagged JSON for ``value``; callables are registered in ``callables`` (ref -> function)."""
    from pneumo_lib.assignments.core import Blank
    from pneumo_lib.data import ImageRecord

    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if value is None or type(value) in (bool, str):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float, str)) and not isinstance(value, (np.generic,)):
        base = bool if isinstance(value, bool) else int if isinstance(value, int) else float if isinstance(value, float) else str
        plain = base(value) if base is not str else str.__str__(value)
        if base is float and not np.isfinite(plain):
            return {"$t": "float", "v": repr(plain)}
        return plain
    if isinstance(value, Blank):
        return {"$t": "blank"}
    if value is Ellipsis:
        return {"$t": "ellipsis"}
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        arr = np.asarray(value)
        if arr.dtype.kind not in _KINDS:
            return {"$t": "opaque", "type": f"ndarray of {arr.dtype}", "repr": f"<array of dtype {arr.dtype}>"}
        tag = "np" if isinstance(value, np.generic) else "nd"
        return {"$t": tag, "dtype": arr.dtype.str, "shape": list(arr.shape),
                "b64": base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")}
    if isinstance(value, ImageRecord):
        return {"$t": "record", "v": [[f.name, encode(getattr(value, f.name), depth=depth + 1)]
                                       for f in dataclasses.fields(ImageRecord)]}
    if isinstance(value, (list, tuple)):
        tag = "tuple" if isinstance(value, tuple) else "list"
        return {"$t": tag, "v": [encode(v, callables=callables, ref=f"{ref}[{i}]", depth=depth + 1)
                                 for i, v in enumerate(value)]}
    if isinstance(value, dict):
        return {"$t": "dict", "v": [[encode(k, depth=depth + 1),
                                     encode(v, callables=callables, ref=f"{ref}[{i}]", depth=depth + 1)]
                                    for i, (k, v) in enumerate(value.items())]}
    if _is_keras_model(value):
        return {"$t": "keras", "b64": base64.b64encode(_model_bytes(value)).decode("ascii")}
    if callable(value) and callables is not None and ref:
        callables[ref] = value
        return {"$t": "callable", "ref": ref, "name": str(getattr(value, "__name__", ref))[:80]}
    try:
        text = repr(value)[:200]
    except Exception:
        text = f"<{type(value).__name__}>"
    return {"$t": "opaque", "type": type(value).__name__[:80], "repr": text}


def decode(obj: Any, *, models: bool = True, depth: int = 0) -> Any:
    """Rebuild a value from :func:`encode`'s JSON (plain types only; see the module docstring)."""
    from pneumo_lib.assignments.core import ____
    from pneumo_lib.data import ImageRecord

    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if type(obj) is not dict or "$t" not in obj:
        raise WireError(f"untagged value of type {type(obj).__name__}")
    tag = obj["$t"]
    if tag == "float":
        return float(obj["v"])
    if tag == "blank":
        return ____
    if tag == "ellipsis":
        return Ellipsis
    if tag in ("nd", "np"):
        dtype = np.dtype(str(obj["dtype"]))
        if dtype.kind not in _KINDS:
            raise WireError(f"array of dtype {dtype} refused")
        shape = tuple(int(s) for s in obj["shape"])
        raw = base64.b64decode(obj["b64"])
        arr = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        return arr[()] if tag == "np" else arr
    if tag == "record":
        known = {f.name: f.type for f in dataclasses.fields(ImageRecord)}
        fields = {str(k): decode(v, models=False, depth=depth + 1) for k, v in obj["v"] if str(k) in known}
        if set(fields) != set(known) or any(type(v) not in (str, int, float, bool, type(None)) for v in fields.values()):
            raise WireError("a record with other fields than ImageRecord's")
        return ImageRecord(**fields)
    if tag in ("list", "tuple"):
        items = [decode(v, models=models, depth=depth + 1) for v in obj["v"]]
        return tuple(items) if tag == "tuple" else items
    if tag == "dict":
        out = {}
        for k, v in obj["v"]:
            key = decode(k, models=False, depth=depth + 1)
            try:
                hash(key)
            except TypeError:
                raise WireError("unhashable dict key") from None
            out[key] = decode(v, models=models, depth=depth + 1)
        return out
    if tag == "keras":
        if not models:
            raise WireError("a model where none is allowed")
        try:
            return _load_model(base64.b64decode(obj["b64"]))
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            return Opaque("keras.Model", f"<a Keras model that does not load in safe mode: {first}>")
    if tag == "callable":
        return Callable(str(obj["ref"]), str(obj.get("name", "")))
    if tag == "opaque":
        return Opaque(str(obj.get("type", "?"))[:80], str(obj.get("repr", ""))[:200])
    raise WireError(f"unknown tag {tag!r}")


def dumps(message: dict) -> bytes:
    """One message as a JSON line."""
    return (json.dumps(message, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")


def loads(line: bytes) -> dict:
    """Parse one message line (``WireError`` for anything that is not a JSON object)."""
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError) as err:
        raise WireError(f"not a JSON message ({type(err).__name__})") from None
    if type(msg) is not dict:
        raise WireError("a message must be a JSON object")
    return msg
