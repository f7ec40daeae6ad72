"""How long a run waits for CIFAR-10 before its first step: `load_dataset`
of the shared JPEG archive (train and test) in a fresh process, cold (the
archive decoded, its arrays written to the cache) then warm (read back from
the cache), each in its own process.

    python benchmarks/start_time.py [--warm_runs=3] [--code=<checkout>]

The cache goes to a temporary folder, never the user's ~/.cache, so the
first run is cold by construction. --code times another checkout's
keras_resnet (one without the cache decodes every time). Every run prints
a sha256 of the arrays it loaded: cold and warm must agree, bit for bit.
Writes benchmarks/results/start_time.md.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import RESULTS, SHARED_CIFAR10, machine_load  # noqa: E402

# Runs in the child: times the imports and load_dataset, digests the arrays.
CHILD = """
import hashlib, json, sys, time
start = time.perf_counter()
from keras_resnet.trainers.data import cifar10, load_dataset
imported = time.perf_counter()
real, loaded = cifar10.load_arrays, {}
def load_arrays(data_dir, split, skip_corrupt=False):
    loaded[split] = real(data_dir, split, skip_corrupt)
    return loaded[split]
cifar10.load_arrays = load_arrays
dataset = load_dataset("cifar10", sys.argv[1])
done = time.perf_counter()
digest = hashlib.sha256()
for split in ("train", "test"):
    for array in loaded[split]:
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
print(json.dumps({"import_s": imported - start, "load_s": done - imported,
                  "examples": dataset.num_train + dataset.num_eval,
                  "sha256": digest.hexdigest()}))
"""


def run(code, data_dir, cache):
    env = {**os.environ, "PYTHONPATH": code, "KERAS_RESNET_CACHE_DIR": cache,
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, data_dir], env=env, cwd=code,
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - start
    result["load_average"] = os.getloadavg()[0]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=SHARED_CIFAR10)
    parser.add_argument("--warm_runs", type=int, default=3)
    parser.add_argument("--code", default=ROOT, help="checkout whose keras_resnet is timed")
    parser.add_argument("--out", default=os.path.join(RESULTS, "start_time.md"))
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="keras_resnet_cache-") as cache:
        for k in range(1 + args.warm_runs):
            rows.append(("cold" if k == 0 else "warm", run(args.code, args.data_dir, cache)))
            print(rows[-1], flush=True)
    digests = {r["sha256"] for _, r in rows}
    loads, top = machine_load()
    lines = [
        f"`python benchmarks/start_time.py --warm_runs={args.warm_runs}`"
        + ("" if args.code == ROOT else f" with --code={args.code}")
        + f", {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{time.perf_counter() - started:.0f} s wall, on {os.cpu_count()} CPU cores.",
        "",
        "| run | load_dataset (s) | imports (s) | process wall (s) | load average | images |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {kind} | {r['load_s']:.1f} | {r['import_s']:.1f} | {r['wall_s']:.1f} | "
              f"{r['load_average']:.1f} | {r['examples']:,} |" for kind, r in rows]
    lines += ["", f"Arrays bit-identical across the runs: {len(digests) == 1} "
              f"(sha256 {sorted(digests)[0][:16]}...).",
              f"Load averages at the end: {loads[0]:.1f} / {loads[1]:.1f} / {loads[2]:.1f}; "
              "busiest processes:", ""] + [f"    {line}" for line in top]
    text = "\n".join(lines) + "\n"
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    if len(digests) != 1:
        sys.exit("the runs loaded different arrays")


if __name__ == "__main__":
    main()
