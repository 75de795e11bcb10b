"""TF Serving's REST JSON <-> numpy arrays for one signature.

``serving.server`` calls :func:`decode_request` on a ``:predict`` body and
:func:`encode_response` on the signature's outputs. The rules are TF Serving's
(https://www.tensorflow.org/tfx/serving/api_rest): ``instances`` is the row format (one
entry per example; a bare value when the signature has one input, else an object keyed by
input name), ``inputs`` is the columnar format; ``{"b64": ...}`` carries bytes; string
outputs come back as text unless the output's name ends in ``_bytes`` (or the bytes are
not UTF-8), then as ``{"b64": ...}``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from breastdx_core import errors

B64_KEY = "b64"
BYTES_SUFFIX = "_bytes"
ROW_KEY = "instances"
COLUMN_KEY = "inputs"


class RequestError(errors.UserError):
    """A malformed predict request (TF Serving answers INVALID_ARGUMENT, HTTP 400)."""


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {B64_KEY}


def _to_bytes(value: Any, where: str) -> Any:
    if isinstance(value, list):
        return [_to_bytes(item, where) for item in value]
    if _is_b64(value):
        if not isinstance(value[B64_KEY], str):
            raise RequestError(f'{where}: "b64" must hold a base64 string')
        try:
            return base64.b64decode(value[B64_KEY], validate=True)
        except (binascii.Error, ValueError) as err:
            raise RequestError(f"{where}: invalid base64 ({err})") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise RequestError(f'{where}: expected a string or {{"b64": ...}}, got {type(value).__name__}')


def to_array(value: Any, spec, where: str) -> np.ndarray:
    """One input's JSON value as an array of the spec's dtype, its shape checked.

    Args:
        value: the decoded JSON (nested lists, strings, numbers, ``{"b64": ...}``).
        spec: the input's ``tf.TensorSpec``.
        where: the input's name, for messages.

    Raises:
        RequestError: on a wrong type or shape.
    """
    if spec.dtype.name == "string":
        converted = _to_bytes(value, where)
        try:
            array = np.array(converted, dtype=object)
        except ValueError as err:
            raise RequestError(f"{where}: ragged list ({err})") from None
    else:
        try:
            array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
        except (TypeError, ValueError) as err:
            raise RequestError(f"{where}: expected {spec.dtype.name} values ({err})") from None
    if not spec.shape.is_compatible_with(array.shape):
        raise RequestError(
            f"{where}: expected shape {spec.shape.as_list()} (None = any), got {list(array.shape)}"
        )
    return array


def decode_request(body: Any, input_specs: dict[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
    """A ``:predict`` body as named input arrays.

    Args:
        body: the parsed JSON object.
        input_specs: input name -> ``tf.TensorSpec`` of the signature.

    Returns:
        (inputs, row_format): arrays by input name, and whether the body used ``instances``.

    Raises:
        RequestError: naming what was expected and what came.
    """
    if not isinstance(body, dict):
        raise RequestError("JSON Value: the request body must be a JSON object")
    if (ROW_KEY in body) == (COLUMN_KEY in body):
        raise RequestError(
            'JSON Value: exactly one of "instances" (row format) or "inputs" '
            "(columnar format) is expected"
        )
    names = sorted(input_specs)
    if ROW_KEY in body:
        rows = body[ROW_KEY]
        if not isinstance(rows, list) or not rows:
            raise RequestError('"instances" must be a non-empty list')
        named = all(isinstance(row, dict) and not _is_b64(row) for row in rows)
        if not named:
            if len(names) != 1:
                raise RequestError(
                    f"the signature has inputs {names}: each instance must be an object "
                    "keyed by input name"
                )
            return {names[0]: to_array(rows, input_specs[names[0]], names[0])}, True
        columns = {}
        for name in names:
            if any(name not in row for row in rows):
                raise RequestError(f'every instance needs input "{name}"; inputs: {names}')
            columns[name] = to_array([row[name] for row in rows], input_specs[name], name)
        unknown = {key for row in rows for key in row} - set(names)
        if unknown:
            raise RequestError(f"unknown inputs {sorted(unknown)}; the signature has {names}")
        return columns, True
    inputs = body[COLUMN_KEY]
    if isinstance(inputs, dict) and not _is_b64(inputs):
        unknown = set(inputs) - set(names)
        missing = set(names) - set(inputs)
        if unknown or missing:
            raise RequestError(
                f'"inputs" keys {sorted(inputs)} do not match the signature\'s inputs {names}'
            )
        return {name: to_array(inputs[name], input_specs[name], name) for name in names}, False
    if len(names) != 1:
        raise RequestError(
            f'the signature has inputs {names}: "inputs" must be an object keyed by them'
        )
    return {names[0]: to_array(inputs, input_specs[names[0]], names[0])}, False


def _jsonable(value: Any, as_b64: bool) -> Any:
    if isinstance(value, list):
        return [_jsonable(item, as_b64) for item in value]
    if isinstance(value, bytes):
        if not as_b64:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {B64_KEY: base64.b64encode(value).decode("ascii")}
    return value


def encode_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """Signature outputs as TF Serving's ``predictions`` (rows) or ``outputs`` (columns)."""
    columns = {
        name: _jsonable(np.asarray(array).tolist(), name.endswith(BYTES_SUFFIX))
        for name, array in outputs.items()
    }
    if row_format:
        count = len(next(iter(columns.values()))) if columns else 0
        if len(columns) == 1:
            return {"predictions": next(iter(columns.values()))}
        return {
            "predictions": [
                {name: column[i] for name, column in columns.items()} for i in range(count)
            ]
        }
    if len(columns) == 1:
        return {"outputs": next(iter(columns.values()))}
    return {"outputs": columns}
