"""Users' own models, trained the tutorials' ways on Oxford pets: does segdemo serve them as their authors
evaluate them? One run trains six small U-Nets (a few epochs each), describes each with `segdemo.card`, and
scores it twice on the same test images at their full resolution.

    python bench/own_models.py [--shared ../shared] [--epochs 6] [--train-limit 300] [--test-limit 50]
        [--quick] [--out runs/own_models]

The six models (after ../shared/seeds; the training code below does each one the tutorial's way):
1. raw_sigmoid (000): raw 0..255 RGB, 160x96 (width x height), stretched with PIL's bilinear resize, one
   sigmoid per class, binary cross-entropy on one-hot masks, BatchNorm after each convolution
2. letterbox_tanh (001): inputs / 127.5 - 1, 128x128 letterboxed with PIL BICUBIC on grey 128 (the
   tutorial's `resize_image`), logits, sparse CE from logits; saved as a legacy `.h5`
3. tf_tutorial (002/004): inputs / 255 after `tf.image.resize` (bilinear, no antialias) to 128x128, a nested
   encoder Model and pix2pix upsample blocks (nested Sequential), logits
4. flat_softmax: a Rescaling(1/255) layer inside the model (raw 0..255 in), 128x96, PIL bilinear,
   Reshape((h*w, 3)) + softmax, sparse CE on flattened labels
5. binary_sigmoid: pet (with its border) vs the rest, ImageNet mean/std scaling, 128x128 `tf.image.resize`,
   one sigmoid channel, binary cross-entropy
6. half_resolution: [0, 1] inputs, 128x128 PIL bilinear, logits on a 64x64 grid (no final upsampling),
   trained on half-size masks

For each: `segdemo.card MODEL --classes ... --check DIR` (10 trainval pairs, the preprocessing left unstated)
and whether its pick is how the model was trained; then the card written with the true preprocessing, and
- segdemo: `evaluate(Segmenter(load_model_file(path), ModelCard.load(path)), pairs)` (what
  `python -m segdemo.evaluate --model PATH --data DIR --split test` runs), mIoU over the test images;
- reference: the author's own evaluation, written here without segdemo's serving code: PIL load, the
  author's resize and scaling, `model.predict`, the raw output resized bilinearly to the image's size with
  `tf.image.resize` (as segdemo resizes probabilities; the letterbox's part cropped first), then argmax (0.5
  threshold for the single sigmoid), a confusion matrix, mIoU;
- ms/image: p50 of `Segmenter.predict` on one fixed test image, beside the bundled `pets` model's in the same
  run (different architectures and parameter counts: the ratio is not like for like).
Models, cards and the --check/test folders go under --out (git-ignored runs/); a model whose file exists is not
trained again. Prints a table, then one JSON line.
"""

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from common import ROOT, percentiles, print_json, print_table, time_calls  # noqa: E402
from PIL import Image  # noqa: E402

CLASSES = ["pet", "background", "border"]  # trimap 1, 2, 3 minus 1
BINARY_CLASSES = ["background", "pet"]  # model 5: pet with its border (1) vs the rest (0)
IGNORE = 255
CHECK_PAIRS = 10
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

# name, seed, file, input (w, h), true card preprocessing, the author's resize, output, target, builder
MODELS = [
    dict(name="raw_sigmoid", seed="000", file="raw_sigmoid.keras", size=(160, 96),
         card=("0..255", "stretch", "antialias"), author_resize="pil_bilinear", target="onehot",
         builder="raw_sigmoid"),
    dict(name="letterbox_tanh", seed="001", file="letterbox_tanh.h5", size=(128, 128),
         card=("-1..1", "letterbox", "antialias"), author_resize="pil_bicubic_letterbox", target="sparse",
         builder="tanh_logits"),
    dict(name="tf_tutorial", seed="002/004", file="tf_tutorial.keras", size=(128, 128),
         card=("0..1", "stretch", "bilinear"), author_resize="tf_bilinear", target="sparse", builder="pix2pix"),
    dict(name="flat_softmax", seed="-", file="flat_softmax.keras", size=(128, 96),
         card=("0..255", "stretch", "antialias"), author_resize="pil_bilinear", target="flat",
         builder="flat_softmax"),
    dict(name="binary_sigmoid", seed="-", file="binary_sigmoid.keras", size=(128, 128),
         card=("imagenet", "stretch", "bilinear"), author_resize="tf_bilinear", target="binary",
         builder="binary_sigmoid"),
    dict(name="half_resolution", seed="-", file="half_resolution.keras", size=(128, 128),
         card=("0..1", "stretch", "antialias"), author_resize="pil_bilinear", target="half",
         builder="half_resolution"),
]


