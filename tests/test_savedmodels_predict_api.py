"""The offline Predict API follows tensorflow_model_server's conversions.

A tiny SavedModel with a one-input and a two-input signature pins the
request formats (gRPC tensors, REST row and columnar JSON, b64 strings) and
the errors; tests/test_savedmodels.py sends real images to real exports.
"""

import base64
import json
import re

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from keras_resnet.savedmodels import predict_api


class Tiny(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def total(self, x):
        return {"sum": tf.reduce_sum(x, axis=1)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.float32, name="scale"),
            tf.TensorSpec([None], tf.string, name="words"),
        ]
    )
    def pair(self, scale, words):
        return {"scaled": scale * 2, "words_bytes": words, "upper": tf.strings.upper(words)}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tiny"))
    module = Tiny()
    tf.saved_model.save(
        module, path, signatures={"serving_default": module.total, "pair": module.pair}
    )
    return tf.saved_model.load(path)


def b64(data):
    return {"b64": base64.b64encode(data).decode("ascii")}


def test_rest_row_format_with_one_input_and_one_output(loaded):
    answer = predict_api.predict_json(loaded, '{"instances": [[1, 2], [3, 4.5]]}')
    assert answer == {"predictions": [3.0, 7.5]}
    named = predict_api.predict_json(loaded, {"instances": [{"x": [1, 2]}]})
    assert named == {"predictions": [3.0]}


def test_rest_row_format_with_named_inputs_b64_and_text_outputs(loaded):
    body = {
        "signature_name": "pair",
        "instances": [{"scale": 1.5, "words": b64(b"raw")}, {"scale": 2, "words": "ok"}],
    }
    answer = json.loads(json.dumps(predict_api.predict_json(loaded, json.dumps(body))))
    assert answer == {
        "predictions": [
            {"scaled": 3.0, "words_bytes": b64(b"raw"), "upper": "RAW"},
            {"scaled": 4.0, "words_bytes": b64(b"ok"), "upper": "OK"},
        ]
    }


def test_rest_binary_text_outputs_are_an_error_not_mojibake(loaded):
    body = {"signature_name": "pair", "instances": [{"scale": 1, "words": b64(b"\xff")}]}
    with pytest.raises(tf.errors.InvalidArgumentError, match="'upper' is not UTF-8"):
        predict_api.predict_json(loaded, body)


def test_rest_columnar_format(loaded):
    body = {"signature_name": "pair", "inputs": {"scale": [1, 2], "words": ["a", b64(b"b")]}}
    answer = predict_api.predict_json(loaded, body)
    assert answer == {
        "outputs": {"scaled": [2.0, 4.0], "words_bytes": [b64(b"a"), b64(b"b")], "upper": ["A", "B"]}
    }
    assert predict_api.predict_json(loaded, {"inputs": [[1, 1]]}) == {"outputs": [2.0]}
    assert predict_api.predict_json(loaded, {"inputs": {"x": [[1, 1]]}}) == {"outputs": [2.0]}


def test_rest_columnar_inputs_ignore_keys_the_signature_lacks(loaded):
    assert predict_api.predict_json(loaded, {"inputs": {"x": [[1, 2]], "y": [1]}}) == \
        {"outputs": [3.0]}


PAIR = {"signature_name": "pair"}


