"""Models as people have them, served as their authors ran them (issue 27).

    python bench/wild_models.py [--shared ../shared] [--epochs 3] [--test-limit 50] [--out runs/wild_models]

Each kind is a small U-Net trained here on the Oxford pets the way a repository's author trained it (their
channel order, pixel scaling, resize, output head, file layout: Keras 2.0 HDF5 written with h5py, Lambda layers
with stored bytecode of another Python), then described with `python -m segdemo.card` (stated options, or
`--check` on 20 labelled pairs) and served through segdemo's Segmenter. Printed per kind: the pixel agreement
of segdemo's labels with a reference prediction written the author's way in this file (at the model's own
resolution, on the test images), and the mean IoU on the test images both ways. Goal: agreement >= 0.99 for
every kind. Without ../shared, synthetic images stand in (agreement only)."""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, print_json, print_table  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from legacy_models import PY36_LAMBDA_DIV_255, write_keras2_h5  # noqa: E402

SIDE = 64
PAIRS_FOR_CHECK = 20
MEAN = np.array([0.48, 0.45, 0.40])  # replaced by the training images' own statistics
STD = np.array([0.26, 0.25, 0.26])


def pets(shared, split, limit):
    """[(RGB image, binary mask: pet 1, else 0)] of the Oxford pets subset, or synthetic blobs without it."""
    root = Path(shared) / "datasets" / "oxford-pets-subset"
    if not root.exists():
        rng = np.random.default_rng(0 if split == "trainval" else 1)
        items = []
        for _ in range(limit):
            image = rng.integers(0, 120, (96, 128, 3)).astype(np.uint8)
            mask = np.zeros((96, 128), np.uint8)
            top, left = rng.integers(0, 48), rng.integers(0, 64)
            mask[top:top + 40, left:left + 50] = 1
            image[mask == 1] += np.array([120, 60, 20], np.uint8)
            items.append((image, mask))
        return items
    names = [line.split()[0] for line in (root / "annotations" / f"{split}.txt").read_text().splitlines() if line]
    items = []
    for name in sorted(names)[:limit]:
        image = np.asarray(Image.open(root / "images" / f"{name}.jpg").convert("RGB"))
        trimap = np.asarray(Image.open(root / "annotations" / "trimaps" / f"{name}.png"))
        items.append((image, (trimap != 2).astype(np.uint8)))
    return items


def resized(image, size=SIDE, method="pil"):
    """The author's resize to the model's input: PIL's bilinear, or tf.image.resize's default."""
    if method == "tf":
        import tensorflow as tf

        return tf.image.resize(image[None].astype(np.float32), (size, size)).numpy()[0]
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), np.float32)


def unet(channels_in=3, head=None, first=None, deep=False):
    import keras

    inputs = keras.Input((SIDE, SIDE, channels_in))
    x = first(inputs) if first else inputs
    a = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    b = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(keras.layers.MaxPooling2D()(a))
    up = keras.layers.Concatenate(axis=3)([keras.layers.UpSampling2D()(b), a])
    c = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(up)
    activation, channels = head or ("sigmoid", 1)
    out = keras.layers.Conv2D(channels, 1, activation=activation, name="main")(c)
    if deep:
        aux = keras.layers.Conv2D(channels, 1, activation=activation, name="aux")(b)
        return keras.Model(inputs, [aux, out])
    return keras.Model(inputs, out)


def author_inputs(kind, image):
    """An image as the author fed it at training and inference."""
    x = resized(image, method="tf" if kind["resize"] == "tf" else "pil")
    if kind.get("gray"):
        x = np.asarray(Image.fromarray(image).convert("L").resize((SIDE, SIDE), Image.BILINEAR), np.float32)[..., None]
    if kind.get("bgr"):
        x = x[..., ::-1]
    scale = kind["scale"]
    if scale == "0..1":
        return x / 255.0
    if scale == "-1..1":
        return x / 127.5 - 1.0
    if scale == "per-image":
        x = x / 255.0
        return (x - x.mean()) / (x.std() + 1e-6)
    if scale == "mean-std":
        return (x / 255.0 - MEAN) / STD
    return x  # 0..255: the model scales (a Rescaling or Lambda first)


