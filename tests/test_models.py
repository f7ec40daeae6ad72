"""The zoo's architecture: shapes and depths of every family, the paper's
parameter counts, shortcuts A/B/C, variants, data formats and input sizes.

ImageNet nets are built at 64x64 where only shapes matter: building costs
the same at any size, and a forward pass is cheap there.
"""

import ast
import functools
import pathlib

import keras
import numpy as np
import pytest

import keras_resnet as kr
from benchmarks.zoo_table import PAPER_CIFAR_MPARAMS

SMALL = (64, 64, 3)
IMAGENET_STAGES = {  # depth -> blocks per stage, channels out of the last stage
    18: ((2, 2, 2, 2), 512),
    34: ((3, 4, 6, 3), 512),
    50: ((3, 4, 6, 3), 2048),
    101: ((3, 4, 23, 3), 2048),
    152: ((3, 8, 36, 3), 2048),
    200: ((3, 24, 36, 3), 2048),
}


def weighted_depth(model):
    """The paper's depth: convolutions and dense layers on the main path
    (projection shortcuts, named *_0_conv, do not count)."""
    return sum(
        isinstance(layer, keras.layers.Dense)
        or (isinstance(layer, keras.layers.Conv2D) and not layer.name.endswith("_0_conv"))
        for layer in model.layers
    )


def blocks_per_stage(model, stages):
    return tuple(
        sum(layer.name.startswith(f"conv{s}_block") and layer.name.endswith("_add")
            for layer in model.layers)
        for s in range(2, 2 + stages)
    )


def names(model):
    return {layer.name for layer in model.layers}


def shape_of(model, layer_name):
    return tuple(model.get_layer(layer_name).output.shape)


def run(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize("depth", sorted(IMAGENET_STAGES))
def test_imagenet_family(depth):
    stages, channels = IMAGENET_STAGES[depth]
    model = getattr(kr, f"ResNet{depth}")(input_shape=SMALL)
    assert model.name == f"resnet{depth}"
    assert model.output.shape == (None, 1000)
    assert weighted_depth(model) == depth
    assert blocks_per_stage(model, 4) == stages
    # Every stage after the first halves the resolution: 64 -> 16, 8, 4, 2.
    expansion = channels // 512
    for stage, (blocks, size, width) in enumerate(
        zip(stages, (16, 8, 4, 2), (64, 128, 256, 512)), start=2
    ):
        assert shape_of(model, f"conv{stage}_block{blocks}_out") == (
            None, size, size, width * expansion
        )


@pytest.fixture(scope="module")
def zoo():
    """`zoo(name)`: the default zoo model, built once per module; read-only."""
    return functools.lru_cache(maxsize=None)(kr.get_model)


@pytest.mark.parametrize("name", list(PAPER_CIFAR_MPARAMS))  # resnet20 ... resnet1202
def test_cifar_family_matches_paper(name, zoo):
    model = zoo(name)
    depth = int(name[len("resnet"):])
    n = (depth - 2) // 6
    assert model.output.shape == (None, 10)
    assert weighted_depth(model) == depth
    assert blocks_per_stage(model, 3) == (n, n, n)
    for stage, (size, width) in enumerate(zip((32, 16, 8), (16, 32, 64)), start=2):
        assert shape_of(model, f"conv{stage}_block{n}_out") == (None, size, size, width)
    # The paper prints 2-3 significant digits (1.7 M spans 1.65-1.75 M): 3%.
    assert model.count_params() / 1e6 == pytest.approx(PAPER_CIFAR_MPARAMS[name], rel=0.03)


@pytest.mark.parametrize("name", ["plain18", "plain34", "plain20", "plain32", "plain44",
                                  "plain56", "plain110"])
def test_plain_nets_are_the_resnets_without_shortcuts(name):
    depth = int(name[len("plain"):])
    kwargs = {} if kr.is_cifar_model(name) else {"input_shape": SMALL}
    plain = kr.get_model(name, **kwargs)
    assert not any(isinstance(layer, keras.layers.Add) for layer in plain.layers)
    assert weighted_depth(plain) == depth
    # Option A adds no parameters, so its ResNet has exactly the plain net's.
    resnet = kr.get_model(f"resnet{depth}", shortcut="A", **kwargs)
    assert plain.count_params() == resnet.count_params()
    assert plain.output.shape == resnet.output.shape


def test_list_models_and_get_model():
    models = kr.list_models()
    assert models[:3] == ["resnet18", "resnet20", "resnet32"]
    assert {"resnet1202", "resnet200", "plain110", "plain34"} <= set(models)
    assert kr.get_model("ResNet-20").name == "resnet20"
    assert kr.get_model("resnet_56", classes=100).output.shape == (None, 100)
    assert kr.is_cifar_model("resnet56") and not kr.is_cifar_model("resnet50")


def test_forward_pass_on_a_photo(photo):
    model = kr.ResNet20()
    probabilities = run(model, photo("astronaut", 32)[None])
    assert probabilities.shape == (1, 10)
    np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-5)


