"""TF Serving's Predict API, answered offline by a loaded SavedModel.

tensorflow_model_server turns a gRPC PredictRequest, or a REST body posted to
/v1/models/<name>:predict, into input tensors, runs the named signature and
turns its outputs back into a PredictResponse or JSON. This module does the
same conversions in Python, following the server's own (predict_util.cc,
json_tensor.cc, http_server.cc), so that an export's warm-up requests and
client payloads can be checked where no model server runs, and a client
tested here works against the server. Request errors are the server's
statuses (InvalidArgumentError for a bad request); `rest_predict` answers
with its HTTP status and {"error": message} body. One deliberate
difference: a text output (a string output whose name does not end in
_bytes) that is not UTF-8 is an error here, where the server would send
invalid JSON.
"""

import base64
import json

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from keras_resnet.savedmodels.signatures import SERVING_DEFAULT


def _invalid(message):
    return tf.errors.InvalidArgumentError(None, None, message)


def _signature(loaded, signature_name):
    name = signature_name or SERVING_DEFAULT
    if name not in loaded.signatures:
        raise tf.errors.FailedPreconditionError(
            None, None, f'Serving signature key "{name}" not found.'
        )
    return name, loaded.signatures[name]


def _input_specs(function):
    return function.structured_input_signature[1]


def _run(function, arrays):
    """Checks `arrays` against the signature's inputs, then runs it."""
    specs = _input_specs(function)
    if set(arrays) != set(specs):
        raise _invalid(
            f"input size does not match signature: {len(arrays)}!={len(specs)} "
            f"len({sorted(arrays)}) != len({sorted(specs)}). "
            f"Sent extra: {sorted(set(arrays) - set(specs))}. "
            f"Missing but required: {sorted(set(specs) - set(arrays))}."
        )
    tensors = {}
    for alias, spec in specs.items():
        tensor = tf.convert_to_tensor(arrays[alias])
        if tensor.dtype != spec.dtype:
            raise _invalid(
                f"Expects arg {alias!r} to be {spec.dtype.name} but "
                f"{tensor.dtype.name} is provided"
            )
        if not spec.shape.is_compatible_with(tensor.shape):
            raise _invalid(
                f"input {alias!r} has shape {tensor.shape}; the signature takes {spec.shape}"
            )
        tensors[alias] = tensor
    return {alias: value.numpy() for alias, value in function(**tensors).items()}


def _filter_outputs(outputs, output_filter):
    if not output_filter:
        return outputs
    for alias in output_filter:
        if alias not in outputs:
            raise _invalid(
                f"output tensor alias not found in signature: {alias} Outputs "
                f"expected to be in the set {{{','.join(sorted(outputs))}}}."
            )
    return {alias: outputs[alias] for alias in output_filter}


def predict(loaded, request, version=None):
    """PredictRequest -> PredictResponse, as the gRPC Predict method answers."""
    name, function = _signature(loaded, request.model_spec.signature_name)
    arrays = {}
    for alias, proto in request.inputs.items():
        try:
            arrays[alias] = tf.make_ndarray(proto)
        except Exception as error:
            raise _invalid(f"tensor parsing error: {alias} ({error})") from None
    outputs = _filter_outputs(_run(function, arrays), list(request.output_filter))
    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.signature_name = name
    if version is not None:
        response.model_spec.version.value = int(version)
    for alias, value in outputs.items():
        response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return response


# --- REST: json_tensor.cc's conversions ----------------------------------------

# gRPC status codes as the server's REST front end answers them (http_server.cc).
HTTP_STATUS = {
    tf.errors.CANCELLED: 499, tf.errors.UNKNOWN: 500, tf.errors.INVALID_ARGUMENT: 400,
    tf.errors.DEADLINE_EXCEEDED: 504, tf.errors.NOT_FOUND: 404, tf.errors.ALREADY_EXISTS: 409,
    tf.errors.PERMISSION_DENIED: 403, tf.errors.RESOURCE_EXHAUSTED: 429,
    tf.errors.FAILED_PRECONDITION: 400, tf.errors.ABORTED: 409, tf.errors.OUT_OF_RANGE: 400,
    tf.errors.UNIMPLEMENTED: 501, tf.errors.INTERNAL: 500, tf.errors.UNAVAILABLE: 503,
    tf.errors.DATA_LOSS: 500, tf.errors.UNAUTHENTICATED: 401,
}
# The largest integer each float type holds exactly: larger ones are refused.
_EXACT_INT = {tf.float32: 2**24 - 1, tf.float64: 2**53 - 1}
_INT32_TYPES = (tf.int32, tf.int16, tf.int8, tf.uint8)


