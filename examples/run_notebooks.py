"""Re-executes the example notebooks in place, as they are committed: in a
fresh kernel of this Python, from examples/, top to bottom.

    python examples/run_notebooks.py                     # all of them
    python examples/run_notebooks.py 02_training.ipynb   # some

The kernel is started with capture_fd_output=False, so that TensorFlow's C++
start-up lines go to this terminal rather than into the saved outputs.
"""

import json
import os
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))


def main(names):
    names = names or sorted(n for n in os.listdir(HERE) if n.endswith(".ipynb"))
    with tempfile.TemporaryDirectory() as jupyter_path:
        # A python3 kernelspec for this interpreter, found before any other.
        spec_dir = os.path.join(jupyter_path, "kernels", "python3")
        os.makedirs(spec_dir)
        with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
            json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
                                "{connection_file}"],
                       "display_name": "Python 3", "language": "python"}, f)
        os.environ["JUPYTER_PATH"] = jupyter_path
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        for name in names:
            path = os.path.join(HERE, os.path.basename(name))
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(nb, kernel_name="python3", timeout=600,
                                    extra_arguments=["--IPKernelApp.capture_fd_output=False"],
                                    resources={"metadata": {"path": HERE}})
            start = time.monotonic()
            client.execute()
            print(f"{name}: {time.monotonic() - start:.1f} s", flush=True)
            nbformat.write(nb, path)


if __name__ == "__main__":
    main(sys.argv[1:])