@pytest.mark.parametrize("pooling, shape", [(None, (None, 2, 2, 512)), ("avg", (None, 512)),
                                            ("max", (None, 512))])
def test_include_top_false_pooling(pooling, shape):
    model = kr.ResNet18(include_top=False, pooling=pooling, input_shape=SMALL)
    assert model.output.shape == shape


def test_input_tensor():
    inputs = keras.Input((40, 40, 3))
    model = kr.ResNet20(input_tensor=inputs)
    assert model.inputs[0] is inputs
    assert model.output.shape == (None, 10)


# --- shortcuts ---------------------------------------------------------------


def projection_params(c_in, c_out, bias):
    """A projection shortcut: 1x1 conv (+ bias) and BN (gamma, beta, mean, var)."""
    return c_in * c_out + (c_out if bias else 0) + 4 * c_out


def block_channels(depths, widths):
    """(in, out) channels of every basic block, in order."""
    channels, c_in = [], widths[0]
    for blocks, width in zip(depths, widths):
        for _ in range(blocks):
            channels.append((c_in, width))
            c_in = width
    return channels


@pytest.mark.parametrize(
    "name, kwargs, depths, widths, bias",
    [
        ("resnet20", {}, (3, 3, 3), (16, 32, 64), False),
        ("resnet34", {"input_shape": SMALL}, (3, 4, 6, 3), (64, 128, 256, 512), True),
    ],
)
def test_shortcut_parameter_cost(name, kwargs, depths, widths, bias):
    """Option A costs nothing; B projects where the shape changes (the first
    block of stages 2+), C everywhere. Each difference is exactly the
    projections' conv + BN."""
    count = {s: kr.get_model(name, shortcut=s, **kwargs).count_params() for s in "ABC"}
    plain = kr.get_model(name.replace("resnet", "plain"), **kwargs).count_params()
    channels = block_channels(depths, widths)
    assert count["A"] == plain
    assert count["B"] - count["A"] == sum(
        projection_params(c_in, c_out, bias) for c_in, c_out in channels if c_in != c_out
    )
    assert count["C"] - count["A"] == sum(
        projection_params(c_in, c_out, bias) for c_in, c_out in channels
    )
    assert count["C"] > count["B"] > count["A"]


@pytest.mark.parametrize("shortcut, pad, conv", [("A", 2, 0), ("B", 0, 2), ("C", 0, 9)])
def test_shortcut_layers(shortcut, pad, conv):
    model = kr.ResNet20(shortcut=shortcut)
    pads = [l for l in model.layers if isinstance(l, kr.ZeroPadShortcut)]
    convs = [l for l in model.layers if l.name.endswith("_0_conv")]
    assert (len(pads), len(convs)) == (pad, conv)
    if pads:
        assert [l.name for l in pads] == ["conv3_block1_0_pad", "conv4_block1_0_pad"]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_zero_pad_shortcut_subsamples_and_pads_with_zeros(data_format):
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype("float32")
    layer = kr.ZeroPadShortcut(8, strides=2, data_format=data_format)
    if data_format == "channels_first":
        y = keras.ops.convert_to_numpy(layer(x.transpose(0, 3, 1, 2))).transpose(0, 2, 3, 1)
        expected_shape = (2, 8, 3, 4)
    else:
        y = keras.ops.convert_to_numpy(layer(x))
        expected_shape = (2, 3, 4, 8)
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., 3:], 0.0)
    shape = (2, 5, 7, 3) if data_format == "channels_last" else (2, 3, 5, 7)
    assert layer.compute_output_shape(shape) == expected_shape
    assert kr.ZeroPadShortcut.from_config(layer.get_config()).get_config() == layer.get_config()


