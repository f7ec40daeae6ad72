"""The paper's CIFAR-10 recipe outside the TensorFlow trainer: keras_resnet's
builders under KERAS_BACKEND=jax, one jitted scan per 400 steps, on a GPU.

Why: the trainer's paper-schedule ResNet-20 reached 87.6% on the JPEG copy,
not the paper's 91.25%. Training the same model on the same images with the
same recipe, but none of the trainer's code, says whether that gap belongs
to the data or to the trainer; the recipe variants say what else would help.

    KERAS_BACKEND=jax python benchmarks/cifar10_recipe_jax.py \
        --data=../shared/datasets/cifar10-jpeg.tar.gz --out=OUT \
        --recipes=paper,wd5e-4 --budget_s=500

Every 400 steps, train loss/error and test error (raw and EMA weights) go to
OUT/runs.jsonl as they happen; OUT/summary.json and OUT/curves.png at the end.
"""

import argparse
import dataclasses
import functools
import io
import json
import os
import tarfile
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import keras  # noqa: E402
import keras_resnet  # noqa: E402
from keras_resnet import model_dir  # noqa: E402
from keras_resnet.cifar_utils import CLASS_NAMES  # noqa: E402
from benchmarks.recipe_report import plot, read_jsonl  # noqa: E402

PAD = 4
EVAL_BATCH = 1000


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Paper section 4.2 by default: SGD 0.9, L2 1e-4 on kernels, batch 128,
    lr 0.1 divided by 10 at 32k and 48k iterations, 64k iterations."""

    name: str
    model: str = "resnet20"
    steps: int = 64000
    batch: int = 128
    lr: float = 0.1
    boundaries: tuple = (32000, 48000)
    weight_decay: float = 1e-4
    momentum: float = 0.9
    label_smoothing: float = 0.0
    ema_decay: float = 0.999
    seed: int = 1


RECIPES = {
    "paper": Recipe("paper"),
    "paper_seed2": Recipe("paper_seed2", seed=2),
    "wd5e-4": Recipe("wd5e-4", weight_decay=5e-4),
    "wd5e-4_ls0.1": Recipe("wd5e-4_ls0.1", weight_decay=5e-4, label_smoothing=0.1),
    "paper_2x": Recipe("paper_2x", steps=128000, boundaries=(64000, 96000)),
    "resnet56": Recipe("resnet56", model="resnet56"),
}


def load_split(tar_path, split):
    """(uint8 NHWC, int32 labels) of 'train' or 'test' from the JPEG archive."""
    images, labels = [], []
    with tarfile.open(tar_path) as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile() and f"/{split}/" in f"/{m.name}"),
            key=lambda m: m.name,
        )
        for member in members:
            label = CLASS_NAMES.index(member.name.split("/")[-2])
            data = tar.extractfile(member).read()
            images.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
            labels.append(label)
    if not images:
        raise ValueError(f"{tar_path}: no '{split}' images (expected cifar10/{split}/<class>/*.jpg)")
    return np.stack(images), np.asarray(labels, np.int32)


def augment(key, images):
    """Pad 4, random 32x32 crop, random horizontal flip: each image its own."""
    n, size = images.shape[0], images.shape[1]
    padded = jnp.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))
    k_off, k_flip = jax.random.split(key)
    offsets = jax.random.randint(k_off, (n, 2), 0, 2 * PAD + 1)
    crop = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (size, size, 3)))
    crops = crop(padded, offsets)
    flip = jax.random.bernoulli(k_flip, 0.5, (n,))
    return jnp.where(flip[:, None, None, None], crops[:, :, ::-1], crops)


@functools.lru_cache(maxsize=None)
def compiled(model_name):
    """(model, jitted run_steps, jitted test_error) for one architecture; the
    recipe's numbers are arguments, so its variants share one compilation."""
    model = keras_resnet.get_model(model_name, classifier_activation=None)
    decays = [v.path.endswith("kernel") for v in model.trainable_variables]

    def loss_fn(trainable, non_trainable, images, labels, smoothing):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, images, training=True)
        targets = jax.nn.one_hot(labels, 10) * (1 - smoothing) + smoothing / 10
        loss = -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1))
        return loss, (non_trainable, jnp.mean(jnp.argmax(logits, -1) == labels))

    def step_fn(carry, inputs, hp):
        (state, step), (images, labels) = carry, inputs
        (loss, (non_trainable, accuracy)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["trainable"], state["non_trainable"], images, labels, hp["label_smoothing"])
        lr = hp["lr"] * 0.1 ** jnp.sum(step >= hp["boundaries"])
        trainable, momentum = [], []
        for w, g, m, decay in zip(state["trainable"], grads, state["momentum"], decays):
            g = g + hp["weight_decay"] * w if decay else g  # the L2 penalty's gradient
            m = hp["momentum"] * m - lr * g  # Keras SGD's momentum form
            trainable.append(w + m)
            momentum.append(m)
        d = hp["ema_decay"]
        ema = jax.tree.map(lambda e, w: d * e + (1 - d) * w, state["ema"], (trainable, non_trainable))
        new = {"trainable": trainable, "non_trainable": non_trainable, "momentum": momentum, "ema": ema}
        return (new, step + 1), (loss, accuracy)

    @jax.jit  # the data are arguments, not constants baked into the program
    def run_steps(state, hp, step, key, indices, x, y):
        def scan_step(carry, inputs):
            key, index = inputs
            return step_fn(carry, (augment(key, x[index]), y[index]), hp)
        keys = jax.random.split(key, indices.shape[0])
        (state, step), (loss, accuracy) = jax.lax.scan(scan_step, (state, step), (keys, indices))
        return state, step, jnp.mean(loss), jnp.mean(accuracy)

    @jax.jit
    def test_error(variables, x, y):
        def batch(_, xy):
            logits, _ = model.stateless_call(*variables, xy[0], training=False)
            return None, jnp.sum(jnp.argmax(logits, -1) == xy[1])
        _, correct = jax.lax.scan(batch, None, (x.reshape(-1, EVAL_BATCH, *x.shape[1:]),
                                                y.reshape(-1, EVAL_BATCH)))
        return 1.0 - jnp.sum(correct) / y.shape[0]

    return model, run_steps, test_error


