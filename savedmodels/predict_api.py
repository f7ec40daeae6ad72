"""TF Serving's Predict API, answered offline by a loaded SavedModel.

tensorflow_model_server turns a gRPC PredictRequest, or a REST body posted to
/v1/models/<name>:predict, into input tensors, runs the named signature and
turns its outputs back into a PredictResponse or JSON. This module does the
same conversions in Python (tensorflow_serving/servables/tensorflow/
predict_util.cc and tensorflow_serving/util/json_tensor.cc), so that an
export's warm-up requests and client payloads can be checked where no model
server runs. Request errors are InvalidArgumentError, the status the server
answers with. One deliberate difference: a text output (a string output whose
name does not end in _bytes) that is not UTF-8 is an error here, where the
server would send invalid JSON.
"""

import base64
import json

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from savedmodels.signatures import SERVING_DEFAULT


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


def _is_b64(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def _from_json(value, dtype):
    """A JSON value to nested Python values of `dtype`; {"b64": ...} to bytes."""
    if isinstance(value, list):
        return [_from_json(item, dtype) for item in value]
    if _is_b64(value) or isinstance(value, str):
        if dtype != tf.string:
            raise _invalid(f"JSON string or b64 value given for a {dtype.name} tensor")
        return base64.b64decode(value["b64"], validate=True) if _is_b64(value) else value.encode()
    if isinstance(value, dict):
        raise _invalid(f"JSON object {sorted(value)} is not a tensor value (only {{\"b64\": ...}})")
    return value


def _to_array(values, spec):
    if spec.dtype == tf.string:
        return np.array(values, dtype=object)
    return np.array(values, dtype=spec.dtype.as_numpy_dtype)


def _row_inputs(instances, specs):
    """The row ("instances") format: one list entry per example."""
    if not isinstance(instances, list) or not instances:
        raise _invalid("'instances' must be a non-empty JSON array")
    named = all(isinstance(item, dict) and not _is_b64(item) for item in instances)
    if len(specs) == 1 and not named:
        (alias, spec), = specs.items()
        return {alias: _to_array([_from_json(item, spec.dtype) for item in instances], spec)}
    arrays = {}
    for alias, spec in specs.items():
        column = []
        for item in instances:
            if not isinstance(item, dict) or set(item) != set(specs):
                raise _invalid(
                    f"each instance must be an object with the keys {sorted(specs)}; "
                    f"got {item if not isinstance(item, dict) else sorted(item)}"
                )
            column.append(_from_json(item[alias], spec.dtype))
        arrays[alias] = _to_array(column, spec)
    return arrays


def _columnar_inputs(inputs, specs):
    """The columnar ("inputs") format: one value per input, batch first."""
    if isinstance(inputs, dict) and not _is_b64(inputs):
        return {
            alias: _to_array(_from_json(value, specs[alias].dtype), specs[alias])
            if alias in specs else value
            for alias, value in inputs.items()
        }
    if len(specs) != 1:
        raise _invalid(f"'inputs' must be an object with the keys {sorted(specs)}")
    (alias, spec), = specs.items()
    return {alias: _to_array(_from_json(inputs, spec.dtype), spec)}


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


def predict_json(loaded, body, signature_name=None):
    """A REST :predict body (str, bytes or dict) -> the JSON answer (dict).

    `signature_name` in the body wins over the argument, as in the server.
    """
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError as error:
            raise _invalid(f"JSON Parse error: {error}") from None
    if not isinstance(body, dict):
        raise _invalid("the request body must be a JSON object")
    name, function = _signature(loaded, body.get("signature_name", signature_name))
    specs = _input_specs(function)
    if ("instances" in body) == ("inputs" in body):
        raise _invalid("JSON object must have exactly one of 'instances' or 'inputs'")
    if "instances" in body:
        outputs = _run(function, _row_inputs(body["instances"], specs))
        sizes = {alias: len(value) for alias, value in outputs.items()}
        batch = len(body["instances"])
        for alias, size in sizes.items():
            if size != batch:
                raise _invalid(
                    f"Tensor name: {alias} has inconsistent batch size: {size} "
                    f"expecting: {batch}"
                )
        columns = {alias: _to_json(alias, value) for alias, value in outputs.items()}
        if len(columns) == 1:
            (only,) = columns.values()
            return {"predictions": only}
        return {"predictions": [{a: c[i] for a, c in columns.items()} for i in range(batch)]}
    outputs = _run(function, _columnar_inputs(body["inputs"], specs))
    columns = {alias: _to_json(alias, value) for alias, value in outputs.items()}
    if len(columns) == 1:
        (only,) = columns.values()
        return {"outputs": only}
    return {"outputs": columns}