# --- data, read the authors' way (PIL, trimap - 1) ------------------------------------------------------------


def read_image(path):
    return Image.open(path).convert("RGB")


def read_trimap(path, binary=False):
    """HxW uint8 class indices: pet 0, background 1, border 2; binary: pet and border 1, background 0."""
    labels = np.asarray(Image.open(path)).astype(np.int64) - 1
    if binary:
        return np.where(labels == 1, 0, 1).astype(np.uint8)
    return labels.astype(np.uint8)


def split_names(pets, split):
    return [line.split()[0] for line in (pets / "annotations" / f"{split}.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def pair_paths(pets, name):
    return pets / "images" / f"{name}.jpg", pets / "annotations" / "trimaps" / f"{name}.png"


def letterbox(image, size, fill, resample):
    """Tutorial 001's `resize_image`: scale by min(w/iw, h/ih), paste centred on a `fill` canvas; also
    returns (nw, nh)."""
    iw, ih = image.size
    w, h = size
    scale = min(w / iw, h / ih)
    nw, nh = int(iw * scale), int(ih * scale)
    canvas = Image.new(image.mode, size, fill)
    canvas.paste(image.resize((nw, nh), resample), ((w - nw) // 2, (h - nh) // 2))
    return canvas, nw, nh


def author_input(image, spec):
    """A PIL RGB image -> (float32 h x w x 3 as the author feeds the model, (nw, nh) of a letterbox or None)."""
    import tensorflow as tf

    size, kind = spec["size"], spec["author_resize"]
    box = None
    if kind == "pil_bilinear":
        pixels = np.asarray(image.resize(size, Image.BILINEAR), np.float32)
    elif kind == "pil_bicubic_letterbox":
        canvas, nw, nh = letterbox(image, size, (128, 128, 128), Image.BICUBIC)
        pixels, box = np.asarray(canvas, np.float32), (nw, nh)
    else:  # the TF tutorial's tf.data map: tf.image.resize (bilinear, antialias=False), then scale
        pixels = tf.image.resize(np.asarray(image), (size[1], size[0])).numpy()
    scale = spec["card"][0]  # how the author scales (4: its Rescaling layer does)
    if scale == "0..1":
        pixels = pixels / 255.0
    elif scale == "-1..1":
        pixels = pixels / 127.5 - 1.0
    elif scale == "imagenet":
        pixels = (pixels / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return pixels.astype(np.float32), box


def author_target(labels, spec):
    """HxW class indices -> the training target at the model's size, the author's way (nearest)."""
    size = spec["size"]
    mask = Image.fromarray(labels)
    if spec["author_resize"] == "pil_bicubic_letterbox":
        target = np.asarray(letterbox(mask, size, 1, Image.NEAREST)[0])  # padding is background
    elif spec["target"] == "half":
        target = np.asarray(mask.resize((size[0] // 2, size[1] // 2), Image.NEAREST))
    else:
        target = np.asarray(mask.resize(size, Image.NEAREST))
    if spec["target"] == "onehot":
        return np.eye(len(CLASSES), dtype=np.float32)[target]
    if spec["target"] == "flat":
        return target.reshape(-1).astype(np.int32)
    if spec["target"] == "binary":
        return target.astype(np.float32)[..., None]
    return target.astype(np.int32)


# --- the models, built as the tutorials build them --------------------------------------------------------------


def conv_block(x, filters, batch_norm=False):
    from keras import layers

    for _ in range(2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm)(x)
        if batch_norm:  # 000: the Conv2D -> BatchNormalization -> Activation "sandwich"
            x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    return x


def unet_body(x, filters=(8, 16, 32), batch_norm=False, stop_at_half=False):
    """Classic U-Net: conv blocks, MaxPooling down, UpSampling + concatenated skips up; full-resolution
    features (half-resolution with `stop_at_half`)."""
    from keras import layers

    skips = []
    for width in filters[:-1]:
        x = conv_block(x, width, batch_norm)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = conv_block(x, filters[-1], batch_norm)
    ups = list(zip(reversed(filters[:-1]), reversed(skips)))
    if stop_at_half:
        ups = ups[:-1]
    for width, skip in ups:
        x = layers.Concatenate()([layers.UpSampling2D(2)(x), skip])
        x = conv_block(x, width, batch_norm)
    return x


def build(spec):
    import keras
    from keras import layers

    width, height = spec["size"]
    inputs = keras.Input((height, width, 3))
    kind = spec["builder"]
    if kind == "raw_sigmoid":
        outputs = layers.Conv2D(3, 1, activation="sigmoid")(unet_body(inputs, batch_norm=True))
    elif kind == "tanh_logits":
        outputs = layers.Conv2D(3, 1)(unet_body(inputs))
    elif kind == "pix2pix":
        outputs = pix2pix_head(inputs)
    elif kind == "flat_softmax":
        x = layers.Conv2D(3, 1)(unet_body(layers.Rescaling(1 / 255)(inputs)))
        outputs = layers.Activation("softmax")(layers.Reshape((height * width, 3))(x))
    elif kind == "binary_sigmoid":
        outputs = layers.Conv2D(1, 1, activation="sigmoid")(unet_body(inputs))
    else:  # half_resolution
        outputs = layers.Conv2D(3, 1)(unet_body(inputs, stop_at_half=True))
    return keras.Model(inputs, outputs, name=spec["name"])


def pix2pix_head(inputs):
    """002/004: an encoder keras.Model with several skip outputs (MobileNetV2's role; trained here, there
    is no pretrained one), pix2pix `upsample` blocks (Conv2DTranspose + BatchNorm + ReLU as a Sequential),
    concatenated skips, a last Conv2DTranspose to logits at full size."""
    import keras
    from keras import layers

    encoder_input = keras.Input(inputs.shape[1:])
    x, skips = encoder_input, []
    for width in (8, 16, 24, 32):  # 1/2, 1/4, 1/8, 1/16
        x = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)
        x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        skips.append(x)
    encoder = keras.Model(encoder_input, skips, name="down_stack")
    outs = encoder(inputs)
    x = outs[-1]
    for width, skip in zip((24, 16, 8), reversed(outs[:-1])):
        block = keras.Sequential([layers.Conv2DTranspose(width, 3, strides=2, padding="same", use_bias=False),
                                  layers.BatchNormalization(), layers.ReLU()], name=f"upsample_{width}")
        x = layers.Concatenate()([block(x), skip])
    return layers.Conv2DTranspose(3, 3, strides=2, padding="same")(x)


def loss_of(spec):
    import keras

    if spec["target"] in ("onehot", "binary"):
        return "binary_crossentropy"
    if spec["target"] == "flat":
        return "sparse_categorical_crossentropy"
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def train(spec, train_images, train_labels, epochs, path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = np.stack([author_input(image, spec)[0] for image in train_images])
    targets = np.stack([author_target(labels, spec) for labels in train_labels])
    model = build(spec)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss_of(spec))
    started = time.perf_counter()
    history = model.fit(inputs, targets, batch_size=8, epochs=epochs, shuffle=True, verbose=0)
    seconds = time.perf_counter() - started
    model.save(path)
    return seconds, [round(float(v), 4) for v in history.history["loss"]]


# --- the reference evaluation, the author's way ---------------------------------------------------------------


def author_labels(model, image, spec):
    """Full-resolution class indices the author's way: their preprocessing, model.predict, the raw output
    (letterbox part) resized bilinearly to the image's size, argmax (or p > 0.5)."""
    import tensorflow as tf

    pixels, box = author_input(image, spec)
    output = model.predict(pixels[None], verbose=0)[0]
    width, height = spec["size"]
    if spec["target"] == "flat":
        output = output.reshape(height, width, -1)
    if box is not None:  # 001's predict: keep the letterboxed image's part
        nw, nh = box
        top, left = (height - nh) // 2, (width - nw) // 2
        output = output[top:top + nh, left:left + nw]
    full = tf.image.resize(output, (image.size[1], image.size[0]), method="bilinear").numpy()
    if spec["target"] == "binary":
        return (full[..., 0] > 0.5).astype(np.uint8)
    return full.argmax(-1).astype(np.uint8)


def confusion(truth, predicted, count):
    truth, predicted = truth.reshape(-1).astype(np.int64), predicted.reshape(-1).astype(np.int64)
    keep = truth < count
    return np.bincount(truth[keep] * count + predicted[keep], minlength=count * count).reshape(count, count)


def mean_iou(matrix):
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]))


def reference_miou(model, spec, items):
    count = 2 if spec["target"] == "binary" else 3
    matrix = np.zeros((count, count), np.int64)
    for image, labels in items:
        matrix += confusion(labels, author_labels(model, image, spec), count)
    return mean_iou(matrix)


# --- segdemo's side ---------------------------------------------------------------------------------------------


def write_pairs(folder, names, pets, binary):
    """images/ + masks/ (class-index PNGs) of `names`, for --check and the binary task's evaluation."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for name in names:
        image_path, mask_path = pair_paths(pets, name)
        target = folder / "images" / f"{name}.png"
        if not target.exists():
            read_image(image_path).save(target)
            Image.fromarray(read_trimap(mask_path, binary)).save(folder / "masks" / f"{name}.png")
    return folder


def run_card(argv):
    """segdemo.card.main(argv) with its printout captured: (stdout, stderr)."""
    from segdemo.card import cli as card

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            card.main(argv)
    except SystemExit as error:
        raise SystemExit(f"segdemo.card {' '.join(argv)} failed: {error}\n{out.getvalue()}{err.getvalue()}") from None
    return out.getvalue(), err.getvalue()


def check_margin(stdout):
    """Mean IoU by which --check's best choice led the second, from its table."""
    scores = []
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 4:
            try:
                scores.append(float(parts[0]))
            except ValueError:
                continue
    return round(scores[0] - scores[1], 4) if len(scores) > 1 else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-limit", type=int, default=300, help="trainval pairs to train on")
    parser.add_argument("--test-limit", type=int, default=50, help="test pairs to evaluate on")
    parser.add_argument("--runs", type=int, default=20, help="timed Segmenter.predict calls per model")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 16 pairs, 1 epoch, 5 test images")
    parser.add_argument("--out", default=None, help="models, cards and data (default runs/own_models)")
    parser.add_argument("--models", nargs="*", default=None, help="only these (names from the list above)")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.train_limit, args.test_limit, args.runs = 1, 16, 5, 5
    out = Path(args.out or ROOT / "runs" / ("own_models_quick" if args.quick else "own_models"))
    out.mkdir(parents=True, exist_ok=True)
    pets = Path(args.shared) / "datasets" / "oxford-pets-subset"
    started = time.perf_counter()

    from segdemo.data.pairs import find_pairs
    from segdemo.errors import InputError
    from segdemo.models.cards import ModelCard
    from segdemo.models.files import load_model_file
    from segdemo.serving.registry import get_segmenter
    from segdemo.serving.segmenter import Segmenter
    from segdemo.training.evaluation import evaluate

    train_names = split_names(pets, "trainval")
    test_names = split_names(pets, "test")[: args.test_limit]
    check_names = train_names[:CHECK_PAIRS]
    check_dirs = {False: write_pairs(out / "check_pairs", check_names, pets, False),
                  True: write_pairs(out / "check_pairs_binary", check_names, pets, True)}
    binary_test = write_pairs(out / "test_binary", test_names, pets, True)
    oxford_test = find_pairs(pets, "test").pairs[: args.test_limit]
    assert [pair.name for pair in oxford_test] == test_names
    binary_pairs = find_pairs(binary_test).pairs
    by_name = {pair.name: pair for pair in binary_pairs}
    binary_pairs = [by_name[name] for name in test_names]

    train_images = train_labels = None
    test_images = [read_image(pair_paths(pets, name)[0]) for name in test_names]
    fixed = np.asarray(test_images[0])  # the image every model is timed on
    pets_segmenter = get_segmenter("pets")
    pets_ms = percentiles(time_calls(lambda: pets_segmenter.predict(fixed), args.runs))["p50_ms"]
    pets_size = pets_segmenter.size
    pets_params = pets_segmenter.model.count_params()

    rows, results = [], []
    specs = [spec for spec in MODELS if not args.models or spec["name"] in args.models]
    for spec in specs:
        binary = spec["target"] == "binary"
        path = out / spec["file"]
        train_seconds, losses = None, None
        if not path.exists():
            if train_images is None:
                train_images, train_labels = [], []
                for name in train_names[: args.train_limit]:
                    image_path, mask_path = pair_paths(pets, name)
                    train_images.append(read_image(image_path))
                    train_labels.append(read_trimap(mask_path))
            labels = [np.where(lab == 1, 0, 1).astype(np.uint8) for lab in train_labels] if binary else train_labels
            print(f"training {spec['name']} ({args.epochs} epochs, {len(train_images)} pairs)", flush=True)
            train_seconds, losses = train(spec, train_images, labels, args.epochs, path)
        card_classes = ["--classes", "pet"] if binary else ["--classes", *CLASSES]
        check_out, check_err = run_card([str(path), *card_classes, "--check", str(check_dirs[binary])])
        picked = ModelCard.load(path)
        pick = (picked.input_scale, picked.resize, picked.resize_filter)
        truth = spec["card"]
        # "--input-scale=-1..1": argparse reads a separate "-1..1" as an option (see docs/own_models.md)
        run_card([str(path), *card_classes, f"--input-scale={truth[0]}", "--resize", truth[1],
                  "--resize-filter", truth[2]])
        model = load_model_file(path)
        card = ModelCard.load(path)
        segmenter = Segmenter(model, card)
        segdemo = evaluate(segmenter, binary_pairs if binary else oxford_test)
        reference = reference_miou(model, spec,
                                   [(image, read_trimap(pair_paths(pets, name)[1], binary))
                                    for image, name in zip(test_images, test_names)])
        ms = percentiles(time_calls(lambda s=segmenter: s.predict(fixed), args.runs))["p50_ms"]
        megapixels = spec["size"][0] * spec["size"][1] / 1e6
        extra = {}
        if binary:  # the Oxford folder itself, as `segdemo.evaluate --data` would read it: refused, with why
            try:
                extra["segdemo_miou_on_oxford_trimaps"] = evaluate(segmenter, oxford_test[:20])["miou"]
            except InputError as error:
                extra["segdemo_on_oxford_trimaps"] = str(error)
        difference = abs(segdemo["miou"] - reference)
        result = {
            "model": spec["name"], "seed": spec["seed"], "file": spec["file"], "params": model.count_params(),
            "input_wh": list(spec["size"]), "output": card.output, "output_layout": card.output_layout,
            "output_size": card.output_size, "truth": list(truth), "check_pick": list(pick),
            "check_scale_right": pick[0] == truth[0], "check_all_right": pick == truth,
            "check_margin": check_margin(check_out), "check_warnings": [line for line in check_err.splitlines()
                                                                         if line.startswith("warning")],
            "segdemo_miou": segdemo["miou"], "reference_miou": round(reference, 4),
            "difference": round(difference, 4), "within_0.01": difference <= 0.01, "test_images": segdemo["images"],
            "ms_per_image": ms, "ms_per_input_mp": round(ms / megapixels, 1), "ratio_to_pets": round(ms / pets_ms, 2),
            "train_seconds": None if train_seconds is None else round(train_seconds, 1), "train_loss": losses, **extra}
        results.append(result)
        rows.append({
            "model": spec["name"], "format": Path(spec["file"]).suffix, "params": result["params"],
            "input": f"{spec['size'][0]}x{spec['size'][1]}", "segdemo mIoU": f"{segdemo['miou']:.4f}",
            "reference mIoU": f"{reference:.4f}", "|diff|": f"{difference:.4f}",
            "--check pick": "/".join(pick), "right?": ("yes" if pick == truth else
                                                     "scale yes" if pick[0] == truth[0] else "no"),
            "ms/image": f"{ms:.1f}", "ms/MP": f"{ms / megapixels:.0f}", "x pets": f"{ms / pets_ms:.2f}"})
        print(f"{spec['name']}: segdemo {segdemo['miou']:.4f}, reference {reference:.4f}, check {pick} "
              f"(true {truth}), {ms:.1f} ms", flush=True)

    pets_mp = pets_size[0] * pets_size[1] / 1e6
    rows.append({"model": "pets (bundled)", "format": ".keras", "params": pets_params,
                 "input": f"{pets_size[0]}x{pets_size[1]}", "ms/image": f"{pets_ms:.1f}",
                 "ms/MP": f"{pets_ms / pets_mp:.0f}", "x pets": "1.00"})
    print()
    print_table(rows, ["model", "format", "params", "input", "segdemo mIoU", "reference mIoU", "|diff|",
                       "--check pick", "right?", "ms/image", "ms/MP", "x pets"])
    print(f"test images: {len(test_names)} at full resolution; timed on {test_names[0]} "
          f"({fixed.shape[1]}x{fixed.shape[0]}); --check on {len(check_names)} trainval pairs")
    print_json({
        "bench": "own_models", "epochs": args.epochs, "train_pairs": min(args.train_limit, len(train_names)),
        "test_images": len(test_names), "check_pairs": len(check_names), "models": results,
        "pets": {"params": pets_params, "input_wh": list(pets_size), "ms_per_image": pets_ms,
                 "ms_per_input_mp": round(pets_ms / pets_mp, 1)},
        "all_within_0.01": all(r["within_0.01"] for r in results),
        "check_scale_right": sum(r["check_scale_right"] for r in results),
        "check_all_right": sum(r["check_all_right"] for r in results),
        "wall_seconds": round(time.perf_counter() - started, 1), "out": str(out)})
    (out / "result.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