# --- variants ----------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet50_variants():
    return {
        v: kr.ResNet50(include_top=False, pooling="avg", input_shape=SMALL, variant=v)
        for v in kr.blocks.VARIANTS
    }


def strides(model, layer_name):
    return model.get_layer(layer_name).strides


def test_v1_strides_the_first_1x1_and_v1_5_the_3x3(resnet50_variants):
    v1, v15 = resnet50_variants["v1"], resnet50_variants["v1.5"]
    for stage in (3, 4, 5):
        block = f"conv{stage}_block1"
        assert strides(v1, block + "_1_conv") == (2, 2)
        assert strides(v1, block + "_2_conv") == (1, 1)
        assert strides(v15, block + "_1_conv") == (1, 1)
        assert strides(v15, block + "_2_conv") == (2, 2)
    assert [w.shape for w in v1.weights] == [w.shape for w in v15.weights]
    # Same weights, different arithmetic: the stride placement is real.
    v15.set_weights(v1.get_weights())
    x = np.random.default_rng(0).normal(size=(1,) + SMALL).astype("float32")
    assert np.abs(run(v1, x) - run(v15, x)).max() > 1e-3


def test_v2_is_pre_activation(resnet50_variants):
    v2 = resnet50_variants["v2"]
    layer_names = names(v2)
    assert {"conv2_block1_preact_bn", "conv5_block3_preact_relu", "post_bn",
            "post_relu"} <= layer_names
    # No BN after the stem, after a branch's last conv, or on a projection.
    assert not {"conv1_bn", "conv2_block1_3_bn", "conv3_block1_0_bn"} & layer_names
    assert "conv3_block1_0_conv" in layer_names
    assert strides(v2, "conv3_block1_2_conv") == (2, 2)
    assert not any(name.endswith("_out") for name in layer_names)


def test_d_has_a_deep_stem_and_average_pool_shortcuts(resnet50_variants):
    d = resnet50_variants["d"]
    layer_names = names(d)
    assert {"conv1_1_conv", "conv1_2_conv", "conv1_3_conv"} <= layer_names
    assert "conv1_conv" not in layer_names
    assert strides(d, "conv1_1_conv") == (2, 2)
    assert [d.get_layer(f"conv1_{i}_conv").filters for i in (1, 2, 3)] == [32, 32, 64]
    for stage in (3, 4, 5):
        pool = d.get_layer(f"conv{stage}_block1_0_pool")
        assert isinstance(pool, keras.layers.AveragePooling2D)
        assert strides(d, f"conv{stage}_block1_0_conv") == (1, 1)
        assert strides(d, f"conv{stage}_block1_2_conv") == (2, 2)
    assert "conv2_block1_0_pool" not in layer_names  # stride 1: nothing to pool


def test_all_variants_reach_the_same_output(resnet50_variants):
    for model in resnet50_variants.values():
        assert model.output.shape == (None, 2048)


def test_basic_block_v1_and_v1_5_are_the_same_net():
    v1 = kr.ResNet18(input_shape=SMALL)
    v15 = kr.ResNet18(input_shape=SMALL, variant="v1.5")
    assert [(l.name, l.output.shape) for l in v1.layers[1:]] == [
        (l.name, l.output.shape) for l in v15.layers[1:]
    ]


@pytest.mark.parametrize("name, last_bn, kwargs", [
    ("resnet20", "_2_bn", {}),
    ("resnet50", "_3_bn", {"include_top": False, "input_shape": SMALL, "shortcut": "C"}),
])
def test_zero_init_residual_zeros_the_last_bn_of_each_branch(name, last_bn, kwargs):
    model = kr.get_model(name, zero_init_residual=True, **kwargs)
    default = kr.get_model(name, **kwargs)
    zeroed = {l.name for l in model.layers
              if isinstance(l, keras.layers.BatchNormalization) and not np.any(l.gamma.numpy())}
    branch_ends = {l.name for l in model.layers if "_block" in l.name and l.name.endswith(last_bn)}
    assert zeroed == branch_ends
    assert len(zeroed) == sum(isinstance(l, keras.layers.Add) for l in model.layers)
    assert all(np.all(l.gamma.numpy() == 1) for l in default.layers
               if isinstance(l, keras.layers.BatchNormalization))


