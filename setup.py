"""keras_resnet: He et al. (2015) residual networks for Keras 3, with trainers
and TF Serving export."""

import setuptools

setuptools.setup(
    name="keras-resnet-zoo",
    version="0.1.0",
    description="Deep Residual Learning (He et al., 2015) for Keras 3: model zoo, "
    "tf.data trainers and TF Serving export",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["keras_resnet*"]),
    package_data={
        "keras_resnet": ["pretrained/*.h5", "pretrained/*.json"],
        "keras_resnet.savedmodels": ["warmup_images/*", "models.config"],
    },
    install_requires=[
        # tensorflow-serving-api pins the full tensorflow wheel, which runs on
        # CPU-only machines as well; tensorflow-cpu would be installed beside it.
        "tensorflow>=2.16",
        "keras>=3.3",
        "tensorflow-datasets>=4.9",
        "importlib_resources",  # tensorflow-datasets' downloader imports it without requiring it
        "keras-tuner[bayesian]>=1.4",  # bayesian: scikit-learn for --tuner=bayesian
        "tensorboard>=2.16",
        "tensorflow-serving-api>=2.16",
        "absl-py>=1.0",
        "numpy>=1.23",
        "h5py>=3.7",
        "matplotlib>=3.5",
        "pillow>=9.0",
    ],
    extras_require={
        # nbclient, nbformat and ipykernel run examples/*.ipynb in a real kernel.
        "test": ["pytest>=7", "pytest-timeout>=2", "scikit-image>=0.20",
                 "nbclient>=0.7", "nbformat>=5.7", "ipykernel>=6"],
    },
    entry_points={
        "console_scripts": [
            "keras-resnet-train=keras_resnet.trainers.train:run",
            "keras-resnet-tune=keras_resnet.trainers.tune:run",
            "keras-resnet-prepare=keras_resnet.trainers.prepare:run",
            "keras-resnet-export=keras_resnet.savedmodels.export:run",
        ]
    },
)