def index_stream(n, seed):
    """Shuffled passes over range(n), end to end, like tf.data's shuffle().repeat()."""
    rng = np.random.default_rng(seed)
    while True:
        yield from rng.permutation(n)


def train(recipe, data, log, deadline, chunk):
    """Trains one recipe, `chunk` steps per jitted call (an "epoch" in the
    log, as in the trainer's 400-step epochs); returns its summary, marked
    unfinished when the deadline stops it early."""
    (x_train, y_train), (x_test, y_test) = data
    if recipe.steps % chunk:
        raise ValueError(f"{recipe.name}: steps={recipe.steps} is not a multiple of --chunk={chunk}")
    _, run_steps, test_error = compiled(recipe.model)
    keras.utils.set_random_seed(recipe.seed)
    # A twin of the compiled model, so each recipe starts from its seed's initialization.
    model = keras_resnet.get_model(recipe.model, classifier_activation=None)
    state = {
        "trainable": [v.value for v in model.trainable_variables],
        "non_trainable": [v.value for v in model.non_trainable_variables],
        "momentum": [jnp.zeros_like(v.value) for v in model.trainable_variables],
    }
    state["ema"] = (list(state["trainable"]), list(state["non_trainable"]))
    hp = {"lr": recipe.lr, "boundaries": jnp.asarray(recipe.boundaries), "momentum": recipe.momentum,
          "weight_decay": recipe.weight_decay, "label_smoothing": recipe.label_smoothing,
          "ema_decay": recipe.ema_decay}
    hp = {k: jnp.asarray(v, jnp.int32 if k == "boundaries" else jnp.float32) for k, v in hp.items()}
    stream = index_stream(x_train.shape[0], recipe.seed)
    key = jax.random.PRNGKey(recipe.seed)
    step, epoch, start, record = 0, 0, time.time(), None
    while step < recipe.steps:
        if time.time() > deadline:
            print(f"{recipe.name}: out of time at step {step}", flush=True)
            break
        key, k_aug = jax.random.split(key)
        indices = np.fromiter(stream, np.int32, chunk * recipe.batch).reshape(chunk, recipe.batch)
        state, step_array, loss, accuracy = run_steps(state, hp, jnp.int32(step), k_aug, indices,
                                                      x_train, y_train)
        step, epoch = int(step_array), epoch + 1
        record = {
            "recipe": recipe.name, "epoch": epoch, "step": step,
            "train_loss": float(loss), "train_error": 1 - float(accuracy),
            "test_error": float(test_error((state["trainable"], state["non_trainable"]), x_test, y_test)),
            "test_error_ema": float(test_error(state["ema"], x_test, y_test)),
            "wall_s": round(time.time() - start, 1),
        }
        log.write(json.dumps(record) + "\n")
        log.flush()
        if epoch % 10 == 0 or step >= recipe.steps or epoch == 1:
            rate = step * recipe.batch / (time.time() - start)
            print(f"{recipe.name} epoch {epoch} step {step}: {rate:.0f} images/s, "
                  f"train err {record['train_error']:.4f}, test err {record['test_error']:.4f} "
                  f"(EMA {record['test_error_ema']:.4f}), {record['wall_s']}s", flush=True)
    return dict(dataclasses.asdict(recipe), finished=step >= recipe.steps, last=record)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="cifar10-jpeg.tar.gz")
    parser.add_argument("--out", required=True)
    parser.add_argument("--recipes", default="paper", help=f"comma list of {', '.join(RECIPES)}")
    parser.add_argument("--steps", type=int, help="override every recipe's steps (smoke tests)")
    parser.add_argument("--train_limit", type=int, help="train on a random N of the training images (smoke tests)")
    parser.add_argument("--chunk", type=int, default=400, help="steps per jitted call and log line")
    parser.add_argument("--budget_s", type=float, default=1e9, help="start no epoch after this")
    parser.add_argument("--precision", default="highest", choices=("default", "high", "highest"),
                        help="XLA matmul/conv precision: 'highest' is float32, 'default' allows TF32")
    args = parser.parse_args()
    unknown = [r for r in args.recipes.split(",") if r not in RECIPES]
    if unknown:
        parser.error(f"--recipes: unknown {unknown}; allowed: {', '.join(RECIPES)}")
    jax.config.update("jax_default_matmul_precision", args.precision)
    deadline = time.time() + args.budget_s
    os.makedirs(args.out, exist_ok=True)

    start = time.time()
    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "test")
    if args.train_limit:  # a random subset: the files come sorted by class
        keep = np.random.default_rng(0).permutation(len(y_train))[: args.train_limit]
        x_train, y_train = x_train[keep], y_train[keep]
    mean = x_train.astype(np.float64).mean(axis=0).astype(np.float32)
    data = ((jnp.asarray(x_train - mean), jnp.asarray(y_train)),
            (jnp.asarray(x_test - mean), jnp.asarray(y_test)))
    print(f"decoded {len(y_train)} + {len(y_test)} images in {time.time() - start:.0f}s on "
          f"{jax.devices()[0].device_kind}", flush=True)

    summaries = []
    with open(os.path.join(args.out, "runs.jsonl"), "a", encoding="utf-8") as log:
        for name in args.recipes.split(","):
            recipe = RECIPES[name]
            if args.steps:
                scale = args.steps / recipe.steps
                recipe = dataclasses.replace(
                    recipe, steps=args.steps, boundaries=tuple(int(b * scale) for b in recipe.boundaries))
            summaries.append(train(recipe, data, log, deadline, args.chunk))
    summary = {"device": jax.devices()[0].device_kind, "precision": args.precision,
               "keras_backend": "jax", "jax": jax.__version__, "runs": summaries}
    model_dir.write_json(os.path.join(args.out, "summary.json"), summary)
    plot(read_jsonl(os.path.join(args.out, "runs.jsonl")), os.path.join(args.out, "curves.png"),
         "CIFAR-10 JPEG copy, JAX backend (dashed: train, dotted: EMA)")


if __name__ == "__main__":
    main()
