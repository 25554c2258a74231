"""Users' own models: built the ways the tutorials build them, trained a few steps, saved as .keras and
legacy .h5, reloaded through `load_model_file` (safe) and read by `inspect_model`; and the files that must
be refused with a clear message (not a model, weights only, code in the model, too large)."""

import json
import zipfile

import h5py
import numpy as np
import pytest

from segdemo.errors import InputError
from segdemo.models import files as model_files
from segdemo.models.facts import inspect_model
from segdemo.models.files import check_model_config, estimated_memory_bytes, load_model_file
from tests.own_models import OWN_MODELS, lambda_marker_model, nested_lambda_marker_model, tanh_logits_unet


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OWN_MODELS))
def test_own_model_round_trips_as_keras_and_h5(name, tmp_path):
    build, (input_size, kind, layout, output_size, classes) = OWN_MODELS[name]
    model = build()
    batch = np.random.default_rng(0).uniform(0, 1, (1, *model.inputs[0].shape[1:])).astype(np.float32)
    expected = np.asarray(model(batch, training=False))
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"{name}{suffix}"
        model.save(path)
        loaded = load_model_file(path)
        np.testing.assert_allclose(np.asarray(loaded(batch, training=False)), expected, atol=1e-5)
        facts = inspect_model(loaded)
        assert (facts.input_size, facts.output_kind, facts.output_layout, facts.output_size, facts.num_classes) \
            == (input_size, kind, layout, output_size, classes), (suffix, facts)
        assert facts.input_channels == 3
        lines = facts.describe()
        assert lines[0] == f"input: {input_size[0]}x{input_size[1]} RGB (width x height)"
        assert lines[1].startswith(f"output: {classes} classes")
    if name == "half_resolution":
        assert "at half the input resolution (24x16)" in lines[1]
    if name == "raw_sigmoid":
        assert "one sigmoid per class" in lines[1]


def marker_path(tmp_path):
    return tmp_path / "marker.txt"


@pytest.mark.parametrize("builder", [lambda_marker_model, nested_lambda_marker_model])
def test_a_lambda_layer_is_refused_and_never_runs(builder, tmp_path):
    marker = marker_path(tmp_path)
    model = builder(str(marker))
    assert marker.read_text() == "ran"  # the function ran once, when the model was built
    marker.unlink()
    model.save(tmp_path / "lambda.keras")
    model.save(tmp_path / "lambda.h5")
    assert not marker.exists()
    for suffix in (".keras", ".h5"):
        refused = r"contains a Lambda layer \(layer .*\): segdemo runs no code from a model file.*--replace-layer"
        with pytest.raises(InputError, match=refused) as error:
            load_model_file(tmp_path / f"lambda{suffix}")
        assert "built-in layers" in str(error.value)
        assert not marker.exists()


def test_safe_mode_alone_refuses_the_lambda_of_a_tf_keras_2_h5(tmp_path):
    """The evidence behind model_files' docstring: Keras 3.15.1 itself refuses a tf.keras 2.x-style
    marshalled lambda in HDF5 (nested in a Sequential block), before our config check is even involved."""
    import keras
    from keras.src.utils.python_utils import func_dump

    marker = marker_path(tmp_path)
    model = nested_lambda_marker_model(str(marker))
    marker.unlink()
    path = tmp_path / "legacy.h5"
    model.save(path)
    marker_text = str(marker)
    code, defaults, closure = func_dump(lambda x: (open(marker_text, "w").write("ran"), x)[1])
    with h5py.File(path, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        for item in model_files.config_objects(config):
            if item["class_name"] == "Lambda":
                item["config"].update(function=[code, defaults, closure], function_type="lambda", module="__main__")
        file.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ValueError, match="Lambda"):
        keras.saving.load_model(path, compile=False, safe_mode=True)
    assert not marker.exists()
    with pytest.raises(InputError, match="contains a Lambda layer"):
        load_model_file(path)
    assert not marker.exists()
    keras.saving.load_model(path, compile=False, safe_mode=False)  # the file is armed: unsafe loading runs it
    assert marker.read_text() == "ran"


def test_custom_classes_and_functions_are_refused_from_the_config():
    keras_custom = {"class_name": "Functional", "config": {"layers": [
        {"module": "my_package.layers", "class_name": "Evil", "config": {"name": "evil"}, "registered_name": "my>Evil"},
    ]}}
    with pytest.raises(InputError, match="custom class my>Evil .layer 'evil'. that is not built into Keras"):
        check_model_config(keras_custom)
    function = {"class_name": "Functional", "config": {"layers": [{"module": "keras.layers", "class_name": "Conv2D",
        "registered_name": None, "config": {"name": "c", "activation": {
            "module": "builtins", "class_name": "function", "config": "soft1", "registered_name": "function"}}}]}}
    with pytest.raises(InputError, match="custom object function 'soft1'"):
        check_model_config(function)
    legacy_custom = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "Sequential", "config": {"layers": [{"class_name": "Custom>Attention", "config": {}}]}}]}}
    with pytest.raises(InputError, match="Custom>Attention"):
        check_model_config(legacy_custom)
    tf_op = {"class_name": "Functional", "config": {"layers": [{"class_name": "TFOpLambda", "config": {"name": "x"}}]}}
    with pytest.raises(InputError, match="uses a TensorFlow call as a layer"):
        check_model_config(tf_op)


