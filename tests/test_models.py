"""U-Net factories: shapes, configurability, encoder weight loading by layer name."""

import h5py
import numpy as np
import pytest

from segdemo.models.architectures import (
    MOBILENET_H5_GROUP,
    build_mobilenet_encoder,
    build_mobilenet_unet,
    build_model,
    build_unet,
    load_mobilenet_weights,
    set_encoder_trainable,
)


@pytest.mark.parametrize("depth,base_filters,size", [(2, 4, 32), (3, 8, 48), (4, 4, 64)])
def test_unet_outputs_logits_at_input_resolution(depth, base_filters, size):
    model = build_unet(num_classes=5, depth=depth, base_filters=base_filters, dropout=0.1)
    out = model.predict(np.zeros((2, size, size, 3), np.float32), verbose=0)
    assert out.shape == (2, size, size, 5)
    pools = [layer for layer in model.layers if "pool" in layer.name]
    assert len(pools) == depth
    assert any("concat" in layer.name for layer in model.layers)  # skip connections
    assert any(type(layer).__name__ == "Conv2DTranspose" for layer in model.layers)


def test_unet_conv_bn_relu_blocks():
    model = build_unet(num_classes=2, depth=2, base_filters=4)
    kinds = [type(layer).__name__ for layer in model.layers]
    first = kinds.index("Conv2D")
    assert kinds[first: first + 3] == ["Conv2D", "BatchNormalization", "ReLU"]


def test_mobilenet_unet_any_multiple_of_32():
    model = build_mobilenet_unet(num_classes=3, decoder_filters=(16, 8, 8, 8))
    for height, width in [(64, 64), (96, 160)]:
        assert model.predict(np.zeros((1, height, width, 3), np.float32), verbose=0).shape == (1, height, width, 3)


def test_encoder_weights_load_by_layer_name(tmp_path):
    """Write an encoder's weights in the legacy HDF5 layout of the shared file, load into a fresh one."""
    source = build_mobilenet_encoder(64)
    for variable in source.weights[:6]:
        variable.assign(np.random.default_rng(1).normal(size=variable.shape).astype("float32"))
    path = tmp_path / "mobilenet.h5"
    with h5py.File(path, "w") as h5:
        group = h5.create_group(MOBILENET_H5_GROUP)
        for layer in source.layers:
            for variable in layer.weights:
                group.create_dataset(f"{layer.name}/{layer.name}/{variable.name}:0", data=variable.numpy())
    target = build_mobilenet_unet(num_classes=2, input_size=64, encoder_weights=str(path))
    loaded = target.get_layer("encoder").weights
    for expected, actual in zip(source.weights, loaded):
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())
    with pytest.raises(ValueError, match="has no group"):
        with h5py.File(tmp_path / "empty.h5", "w"):
            pass
        load_mobilenet_weights(source, tmp_path / "empty.h5")


def test_freezing_the_encoder():
    model = build_mobilenet_unet(num_classes=2, decoder_filters=(8, 8, 8, 8))
    total = len(model.trainable_weights)
    set_encoder_trainable(model, False)
    assert 0 < len(model.trainable_weights) < total
    set_encoder_trainable(model, True)
    assert len(model.trainable_weights) == total


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("segformer", 2)