def _dump(value):
    return json.dumps(value, separators=(",", ":"))


def _is_b64(value):
    """{"b64": <string>} and nothing else, as the server recognizes it."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_object(value):
    return isinstance(value, dict) and not _is_b64(value)


def _type_error(value, dtype):
    kind = {type(None): "Null", bool: "True" if value else "False", dict: "Object",
            list: "Array", str: "String"}.get(type(value), "Number")
    return _invalid(f"JSON Value: {_dump(value)} Type: {kind} is not of expected type: "
                    f"{dtype.name}")


def _scalar(value, dtype):
    """One JSON leaf as a value of `dtype`, refused as the server refuses it."""
    if dtype == tf.string:
        if isinstance(value, str):
            return value.encode()
        if not _is_b64(value):
            if isinstance(value, dict):
                raise _invalid(f"JSON Value: {_dump(value)} not formatted correctly for "
                               "base64 data")
            raise _type_error(value, dtype)
        text = value["b64"]
        try:  # padding may be left out, as the server's decoder allows
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except ValueError:
            raise _invalid("Unable to base64 decode") from None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype in _EXACT_INT:
        if not number:
            raise _type_error(value, dtype)
        limit = _EXACT_INT[dtype]
        finite = isinstance(value, int) or np.isfinite(value)
        if finite and (abs(value) > limit if isinstance(value, int)
                       else abs(value) > np.finfo(dtype.as_numpy_dtype).max):
            raise _invalid(f"Cannot convert JSON value: {_dump(value)} to {dtype.name} "
                           "without loss of precision.")
        return value
    if dtype in _INT32_TYPES or dtype == tf.int64:
        bits = 63 if dtype == tf.int64 else 31
        if not (isinstance(value, int) and not isinstance(value, bool)
                and -(2**bits) <= value < 2**bits):
            raise _type_error(value, dtype)
        return value
    if dtype == tf.bool:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    raise tf.errors.UnimplementedError(
        None, None, f"Conversion of JSON Value: {_dump(value)} to type: {dtype.name}")


def _tensor(value, dtype):
    """A JSON value to a dense array: its shape is read from the first
    element at each level, and every list must match it."""
    shape, probe = [], value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    flat = []

    def fill(item, level):
        if not isinstance(item, list):
            if level != len(shape):
                raise _invalid(f"JSON Value: {_dump(item)} found at incorrect level: "
                               f"{level + 1} in the JSON DOM. Expected at level: {len(shape)}")
            flat.append(_scalar(item, dtype))
            return
        if level >= len(shape):
            raise _invalid(f"Encountered list at unexpected level: {level} expected < "
                           f"{len(shape)}")
        if len(item) != shape[level]:
            raise _invalid(f"Encountered list at unexpected size: {len(item)} at level: "
                           f"{level} expected size: {shape[level]}")
        for element in item:
            fill(element, level + 1)

    fill(value, 0)
    numpy_dtype = object if dtype == tf.string else dtype.as_numpy_dtype
    return np.array(flat, dtype=numpy_dtype).reshape(shape)


def _row_inputs(instances, specs):
    """The row ("instances") format: one list entry per example, batched."""
    if not _is_object(instances[0]) and len(specs) > 1:
        raise _invalid("instances is a plain list, but expecting list of objects as "
                       "multiple input tensors required as per tensorinfo_map")
    objects = _is_object(instances[0])
    rows = {alias: [] for alias in specs}
    for index, item in enumerate(instances):
        if objects != _is_object(item):
            expected, got = ("object", "list") if objects else ("value/list", "object")
            raise _invalid(f"Expecting {expected} but got {got} at item {index} of input list")
        named = item if objects else {next(iter(specs)): item}
        for alias, value in named.items():
            where = f"Failed to process element: {index}" + (f" key: {alias}" if objects else "")
            try:
                if alias not in specs:
                    raise _invalid(f"JSON object: does not have named input: {alias}")
                array = _tensor(value, specs[alias].dtype)
                if rows[alias] and array.shape != rows[alias][0].shape:
                    first = rows[alias][0]
                    raise _invalid(
                        f"Expecting tensor size: {first.size} but got: {array.size}"
                        if array.size != first.size else
                        f"Expecting shape {list(first.shape)} but got: {list(array.shape)}")
            except tf.errors.InvalidArgumentError as error:
                raise _invalid(f"{where} of 'instances' list. Error: {error.message}") from None
            rows[alias].append(array)
        if objects and set(item) != set(specs):
            raise _invalid(f"Failed to process element: {index} of 'instances' list. JSON "
                           f"object: {_dump(item)} keys must be equal to: "
                           f"{','.join(sorted(specs))}")
    return {alias: np.stack(arrays) for alias, arrays in rows.items()}


def _columnar_inputs(inputs, specs):
    """The columnar ("inputs") format: one value per input, batch first.
    Keys that are not inputs of the signature are ignored, as the server does."""
    if not _is_object(inputs):
        if len(specs) > 1:
            raise _invalid("inputs is a plain value/list, but expecting an object as multiple "
                           "input tensors required as per tensorinfo_map")
        (alias, spec), = specs.items()
        return {alias: _tensor(inputs, spec.dtype)}
    for alias in specs:
        if alias not in inputs:
            raise _invalid(f"Missing named input: {alias} in 'inputs' object.")
    return {alias: _tensor(inputs[alias], spec.dtype) for alias, spec in specs.items()}


def _to_json(alias, array):
    """Strings as UTF-8 text, or {"b64": ...} where the alias ends in _bytes."""
    if array.dtype != object:
        return array.tolist()
    if alias.endswith("_bytes"):
        encode = np.vectorize(lambda b: {"b64": base64.b64encode(b).decode("ascii")}, otypes=[object])
    else:
        def encode(value):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise _invalid(
                    f"output {alias!r} is not UTF-8 text; outputs named *_bytes "
                    "are sent as base64"
                ) from None

        encode = np.vectorize(encode, otypes=[object])
    return encode(array).tolist() if array.size else array.tolist()


def _parse_body(body):
    if isinstance(body, (str, bytes)):
        if not body:
            raise _invalid("JSON Parse error: The document is empty")
        try:
            body = json.loads(body)
        except ValueError as error:
            raise _invalid(f"JSON Parse error: {error}") from None
    if not isinstance(body, dict):
        raise _invalid(f"JSON Value: {_dump(body)} Is not object")
    if "signature_name" in body and not isinstance(body["signature_name"], str):
        raise _invalid(f"JSON Value: {_dump(body)} not formatted correctly. "
                       "'signature_name' key must be a string value.")
    return body


def predict_json(loaded, body, signature_name=None):
    """A REST :predict body (str, bytes or dict) -> the JSON answer (dict).

    The body becomes a PredictRequest as the server builds one, and is
    answered by `predict`. `signature_name` in the body wins over the argument.
    """
    body = _parse_body(body)
    name, function = _signature(loaded, body.get("signature_name", signature_name))
    specs = _input_specs(function)
    if "instances" in body and "inputs" in body:
        raise _invalid(f"JSON Value: {_dump(body)} Not formatted correctly expecting only "
                       "one of 'inputs' or 'instances' keys to exist ")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise _invalid(f"JSON Value: {_dump(body)} Excepting 'instances' to be an list/array")
        if not instances:
            raise _invalid(f"JSON Value: {_dump(body)} No values in 'instances' array")
        arrays, key = _row_inputs(instances, specs), "predictions"
    elif "inputs" in body:
        arrays, key = _columnar_inputs(body["inputs"], specs), "outputs"
    else:
        raise _invalid("Missing 'inputs' or 'instances' key")
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = name
    for alias, array in arrays.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(array, specs[alias].dtype))
    response = predict(loaded, request)
    outputs = {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}
    columns = {alias: _to_json(alias, value) for alias, value in outputs.items()}
    if key == "outputs":
        return {key: next(iter(columns.values())) if len(columns) == 1 else columns}
    batch = None
    for alias, value in outputs.items():
        if value.ndim == 0:
            raise _invalid(f"Tensor name: {alias} has no shape information ")
        if batch is not None and len(value) != batch:
            raise _invalid(f"Tensor name: {alias} has inconsistent batch size: {len(value)} "
                           f"expecting: {batch}")
        batch = len(value)
    if len(columns) == 1:
        return {key: next(iter(columns.values()))}
    return {key: [{a: c[i] for a, c in columns.items()} for i in range(batch)]}


def rest_predict(loaded, body, signature_name=None):
    """(HTTP status, JSON answer) of POST /v1/models/<name>:predict: 200 and
    the outputs, or the error's status (400 for InvalidArgument) and
    {"error": message}, as the server answers."""
    try:
        return 200, predict_json(loaded, body, signature_name)
    except tf.errors.OpError as error:
        return HTTP_STATUS.get(error.error_code, 500), {"error": error.message}
