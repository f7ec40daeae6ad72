"""Peak memory of one request to a ResNet-50 export's serving_default: a
1 x 2000 PNG against a 224 x 224 photo, and an 8200 x 8200 PNG of one
colour (a small file over the pixel limit), each answered in a fresh process
that loads the SavedModel first. Peak RSS is the process's high-water mark
(VmHWM); "loaded" is its RSS before the request.

    python benchmarks/serving_memory.py [--out=benchmarks/results/serving_memory.md]

exports resnet50 with random weights (memory does not depend on them) into a
temporary folder. The images are skimage.data photos: coffee resized to
2000 x 1 pixels, chelsea to 224 x 224.
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import RESULTS, machine_load  # noqa: E402

REQUEST = r"""
import json, re, sys
import tensorflow as tf

def status_mib(key):  # VmRSS now, VmHWM its peak; unlike ru_maxrss, not the parent's
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key + ":")) / 1024

serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
loaded = status_mib("VmRSS")
with open(sys.argv[2], "rb") as f:
    image = f.read()
try:
    answer = "class %d" % serve(image_bytes=tf.constant([image]))["classes"].numpy()[0]
except tf.errors.InvalidArgumentError as error:
    lines = [re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line).strip()
             for line in error.message.splitlines()]
    lines = [line for line in lines if line and not line.startswith(
        ("[[", "Graph execution error", "Detected at node", "<stack traces"))]
    answer = "InvalidArgument: " + lines[0][:100]
peak = status_mib("VmHWM")
print(json.dumps({"loaded_mib": loaded, "peak_mib": peak, "answer": answer}))
"""


def images():
    """{name: encoded bytes} of the three requests."""
    import numpy as np
    import skimage.data
    from PIL import Image

    def encode(image, size, fmt):
        buffer = io.BytesIO()
        Image.fromarray(image).resize(size, Image.BILINEAR).save(buffer, fmt)
        return buffer.getvalue()

    bomb = io.BytesIO()  # one colour compresses ~1000:1: 200 MB of pixels in a small file
    Image.new("RGB", (8200, 8200), (128, 96, 64)).save(bomb, "PNG")
    return {
        "224x224 JPEG photo": encode(skimage.data.chelsea(), (224, 224), "JPEG"),
        "1x2000 PNG": encode(np.asarray(skimage.data.coffee()), (2000, 1), "PNG"),
        "8200x8200 PNG of one colour": bomb.getvalue(),
    }


def export_resnet50(export_base):
    import keras

    import keras_resnet
    from keras_resnet.preprocessing import EvalPreprocessing
    from keras_resnet.savedmodels import export, sources

    keras.utils.set_random_seed(0)
    model = keras_resnet.ResNet50()
    source = sources.Source(model, EvalPreprocessing("imagenet", 224),
                            [str(i) for i in range(1000)], "resnet50")
    return export.export(source, export_base, replay_warmup=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(RESULTS, "serving_memory.md"))
    args = parser.parse_args()
    start = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = export_resnet50(tmp)
        for name, data in images().items():
            image_file = os.path.join(tmp, "image")
            with open(image_file, "wb") as f:
                f.write(data)
            done = subprocess.run([sys.executable, "-c", REQUEST, path, image_file],
                                  capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append((name, len(data), result))
            print(name, result, flush=True)
    wall = time.time() - start
    load, top = machine_load()
    with open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    lines = [
        "# Peak memory of one serving_default request, ResNet-50",
        "",
        f"`python {' '.join(sys.argv)}` at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())},"
        f" {wall:.0f} s wall; {os.cpu_count()} cores of {cpu}, no GPU; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.",
        "",
        "| request | bytes | RSS loaded (MiB) | peak RSS (MiB) | answer |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    lines += [f"| {name} | {size} | {r['loaded_mib']:.0f} | {r['peak_mib']:.0f} | "
              f"{r['answer']} |" for name, size, r in rows]
    photo = rows[0][2]["peak_mib"]
    lines += ["", f"1x2000 PNG peak / photo peak: {rows[1][2]['peak_mib'] / photo:.3f}",
              "", "Busiest processes: " + "; ".join(top), ""]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out} in {wall:.0f} s")


if __name__ == "__main__":
    main()
