"""count_flops: exact on small nets, and the paper's Table 1 on the zoo."""

import pathlib

import keras
import pytest

import keras_resnet as kr
from benchmarks import zoo_table
from benchmarks.zoo_table import PAPER_GFLOPS


def count_gflops(model):
    return kr.count_flops(model) / 1e9


# The paper's Table 1 (and plain nets, section 3.3), within 5%.
@pytest.mark.parametrize("name", list(PAPER_GFLOPS))
def test_zoo_matches_the_paper(name):
    model = kr.get_model(name)
    assert count_gflops(model) == pytest.approx(PAPER_GFLOPS[name], rel=0.05)


def tiny(data_format="channels_last"):
    shape = (8, 8, 3) if data_format == "channels_last" else (3, 8, 8)
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, padding="same", data_format=data_format)(inputs)
    x = keras.layers.BatchNormalization(axis=-1 if data_format == "channels_last" else 1)(x)
    x = keras.layers.Conv2D(6, 1, strides=2, data_format=data_format)(x)
    x = keras.layers.GlobalAveragePooling2D(data_format=data_format)(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x))


# 8*8 outputs * 3*3*3 * 4 + 4*4 outputs * 1*1*4 * 6 + 6 * 5
TINY_FLOPS = 8 * 8 * 27 * 4 + 4 * 4 * 4 * 6 + 6 * 5


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_counts_convolutions_and_dense_layers_exactly(data_format):
    assert kr.count_flops(tiny(data_format)) == TINY_FLOPS


def test_counts_nested_models():
    inputs = keras.Input((8, 8, 3))
    outer = keras.Model(inputs, keras.layers.Dense(2)(tiny()(inputs)))
    assert kr.count_flops(outer) == TINY_FLOPS + 5 * 2


def test_scales_with_the_input_area():
    small = kr.count_flops(kr.ResNet20(include_top=False))
    large = kr.count_flops(kr.ResNet20(include_top=False, input_shape=(64, 64, 3)))
    assert large == 4 * small


def test_needs_a_fixed_input_size():
    model = kr.ResNet20(include_top=False, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="count_flops needs a fixed input size; layer 'conv1_conv'"):
        kr.count_flops(model)


@pytest.mark.parametrize("name", ["resnet18", "resnet20", "plain20"])
def test_readme_zoo_table_is_current(name):
    """README's table is `python benchmarks/zoo_table.py`; spot-check rows."""
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    assert zoo_table.row(name) in readme.splitlines()