# --- data formats and input sizes --------------------------------------------


def test_channels_first_imagenet_shapes():
    # Shapes only: TensorFlow on CPU cannot run an NCHW max-pool.
    model = kr.ResNet50(data_format="channels_first", input_shape=(3, 64, 64),
                        include_top=False)
    assert model.output.shape == (None, 2048, 2, 2)
    assert shape_of(model, "conv3_block4_out") == (None, 512, 8, 8)
    d = kr.ResNet18(data_format="channels_first", input_shape=(3, 64, 64), variant="d",
                    shortcut="C")
    assert d.output.shape == (None, 1000)
    assert shape_of(d, "conv3_block1_0_pool") == (None, 64, 8, 8)


def test_channels_first_cifar_computes_what_channels_last_does(photo):
    last = kr.ResNet20()
    first = kr.ResNet20(data_format="channels_first", input_shape=(3, 32, 32))
    assert shape_of(first, "conv3_block1_0_pad") == (None, 32, 16, 16)
    first.set_weights(last.get_weights())  # conv kernels are HWIO either way
    x = photo("coffee", 32)[None] / 255.0
    np.testing.assert_allclose(
        run(first, x.transpose(0, 3, 1, 2)), run(last, x), atol=1e-6
    )


@pytest.mark.parametrize("input_shape, batch, expected", [
    ((32, 32, 1), (1, 32, 32, 1), (1, 1, 1, 512)),
    ((None, None, 5), (1, 45, 37, 5), (1, 2, 2, 512)),
    ((97, 33, 3), (1, 97, 33, 3), (1, 4, 2, 512)),
])
def test_imagenet_any_size_from_32_and_any_channels(input_shape, batch, expected):
    model = kr.ResNet18(include_top=False, input_shape=input_shape)
    x = np.random.default_rng(0).uniform(size=batch).astype("float32")
    assert run(model, x).shape == expected


def test_imagenet_classifier_on_a_non_square_input():
    model = kr.ResNet18(input_shape=(40, 72, 3), classes=7)
    assert run(model, np.zeros((2, 40, 72, 3), "float32")).shape == (2, 7)


# --- serialization -----------------------------------------------------------


@pytest.mark.parametrize("name, kwargs, size", [
    ("resnet20", {}, 32),  # option A: the custom ZeroPadShortcut layer
    ("resnet18", {"variant": "v2", "classes": 10, "input_shape": SMALL}, 64),
    ("resnet18", {"variant": "d", "classes": 10, "input_shape": SMALL}, 64),
])
def test_keras_file_round_trip(name, kwargs, size, tmp_path, photo):
    model = kr.get_model(name, **kwargs)
    x = photo("rocket", size)[None] / 255.0
    expected = run(model, x)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(run(loaded, x), expected, atol=1e-6)
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    # A whole-model file is also a weights file for a freshly built model.
    rebuilt = kr.get_model(name, weights=path, **kwargs)
    np.testing.assert_allclose(run(rebuilt, x), expected, atol=1e-6)


def test_the_deepest_net_round_trips(zoo, tmp_path):
    """Keras rebuilds a loaded graph recursively, a few frames per block:
    ResNet-1202 needs more than Python's default recursion limit."""
    model = zoo("resnet1202")
    path = str(tmp_path / "resnet1202.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert len(loaded.layers) == len(model.layers)
    for saved, restored in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy())


# --- preprocessing and weight decay ------------------------------------------


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_preprocess_input_is_keras_applications(photo, data_format):
    x = np.stack([photo("chelsea", 64), photo("coffee", 64)])
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2)
    expected = keras.applications.resnet.preprocess_input(x.copy(), data_format=data_format)
    np.testing.assert_array_equal(kr.preprocess_input(x.copy(), data_format=data_format),
                                  expected)
    as_uint8 = kr.preprocess_input(x.astype("uint8"), data_format=data_format)
    np.testing.assert_allclose(as_uint8, kr.preprocess_input(
        x.astype("uint8").astype("float32"), data_format=data_format))


