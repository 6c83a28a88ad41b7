"""One photograph through VGG16: the feature maps of five layers, logged in one call.

    python demo/vgg16_snapshot.py                     # Grace Hopper, from matplotlib
    python demo/vgg16_snapshot.py --image cat.jpg --logdir logs/cat
    tensorboard --logdir logs/vgg16                   # then the Activations tab

The ImageNet weights are used when they are already in Keras's cache
(~/.keras/models, or $KERAS_HOME/models); nothing is downloaded. Without
them the network has random weights: the first layers still show edges and
colours, because a random filter still responds to them, but deeper layers
show no learned objects.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# TensorFlow's start-up notes on stderr would bury what this prints.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LAYERS = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"]
# Keras's names for the two VGG16 weight files (with and without the classifier).
WEIGHT_FILES = {
    False: "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    True: "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
}


def cached_weights() -> tuple[bool, Path] | None:
    """(include_top, path) of a VGG16 ImageNet weight file already on disk, if any."""
    dirs = [Path(os.environ["KERAS_HOME"])] if os.environ.get("KERAS_HOME") else []
    # Keras falls back to /tmp/.keras when the home directory is not writable.
    dirs += [Path.home() / ".keras", Path("/tmp/.keras")]
    for d in dirs:
        for include_top, name in WEIGHT_FILES.items():
            path = d / "models" / name
            if path.is_file() and path.stat().st_size > 0:
                return include_top, path
    return None


def default_image() -> str:
    from matplotlib import cbook

    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def build_vgg16():
    """VGG16 with ImageNet weights from the cache, else with random weights."""
    import keras

    found = cached_weights()
    if found is not None:
        include_top, path = found
        try:
            model = keras.applications.VGG16(
                weights="imagenet", include_top=include_top, input_shape=(224, 224, 3)
            )
            print(f"Using the ImageNet weights in {path}.")
            return model, True
        except Exception as e:  # noqa: BLE001 - a broken cache file: fall back, say why
            print(f"Could not load the ImageNet weights in {path} ({e}).")
    print(
        "ImageNet weights unavailable offline; using random weights. (To use them, put "
        f"{WEIGHT_FILES[False]} in ~/.keras/models/.)"
    )
    # A fixed input size, so that the photograph is resized to what VGG16 was made for.
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(224, 224, 3))
    return model, False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Log VGG16's activations on one photograph.")
    p.add_argument("--image", help="any image file (default: matplotlib's grace_hopper.jpg)")
    p.add_argument("--logdir", default="logs/vgg16", help="log directory (default: logs/vgg16)")
    args = p.parse_args(argv)
    image = args.image or default_image()
    if not Path(image).is_file():
        p.error(f"--image: no such file: {image}")

    import keras

    from tb_activations import log_activations

    keras.utils.set_random_seed(0)
    model, pretrained = build_vgg16()
    logged = log_activations(
        model,
        image,
        log_dir=args.logdir,
        layers=LAYERS,
        step=0,
        preprocess=keras.applications.vgg16.preprocess_input,
    )
    weights = "ImageNet" if pretrained else "random"
    print(f"\nLogged {Path(image).name} through VGG16 ({weights} weights) to {args.logdir}/:")
    for name in logged:
        layer = model.get_layer(name)
        _, h, w, c = layer.output.shape
        print(f"  activations/{name}: {c} channels of {h}x{w}")
    print(f"\nTo look at it: tensorboard --logdir {args.logdir}, then open the Activations tab.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