def author_labels(kind, output):
    """The author's mask from the model's output at its resolution."""
    output = np.asarray(output[1] if kind.get("deep") else output)[0]
    if output.shape[-1] == 1:
        return (output[..., 0] > kind.get("threshold", 0.5)).astype(np.uint8)
    return output.argmax(-1).astype(np.uint8)


KINDS = {  # name -> how its author trained, saved and described it
    "keras2-sequential-gray": dict(gray=True, scale="0..1", resize="pil", file="sequential_h5",
                                   card=["--input-scale", "0..1", "--resize", "stretch"]),
    "keras2-functional-h5": dict(scale="0..1", resize="pil", file="keras2_h5",
                                 card=["--input-scale", "0..1", "--resize", "stretch"]),
    "lambda-div255-h5": dict(scale="0..255", resize="pil", file="lambda_h5", lambda_first=True,
                             card=["--replace-layer", "lambda_in=scale:0.00392156862745098", "--resize", "stretch"]),
    "bgr-cv2": dict(bgr=True, scale="0..1", resize="pil", file="keras",
                    card=["--input-scale", "0..1", "--resize", "stretch", "--resize-filter", "antialias"],
                    check="channel_order"),
    "per-image-standardised": dict(scale="per-image", resize="pil", file="keras",
                                   card=["--channel-order", "rgb", "--resize", "stretch", "--resize-filter",
                                         "antialias"], check="input_scale"),
    "dataset-mean-std": dict(scale="mean-std", resize="tf", file="keras",
                             card=["--resize", "stretch", "--resize-filter", "bilinear", "--channel-order", "rgb"]),
    "sigmoid-white-class": dict(scale="0..1", resize="pil", file="keras", classes=["membrane", "cell"],
                                card=["--input-scale", "0..1", "--resize", "stretch"]),
    "relu-regression": dict(scale="0..1", resize="pil", file="keras", head=("relu", 1), threshold=0.4,
                            card=["--input-scale", "0..1", "--resize", "stretch", "--threshold", "0.4"]),
    "deep-supervision": dict(scale="0..1", resize="pil", file="keras", deep=True,
                             card=["--input-scale", "0..1", "--resize", "stretch", "--output", "main"]),
    "softmax-mobilenet-scale": dict(scale="-1..1", resize="pil", file="keras", head=("softmax", 2),
                                    card=["--input-scale=-1..1", "--resize", "stretch"]),
}


