"""Client images, decoded within a bound.

A request's bytes can be anything: not an image, a PNG of 65535 x 65535
pixels of one colour (12 GiB decoded from a 12 MB file), a strip of
1 x 60000. Each image's format and size are read from its header
before it is decoded, so that a bad one costs nothing and fails with
InvalidArgument naming its place in the batch (image_bytes[3]: ...).
Evaluation preprocessing then resizes only the centre window
(keras_resnet.preprocessing.eval_center_crop), so the cost of an image is
bounded by MAX_PIXELS whatever its shape.

Accepted: JPEG, PNG, GIF (first frame) and BMP of 1 to MAX_PIXELS pixels,
all of a GIF's frames together included (and GIFs of up to MAX_GIF_BLOCKS
blocks), that are not cut short and that TensorFlow's decoders read.
There is no aspect-ratio limit: the window's cost does not grow with it.
"""

import tensorflow as tf

from keras_resnet.preprocessing import decode_image

# 64 megapixels, 192 MiB decoded: above 48-megapixel camera photos and 8K frames.
MAX_PIXELS = 2**26
# A GIF's frames are counted block by block, one graph step each: at most
# this many blocks (about 4 MB of GIF at 255 bytes a block; about a second of
# one loaded core for a GIF of tiny blocks), so that counting has a bound.
MAX_GIF_BLOCKS = 2**14
_HEADER = 26  # bytes that hold the PNG, GIF and BMP sizes
_MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "gif": b"GIF8", "bmp": b"BM"}


def _unsigned(head, start, count, big_endian):
    order = range(count) if big_endian else reversed(range(count))
    value = tf.constant(0, tf.int64)
    for i in order:
        value = value * 256 + head[start + i]
    return value


def _starts_with(image_bytes, magic):
    return tf.equal(tf.strings.substr(image_bytes, 0, len(magic)), magic)


def _head(image_bytes):
    """The first _HEADER bytes as int64, zero-padded."""
    padded = tf.strings.join([image_bytes, b"\0" * _HEADER])
    return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, _HEADER), tf.uint8), tf.int64)


def header_size(image_bytes):
    """[height, width] from the header of a JPEG, PNG, GIF or BMP; [0, 0]
    for anything else (or an empty string)."""
    head = _head(image_bytes)

    def bmp():  # signed 32-bit; a negative height means rows stored top-down
        width, height = _unsigned(head, 18, 4, False), _unsigned(head, 22, 4, False)
        signed = tf.where(tf.stack([height, width]) >= 2**31,
                          tf.stack([height, width]) - 2**32, tf.stack([height, width]))
        return tf.abs(signed)

    return tf.case([
        (tf.io.is_jpeg(image_bytes),
         lambda: tf.cast(tf.image.extract_jpeg_shape(image_bytes)[:2], tf.int64)),
        (_starts_with(image_bytes, _MAGIC["png"]),
         lambda: tf.stack([_unsigned(head, 20, 4, True), _unsigned(head, 16, 4, True)])),
        (_starts_with(image_bytes, _MAGIC["gif"]),
         lambda: tf.stack([_unsigned(head, 8, 2, False), _unsigned(head, 6, 2, False)])),
        (_starts_with(image_bytes, _MAGIC["bmp"]), bmp),
    ], default=lambda: tf.zeros([2], tf.int64))


def gif_frame_pixels(image_bytes, limit):
    """The pixels of a GIF's frames together, counted from its blocks up to
    the trailer or past `limit`: TensorFlow's GIF decoder reads every frame
    into memory, even when only the first is kept. -1 for a GIF of more
    than MAX_GIF_BLOCKS blocks, whose count would cost too much time."""
    data = tf.cast(tf.io.decode_raw(tf.strings.join([image_bytes, b"\0" * 16]), tf.uint8),
                   tf.int64)
    end = tf.cast(tf.strings.length(image_bytes), tf.int64)
    zero = tf.constant(0, tf.int64)

    def table(packed):  # a colour table's bytes, if its flag bit is set
        return tf.where(packed >= 128, 3 * 2 ** (packed % 8 + 1), zero)

    def step(pos, in_sub_blocks, pixels, blocks):
        size = data[pos]

        def sub_block():  # size byte and data; a zero size ends the block
            return pos + size + 1, size != 0, pixels

        def block():  # an image descriptor, an extension, or the end
            image, extension = size == 0x2C, size == 0x21
            skip = tf.where(image, 10 + table(data[pos + 9]) + 1,
                            tf.where(extension, tf.constant(2, tf.int64), end))
            width, height = data[pos + 5] + 256 * data[pos + 6], data[pos + 7] + 256 * data[pos + 8]
            return pos + skip, image | extension, pixels + tf.where(image, width * height, zero)

        return (*tf.cond(in_sub_blocks, sub_block, block), blocks + 1)

    pos, _, pixels, _ = tf.while_loop(
        lambda pos, in_sub_blocks, pixels, blocks:
            (pos < end) & (pixels <= limit) & (blocks < MAX_GIF_BLOCKS),
        step, (13 + table(data[10]), tf.constant(False), zero, zero))
    return tf.where((pos < end) & (pixels <= limit), tf.constant(-1, tf.int64), pixels)