@pytest.mark.parametrize(
    "body, message",
    [
        ({"instances": [[1, 2]], "inputs": [[1, 2]]}, "only one of 'inputs' or 'instances'"),
        ({}, "Missing 'inputs' or 'instances' key"),
        ({"instances": []}, "No values in 'instances' array"),
        ({"instances": {"x": [1, 2]}}, "'instances' to be an list/array"),
        ("{not json", "JSON Parse error"),
        ("", "The document is empty"),
        ("[1]", "Is not object"),
        ({"signature_name": None, "instances": [[1, 2]]},
         "'signature_name' key must be a string value"),
        ({"instances": ["text"]}, 'JSON Value: "text" Type: String is not of expected type: float'),
        ({"instances": [[1, None]]}, "JSON Value: null Type: Null is not of expected type: float"),
        ({"instances": [[1, True]]}, "JSON Value: true Type: True is not of expected type: float"),
        ({"inputs": [[1, False]]}, "Type: False is not of expected type: float"),
        ({"instances": [[2**24 + 1, 0]]}, "to float32 without loss of precision"),
        ({**PAIR, "instances": [{"scale": 1, "words": {"b64": 5}}]},
         "Failed to process element: 0 key: words .*not formatted correctly for base64"),
        ({**PAIR, "inputs": {"scale": [1], "words": [{"b64": "a!b?"}]}}, "Unable to base64 decode"),
        ({**PAIR, "inputs": {"scale": [1], "words": [{"b64": "YQ", "x": 1}]}},
         "not formatted correctly for base64 data"),
        ({"instances": [[1, 2], [3]]},
         "Failed to process element: 1 of 'instances' list. Error: Expecting tensor size: 2 "
         "but got: 1"),
        ({"instances": [[[1, 2], [3]]]}, "Encountered list at unexpected size: 1 at level: 1"),
        ({"inputs": [[1, 2], 3]}, "JSON Value: 3 found at incorrect level: 2"),
        ({**PAIR, "instances": [{"scale": 1}]}, "keys must be equal to: scale,words"),
        ({**PAIR, "instances": [{"scale": 1, "words": "a", "y": 2}]},
         "does not have named input: y"),
        ({**PAIR, "instances": [1]}, "instances is a plain list, but expecting list of objects"),
        ({"instances": [[1, 2], {"x": [1, 2]}]}, "Expecting value/list but got object at item 1"),
        ({**PAIR, "inputs": {"scale": [1]}}, "Missing named input: words in 'inputs' object"),
        ({"instances": [[1, 2, 3]]}, "has shape \\(1, 3\\); the signature takes \\(None, 2\\)"),
    ],
)
def test_rest_errors_are_invalid_argument_with_a_400_error_body(loaded, body, message):
    text = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        predict_api.predict_json(loaded, text)
    status, answer = predict_api.rest_predict(loaded, text)
    assert status == 400 and list(answer) == ["error"]
    assert re.search(message, answer["error"])


def test_rest_answers_200_with_outputs(loaded):
    assert predict_api.rest_predict(loaded, '{"instances": [[1, 2]]}') == \
        (200, {"predictions": [3.0]})


def test_unknown_signature_is_failed_precondition(loaded):
    with pytest.raises(tf.errors.FailedPreconditionError, match='"nope" not found'):
        predict_api.predict_json(loaded, {"signature_name": "nope", "instances": [[1, 2]]})


def grpc_request(signature_name, **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.model_spec.signature_name = signature_name
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    # What arrives is what a client serialized.
    return predict_pb2.PredictRequest.FromString(request.SerializeToString())


def test_grpc_predict_and_output_filter(loaded):
    request = grpc_request("pair", scale=np.float32([1, 2]), words=[b"a", b"b"])
    request.output_filter.append("upper")
    response = predict_api.predict(loaded, request, version=3)
    assert list(response.outputs) == ["upper"]
    assert tf.make_ndarray(response.outputs["upper"]).tolist() == [b"A", b"B"]
    assert response.model_spec.name == "tiny"
    assert response.model_spec.signature_name == "pair"
    assert response.model_spec.version.value == 3
    default = predict_api.predict(loaded, grpc_request("", x=np.float32([[1, 2]])))
    assert default.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(default.outputs["sum"]).tolist() == [3.0]


def test_grpc_errors_are_invalid_argument(loaded):
    with pytest.raises(tf.errors.InvalidArgumentError, match="Expects arg 'x' to be float32 but float64"):
        predict_api.predict(loaded, grpc_request("", x=np.float64([[1, 2]])))
    request = grpc_request("", x=np.float32([[1, 2]]))
    request.output_filter.append("nope")
    with pytest.raises(tf.errors.InvalidArgumentError, match="output tensor alias not found"):
        predict_api.predict(loaded, request)