def build_and_train(kind, train, epochs, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    first = keras.layers.Rescaling(1 / 255.0, name="lambda_in") if kind.get("lambda_first") else None
    if kind["file"] == "sequential_h5":  # a plain convolutional net, as early Sequential models were
        model = keras.Sequential([keras.Input((SIDE, SIDE, 1 if kind.get("gray") else 3))] + [
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", kernel_initializer="he_normal")
            for _ in range(3)] + [keras.layers.Conv2D(1, 1, activation="sigmoid")])
    else:
        model = unet(1 if kind.get("gray") else 3, kind.get("head"), first, kind.get("deep"))
    x = np.stack([author_inputs(kind, image) for image, _ in train]).astype(np.float32)
    y = np.stack([np.asarray(Image.fromarray(mask).resize((SIDE, SIDE), Image.NEAREST)) for _, mask in train])
    head = kind.get("head") or ("sigmoid", 1)
    if head[1] == 1:
        loss, target = ("mse" if head[0] == "relu" else "binary_crossentropy"), y[..., None].astype(np.float32)
    else:
        loss, target = "sparse_categorical_crossentropy", y
    if kind.get("deep"):
        half = target[:, ::2, ::2]
        model.compile(keras.optimizers.Adam(2e-3), loss=[loss, loss])
        model.fit(x, [half, target], batch_size=16, epochs=epochs, verbose=0)
    else:
        model.compile(keras.optimizers.Adam(2e-3), loss=loss)
        model.fit(x, target, batch_size=16, epochs=epochs, verbose=0)
    return model


def save(kind, model, folder, name):
    if kind["file"] == "keras":
        path = folder / f"{name}.keras"
        model.save(path)
    elif kind["file"] == "sequential_h5":  # Keras <= 2.1's list-form Sequential config
        path = write_keras2_h5(model, folder / f"{name}.h5", list_form=True)
    elif kind["file"] == "keras2_h5":
        path = write_keras2_h5(model, folder / f"{name}.h5")
    else:
        path = write_keras2_h5(model, folder / f"{name}.h5", lambdas={"lambda_in": PY36_LAMBDA_DIV_255})
    return path


def write_pairs(folder, items):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    for index, (image, mask) in enumerate(items):
        Image.fromarray(image).save(folder / "images" / f"{index:03d}.png")
        Image.fromarray(mask * 255).save(folder / "masks" / f"{index:03d}.png")  # black/white, as users have them
    return folder


def miou(truth, predicted, classes=2):
    ious = []
    for index in range(classes):
        union = np.count_nonzero((truth == index) | (predicted == index))
        if union:
            ious.append(np.count_nonzero((truth == index) & (predicted == index)) / union)
    return float(np.mean(ious))


def run_kind(name, kind, train, test, folder, epochs):
    from segdemo.card import cli as card_command
    from segdemo.models.cards import ModelCard
    from segdemo.models.files import load_model_file
    from segdemo.serving.segmenter import Segmenter

    started = time.perf_counter()
    model = build_and_train(kind, train, epochs)
    path = save(kind, model, folder, name)
    args = [str(path), "--classes", *(kind.get("classes") or ["background", "pet"]), *kind["card"]]
    if kind.get("check"):
        args += ["--check", str(write_pairs(folder / f"{name}_pairs", train[:PAIRS_FOR_CHECK]))]
    card_command.main(args)
    served_path = path.with_name(path.stem + "_segdemo.keras") if "--replace-layer" in args else path
    card = ModelCard.load(served_path)
    segmenter = Segmenter(load_model_file(served_path), card)
    agree, ours_iou, theirs_iou = [], [], []
    for image, mask in test:
        output = model(author_inputs(kind, image)[None].astype(np.float32))
        theirs = author_labels(kind, output)
        prediction = segmenter.predict(image)
        ours_grid = prediction.probs.argmax(-1).astype(np.uint8)
        if ours_grid.shape != theirs.shape:
            ours_grid = np.asarray(Image.fromarray(ours_grid).resize(theirs.shape[::-1], Image.NEAREST))
        agree.append(float((ours_grid == theirs).mean()))
        theirs_full = np.asarray(Image.fromarray(theirs).resize(mask.shape[::-1], Image.NEAREST))
        theirs_iou.append(miou(mask, theirs_full))
        ours_iou.append(miou(mask, prediction.labels))
    checked = {option: getattr(card, option) for option in (kind.get("check"),) if option}
    return {"kind": name, "file": path.name, "served": served_path.name, "agreement": round(float(np.mean(agree)), 4),
            "min_agreement": round(float(np.min(agree)), 4), "miou_segdemo": round(float(np.mean(ours_iou)), 4),
            "miou_author": round(float(np.mean(theirs_iou)), 4), "checked": checked,
            "seconds": round(time.perf_counter() - started, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-limit", type=int, default=300)
    parser.add_argument("--test-limit", type=int, default=50)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--out", default=str(ROOT / "runs" / "wild_models"))
    args = parser.parse_args(argv)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    train, test = pets(args.shared, "trainval", args.train_limit), pets(args.shared, "test", args.test_limit)
    global MEAN, STD
    stacked = np.stack([resized(image) / 255.0 for image, _ in train])
    MEAN, STD = stacked.mean(axis=(0, 1, 2)), stacked.std(axis=(0, 1, 2))
    KINDS["dataset-mean-std"]["card"] += ["--input-mean", ",".join(f"{v:.6f}" for v in MEAN),
                                          "--input-std", ",".join(f"{v:.6f}" for v in STD)]
    rows = [run_kind(name, KINDS[name], train, test, folder, args.epochs) for name in args.kinds]
    print_table(rows, ["kind", "file", "agreement", "min_agreement", "miou_segdemo", "miou_author", "checked",
                       "seconds"])
    print_json({"bench": "wild_models", "train": len(train), "test": len(test), "epochs": args.epochs,
                "kinds": rows, "all_agree_0_99": all(row["agreement"] >= 0.99 for row in rows)})


if __name__ == "__main__":
    main()
