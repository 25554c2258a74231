"""Paired augmentation keeps image and mask aligned."""

import numpy as np
import tensorflow as tf

from segdemo.training.augment import augment_batch, elastic_deform, random_affine_transforms, random_crop_pair, warp
from tests.helpers import blocky_image


def mask_from_image(images):
    """A mask drawn from the image itself: class 1 where red > 127 (so it must follow every warp)."""
    return (np.asarray(images)[..., 0] > 127).astype(np.uint8)


def test_mask_drawn_from_image_stays_aligned(rng):
    images = np.stack([blocky_image(rng) for _ in range(8)])
    masks = mask_from_image(images)
    tf.random.set_seed(3)
    out_images, out_masks = augment_batch(tf.constant(images), tf.constant(masks), geometric=True, color=False)
    out_images, out_masks = out_images.numpy(), out_masks.numpy()
    assert out_masks.dtype == np.uint8 and set(np.unique(out_masks)) <= {0, 1}  # nearest: no new classes
    changed = (out_masks != masks).mean()
    agreement = (mask_from_image(out_images) == out_masks).mean()
    assert changed > 0.1  # the transform did move things
    assert agreement > 0.97  # only bilinear block edges may disagree


def test_misaligned_transform_would_be_caught(rng):
    """The alignment check can fail: warping only the mask breaks agreement."""
    images = np.stack([blocky_image(rng) for _ in range(8)])
    masks = mask_from_image(images)
    _, warped_masks = augment_batch(tf.constant(images), tf.constant(masks), color=False)
    assert (mask_from_image(images) == warped_masks.numpy()).mean() < 0.9


def test_color_jitter_touches_image_only(rng):
    images = np.stack([blocky_image(rng) for _ in range(4)])
    masks = mask_from_image(images)
    out_images, out_masks = augment_batch(tf.constant(images), tf.constant(masks), geometric=False, color=True)
    assert np.array_equal(out_masks.numpy(), masks)
    assert not np.allclose(out_images.numpy(), images)
    assert out_images.numpy().min() >= 0 and out_images.numpy().max() <= 255


def test_identity_parameters_give_identity_transform():
    transforms = random_affine_transforms(2, 10, 20, flip=False, max_rotation=0.0, scale_range=(1.0, 1.0),
                                          max_shift=0.0).numpy()
    np.testing.assert_allclose(transforms, [[1, 0, 0, 0, 1, 0, 0, 0]] * 2, atol=1e-6)


def test_elastic_deformation_moves_image_and_mask_alike(rng):
    images = np.stack([blocky_image(rng) for _ in range(4)]).astype(np.float32)
    masks = mask_from_image(images)
    tf.random.set_seed(5)
    out_images, out_masks = elastic_deform(tf.constant(images), tf.constant(masks))
    out_images, out_masks = out_images.numpy(), out_masks.numpy()
    assert out_masks.dtype == np.uint8 and set(np.unique(out_masks)) <= {0, 1}
    assert (out_masks != masks).mean() > 0.02  # it deformed
    assert (mask_from_image(out_images) == out_masks).mean() > 0.97  # and kept the pair aligned


def test_elastic_deformation_of_mask_alone_would_be_caught(rng):
    images = np.stack([blocky_image(rng) for _ in range(4)]).astype(np.float32)
    masks = mask_from_image(images)
    tf.random.set_seed(5)
    _, out_masks = elastic_deform(tf.constant(images), tf.constant(masks))
    assert (mask_from_image(images) == out_masks.numpy()).mean() < 0.97


def test_zero_displacement_warp_is_identity(rng):
    images = tf.constant(np.stack([blocky_image(rng)]).astype(np.float32))
    still = tf.zeros(list(images.shape[:3]) + [2])
    np.testing.assert_allclose(warp(images, still, "BILINEAR").numpy(), images.numpy())
    np.testing.assert_allclose(warp(images, still, "NEAREST").numpy(), images.numpy())


def test_random_crop_takes_the_same_window(rng):
    image = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    mask = (image[..., 0] > 127).astype(np.uint8)
    crop_image, crop_mask = random_crop_pair(tf.constant(image), tf.constant(mask), 8, 12)
    assert crop_image.shape == (8, 12, 3) and crop_mask.shape == (8, 12) and crop_mask.dtype == tf.uint8
    assert np.array_equal(mask_from_image(crop_image.numpy()), crop_mask.numpy())