def test_the_served_models_pass_the_config_check():
    paths = sorted(model_files.Path(__file__).resolve().parent.parent.joinpath("weights").glob("*.keras"))
    assert paths, "no bundled model in weights/: the check would pass on nothing"
    for path in paths:
        check_model_config(model_files.keras_archive_config(path), path.name)


def test_files_that_are_not_models_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("x.keras", "x.h5"):
        (tmp_path / name).write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        with pytest.raises(InputError, match=f"{name} is not a Keras model file"):
            load_model_file(tmp_path / name)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    (tmp_path / "photo.png").rename(tmp_path / "photo.keras")
    with pytest.raises(InputError, match="not a Keras model file"):
        load_model_file(tmp_path / "photo.keras")
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(InputError, match="not a Keras model archive"):
        load_model_file(tmp_path / "other.keras")
    with pytest.raises(InputError, match="file not found"):
        load_model_file(tmp_path / "missing.keras")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="not a TensorFlow SavedModel"):
        load_model_file(tmp_path / "folder")


def test_weights_only_files_are_refused(tmp_path):
    from keras.src.legacy.saving import legacy_h5_format

    model = lambda_free_model()
    model.save_weights(tmp_path / "w.weights.h5")
    with h5py.File(tmp_path / "legacy_weights.h5", "w") as file:  # tf.keras 2.x model.save_weights("w.h5")
        legacy_h5_format.save_weights_to_hdf5_group(file, model)
    for name in ("w.weights.h5", "legacy_weights.h5"):
        with pytest.raises(InputError, match=r"holds weights only .*segdemo needs the whole model"):
            load_model_file(tmp_path / name)


def test_a_wrong_suffix_says_how_to_rename(tmp_path):
    model = lambda_free_model()
    model.save(tmp_path / "m.keras")
    (tmp_path / "m.keras").rename(tmp_path / "zip.h5")
    with pytest.raises(InputError, match="rename it to zip.keras"):
        load_model_file(tmp_path / "zip.h5")
    model.save(tmp_path / "m.h5")
    (tmp_path / "m.h5").rename(tmp_path / "hdf.keras")
    with pytest.raises(InputError, match="rename it to hdf.h5"):
        load_model_file(tmp_path / "hdf.keras")


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    model = lambda_free_model()
    model.save(tmp_path / "m.keras")
    monkeypatch.setattr(model_files, "MAX_MODEL_BYTES", 1000)

    def never(*args, **kwargs):
        raise AssertionError("read")

    monkeypatch.setattr(model_files, "sniff_format", never)
    with pytest.raises(InputError, match="m.keras is too large .* the limit is 0 MB"):
        load_model_file(tmp_path / "m.keras")


def test_an_offline_hub_uri_is_an_input_error():
    with pytest.raises(InputError, match="hf://someone/unet could not be loaded.*HF_HUB_OFFLINE=1"):
        load_model_file("hf://someone/unet")


@pytest.mark.slow
def test_a_saved_model_folder_is_wrapped_with_its_input_shape(tmp_path):
    model = tanh_logits_unet(steps=1)
    model.export(tmp_path / "exported", verbose=False)
    loaded = load_model_file(tmp_path / "exported")
    batch = np.random.default_rng(0).uniform(-1, 1, (1, 32, 48, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded(batch)), np.asarray(model(batch)), atol=1e-5)
    facts = inspect_model(loaded)
    assert (facts.input_size, facts.output_size, facts.output_kind) == ((48, 32), (48, 32), "logits")
    assert any("SavedModel" in note for note in facts.notes)


def lambda_free_model():
    import keras

    inputs = keras.Input((16, 16, 3))
    return keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))


def test_inspect_reads_nested_and_single_channel_heads():
    import keras
    from keras import layers

    inputs = keras.Input((None, None, 3))
    head = keras.Sequential([layers.Conv2D(4, 1), layers.Activation("softmax"), layers.Dropout(0.1)])
    facts = inspect_model(keras.Model(inputs, layers.UpSampling2D(2)(head(inputs))))
    assert (facts.input_size, facts.output_kind, facts.output_size, facts.num_classes) == (None, "softmax", None, 4)
    assert facts.describe()[0].startswith("input: any size, RGB")
    gray = keras.Input((24, 40, 1))
    facts = inspect_model(keras.Model(gray, layers.Conv2D(1, 1)(gray)))
    assert (facts.input_channels, facts.output_kind, facts.num_classes) == (1, "logits_binary", 2)
    assert facts.describe()[0] == "input: 40x24 grayscale (width x height)"
    tanh = inspect_model(keras.Model(gray, layers.Conv2D(3, 1, activation="tanh")(gray)))
    assert tanh.output_kind == "logits" and "'tanh'" in tanh.notes[0]
    channels_first = keras.Input((3, 32, 32))
    with pytest.raises(InputError, match="channels-first"):
        inspect_model(keras.Model(channels_first, layers.Conv2D(2, 1)(channels_first)))


def test_memory_estimate_grows_with_the_input_size():
    import keras

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same")(inputs))
    small, large = estimated_memory_bytes(model, (32, 32)), estimated_memory_bytes(model, (64, 64))
    params = model.count_params() * 4 * model_files.WEIGHT_COPIES
    assert small == params + 32 * 32 * (3 + 2) * 4
    assert large - params == 4 * (small - params)