def _contains(image_bytes, marker):
    return tf.size(tf.strings.split(image_bytes, sep=marker)) > 1


def _complete(image_bytes):
    """Whether the file has its end: a cut-short upload otherwise fails in
    the decoder, whose error names no element. JPEG: an end-of-image marker;
    PNG: an IEND chunk; BMP: the file size its header declares."""
    length = tf.cast(tf.strings.length(image_bytes), tf.int64)
    head = _head(image_bytes)
    return tf.case([
        (tf.io.is_jpeg(image_bytes), lambda: _contains(image_bytes, b"\xff\xd9")),
        (_starts_with(image_bytes, _MAGIC["png"]), lambda: _contains(image_bytes, b"IEND")),
        (_starts_with(image_bytes, _MAGIC["bmp"]), lambda: _unsigned(head, 2, 4, False) <= length),
    ], default=lambda: tf.constant(True))


def problem(image_bytes):
    """What is wrong with one client image, read from its header and its
    length without decoding it: a scalar string, "" for none."""
    size = header_size(image_bytes)
    pixels = size[0] * size[1]
    in_bounds = (pixels > 0) & (pixels <= MAX_PIXELS)
    frames = tf.cond(in_bounds & _starts_with(image_bytes, _MAGIC["gif"]),
                     lambda: gif_frame_pixels(image_bytes, MAX_PIXELS),
                     lambda: tf.constant(0, tf.int64))
    checks = [  # (passes, what is wrong), in order: the first that fails is reported
        (tf.strings.length(image_bytes) > 0, "an empty string; send the encoded image"),
        (pixels > 0, "not a JPEG, PNG, GIF or BMP image"),
        (pixels <= MAX_PIXELS, tf.strings.format(
            f"{{}} x {{}} pixels, over the limit of {MAX_PIXELS} pixels", (size[0], size[1]))),
        (frames >= 0, f"a GIF of over {MAX_GIF_BLOCKS} blocks"),
        (frames <= MAX_PIXELS, f"a GIF whose frames hold over {MAX_PIXELS} pixels together"),
        (_complete(image_bytes), "cut short: the file lacks its end"),
    ]
    found = tf.constant("")
    for passes, message in reversed(checks):
        found = tf.where(passes, found, message)
    return found


def decode(image_bytes, where):
    """uint8 HWC RGB of one client image, checked first; `where` names it
    in errors."""
    found = problem(image_bytes)
    check = tf.debugging.Assert(tf.equal(found, ""), [tf.strings.join([where, ": ", found])])
    with tf.control_dependencies([check]):
        return decode_image(image_bytes)


def check_not_empty(batch, name):
    """InvalidArgument "<name>: an empty batch" for a batch of no images, on
    which the model's first convolution fails with an error naming nothing."""
    return tf.debugging.Assert(tf.shape(batch)[0] > 0,
                               [f"{name}: an empty batch; send at least one image"])


def decode_batch(image_bytes, name, fn, spec):
    """fn(decoded image) for each image of a [batch] string tensor, which
    must hold at least one; `name` is the input's name, for errors, and
    `spec` the tf.TensorSpec of fn's result.

    Images are decoded one at a time (the memory bound holds per image) in
    a tf.data pipeline that drops the ones TensorFlow's decoder fails on,
    so that a file corrupt inside is named too: the first bad element is
    reported, whatever is wrong with it.
    """
    with tf.control_dependencies([check_not_empty(image_bytes, name)]):
        count = tf.size(image_bytes, out_type=tf.int64)

    def checked(index, data):
        found = problem(data)
        result = tf.cond(tf.equal(found, ""), lambda: fn(decode_image(data)),
                         lambda: tf.zeros(spec.shape, spec.dtype))
        return index, found, result

    decoded = (
        tf.data.Dataset.from_tensor_slices((tf.range(count), image_bytes))
        .map(checked)
        .ignore_errors()
        .batch(count)
        # every element failed to decode: an empty batch instead of none
        .concatenate(tf.data.Dataset.from_tensors((
            tf.zeros([0], tf.int64), tf.zeros([0], tf.string),
            tf.zeros([0, *spec.shape], spec.dtype))))
        .take(1)
    )
    index, found, results = decoded.get_single_element()
    problems = tf.tensor_scatter_nd_update(
        tf.fill([count], "corrupt: the decoder cannot read the image data"),
        index[:, None], found)
    first = tf.argmax(tf.not_equal(problems, ""), output_type=tf.int64)
    check = tf.debugging.Assert(
        tf.reduce_all(tf.equal(problems, "")),
        [tf.strings.join([name, "[", tf.strings.as_string(first), "]: ", problems[first]])])
    with tf.control_dependencies([check]):
        return tf.ensure_shape(tf.identity(results), [None, *spec.shape])
