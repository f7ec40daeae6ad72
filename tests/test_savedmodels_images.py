"""Client images are checked from their headers before they are decoded:
format, size and (for GIFs) all frames' pixels, with errors naming the
element. Real photos from skimage.data, in each format."""

import io
import zlib

import numpy as np
import pytest
import skimage.data
import tensorflow as tf
from PIL import Image

from keras_resnet.savedmodels import images

PHOTO = skimage.data.chelsea()  # 300 x 451


def encode(array, fmt, **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def animated_gif(frames):
    """A GIF of `frames` 64 x 64 crops of the photo."""
    crops = [Image.fromarray(PHOTO[i * 8 : i * 8 + 64, i * 8 : i * 8 + 64]) for i in range(frames)]
    buffer = io.BytesIO()
    crops[0].save(buffer, "GIF", save_all=True, append_images=crops[1:])
    return buffer.getvalue()


def serving_function():
    """decode_batch over a batch of encoded images, in a graph as served."""
    return tf.function(lambda image_bytes: images.decode_batch(
        image_bytes, "image_bytes",
        lambda image: tf.reduce_mean(tf.cast(image, tf.float32), [0, 1]),
        tf.TensorSpec([3], tf.float32),
    ), input_signature=[tf.TensorSpec([None], tf.string)])


SERVE = serving_function()


def batch_means(batch, serve=SERVE):
    return serve(tf.constant(batch, tf.string)).numpy()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP"])
def test_header_size_of_each_format(fmt):
    assert images.header_size(tf.constant(encode(PHOTO, fmt))).numpy().tolist() == [300, 451]
    strip = encode(PHOTO[150:151], fmt)
    assert images.header_size(tf.constant(strip)).numpy().tolist() == [1, 451]


def test_bmp_stored_top_down_has_a_positive_height():
    data = bytearray(encode(PHOTO, "BMP"))
    data[22:26] = (2**32 - 300).to_bytes(4, "little")  # height -300: rows top-down
    assert images.header_size(tf.constant(bytes(data))).numpy().tolist() == [300, 451]


def test_gif_frame_pixels_counts_every_frame():
    assert images.gif_frame_pixels(tf.constant(encode(PHOTO, "GIF")), 2**26).numpy() == 300 * 451
    assert images.gif_frame_pixels(tf.constant(animated_gif(3)), 2**26).numpy() == 3 * 64 * 64


def test_images_of_every_format_decode_as_tensorflow_decodes_them():
    batch = [encode(PHOTO, fmt) for fmt in ["JPEG", "PNG", "GIF", "BMP"]] + [animated_gif(3)]
    expected = [tf.reduce_mean(tf.cast(tf.io.decode_image(b, 3, expand_animations=False),
                                       tf.float32), [0, 1]).numpy() for b in batch]
    np.testing.assert_allclose(batch_means(batch), expected, rtol=1e-6)


def png_claiming(height, width):
    data = bytearray(encode(PHOTO, "PNG"))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(data[12:29]).to_bytes(4, "big")  # IHDR's CRC
    return bytes(data)


@pytest.mark.parametrize("bad, problem", [
    (b"<html>not an image</html>", "not a JPEG, PNG, GIF or BMP image"),
    (b"", "an empty string"),
    (png_claiming(65535, 65535), f"65535 x 65535 pixels, over the limit of {images.MAX_PIXELS}"),
    (png_claiming(1, 2**26 + 1), "1 x 67108865 pixels, over the limit"),
])
def test_a_bad_image_is_named_by_its_place_in_the_batch(bad, problem):
    good = encode(PHOTO, "JPEG")
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"image_bytes\[2\]: {problem}"):
        batch_means([good, good, bad, good])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP"])
def test_an_image_cut_short_is_named(fmt):
    whole = encode(PHOTO, fmt)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[1\]: cut short: the file lacks its end"):
        batch_means([whole, whole[: len(whole) // 2]])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_an_image_corrupt_inside_is_named(fmt):
    """Header and end intact, data damaged: TensorFlow's decoder fails, and
    the error still names the element (and the first of several)."""
    whole = encode(PHOTO, fmt)
    middle = len(whole) // 2
    noise = np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes()
    corrupt = whole[:middle] + noise + whole[middle + len(noise):]
    assert images.problem(tf.constant(corrupt)).numpy() == b""  # the header checks pass
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_image(corrupt, 3)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[1\]: corrupt: the decoder cannot read the image data"):
        batch_means([whole, corrupt, whole, corrupt])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[0\]: corrupt"):
        batch_means([corrupt])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[1\]: not a JPEG"):
        batch_means([whole, b"text", corrupt])


def test_a_gif_whose_frames_exceed_the_limit_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 3 * 64 * 64 - 1)  # read when traced
    serve = serving_function()
    assert batch_means([animated_gif(2)], serve).shape == (1, 3)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[1\]: a GIF whose frames hold over 12287 pixels"):
        batch_means([animated_gif(2), animated_gif(3)], serve)


def test_a_gif_of_too_many_blocks_to_count_is_refused(monkeypatch):
    monkeypatch.setattr(images, "MAX_GIF_BLOCKS", 8)  # read when traced
    gif = tf.constant(animated_gif(3))  # 3 frames: some 20 blocks
    assert images.gif_frame_pixels(gif, 2**26).numpy() == -1
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[0\]: a GIF of over 8 "):
        batch_means([animated_gif(3)], serving_function())


def test_an_empty_batch_is_named():
    with pytest.raises(tf.errors.InvalidArgumentError, match="image_bytes: an empty batch"):
        batch_means([])