def test_apply_weight_decay():
    # The paper's (Caffe's) weight decay covers every parameter by default.
    everything = kr.ResNet20()
    assert len(everything.trainable_weights) == 59
    assert kr.apply_weight_decay(everything, 1e-4) == 59 == len(everything.losses)
    penalty = sum(1e-4 / 2 * np.sum(np.square(w.numpy())) for w in everything.trainable_weights)
    total = keras.ops.convert_to_numpy(sum(everything.losses))
    assert float(total) == pytest.approx(penalty, rel=1e-5)

    model = kr.ResNet20()
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    assert len(kernels) == 19 + 1  # 19 convolutions (option A has none more), 1 dense
    assert kr.apply_weight_decay(model, 1e-4, include_bn_and_bias=False) == len(kernels)
    assert len(model.losses) == len(kernels)
    assert kr.apply_weight_decay(kr.ResNet20(), 0) == 0


# --- bad input ---------------------------------------------------------------


@pytest.mark.parametrize("build, words", [
    (lambda: kr.get_model("resnet19"), ["model='resnet19'", "resnet20", "plain110"]),
    (lambda: kr.cifar_resnet(21), ["depth=21", "6n+2", "1202"]),
    (lambda: kr.imagenet_resnet(42), ["depth=42", "18", "200"]),
    (lambda: kr.ResNet20(shortcut="D"), ["shortcut='D'", "'A', 'B', 'C'"]),
    (lambda: kr.ResNet50(variant="v3"), ["variant='v3'", "'v1', 'v1.5', 'v2', 'd'"]),
    (lambda: kr.ResNet50(input_shape=(31, 64, 3)), ["input_shape=(31, 64, 3)", ">= 32"]),
    (lambda: kr.ResNet50(data_format="channels_first", input_shape=(3, 64, 16)),
     ["input_shape=(3, 64, 16)", ">= 32"]),
    (lambda: kr.ResNet20(input_shape=(7, 7, 3)), ["input_shape=(7, 7, 3)", ">= 8"]),
    (lambda: kr.ResNet20(input_shape=(32, 32)), ["input_shape=(32, 32)", "3 entries"]),
    (lambda: kr.ResNet18(include_top=False, pooling="mean"), ["pooling='mean'", "'avg'"]),
    (lambda: kr.ResNet18(data_format="NHWC"), ["data_format='NHWC'", "'channels_first'"]),
    (lambda: kr.build_resnet((2, 2), block="resnext"), ["block='resnext'", "'bottleneck'"]),
    (lambda: kr.build_resnet((2, 2)), ["depths=(2, 2)", "4 stages"]),
    (lambda: kr.build_resnet((2, 0, 2, 2)), ["depths=(2, 0, 2, 2)", ">= 1 block"]),
    (lambda: kr.ResNet50(variant="v2", zero_init_residual=True),
     ["zero_init_residual=True", "variant='v2'"]),
    (lambda: kr.apply_weight_decay(None, -1e-4), ["weight_decay=-0.0001", ">= 0"]),
])
def test_bad_arguments_name_the_argument_and_what_is_allowed(build, words):
    with pytest.raises(ValueError) as error:
        build()
    for word in words:
        assert word in str(error.value)


# --- backend independence ----------------------------------------------------

# Everything `import keras_resnet` loads. preprocessing.py and model_dir.py
# (tf.data recipes, trainer files) are deliberately outside the package import.
BUILDER_MODULES = ("__init__", "arguments", "blocks", "flops", "imagenet_utils", "layers",
                   "regularization", "resnet", "weights", "zoo")


def test_builders_use_only_keras():
    """No TensorFlow in what `import keras_resnet` loads, so the builders
    also run under KERAS_BACKEND=jax or torch (.ci/run runs this file there)."""
    package = pathlib.Path(kr.__file__).parent
    for module in BUILDER_MODULES:
        path = package / f"{module}.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = [node.module or ""] if node.level == 0 else []
            else:
                imported = []
                assert not (isinstance(node, ast.Name) and node.id == "tf"), where
            for name in imported:
                assert name.split(".")[0] != "tensorflow", f"{where} imports {name}"
                assert "backend.tensorflow" not in name, f"{where} imports {name}"
                if name.startswith("keras_resnet."):
                    assert name.split(".")[1] in BUILDER_MODULES, f"{where} imports {name}"
