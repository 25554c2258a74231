"""Paired augmentation: one random geometric transform applied to image and mask alike (bilinear for the
image, nearest for the mask, so no new classes appear), plus colour jitter on the image only.

All ops are TensorFlow graph ops so they run inside `tf.data` on batches.
"""

import math

import tensorflow as tf

MAX_ROTATION_DEGREES = 15.0
SCALE_RANGE = (0.8, 1.3)  # >1 zooms in (a random crop), <1 zooms out (reflected border)
MAX_SHIFT = 0.1  # of the image side
BRIGHTNESS = 0.15  # in [0, 1] units
CONTRAST = (0.8, 1.2)
SATURATION = (0.8, 1.2)
HUE = 0.03


def random_affine_transforms(batch, height, width, flip=True, max_rotation=MAX_ROTATION_DEGREES,
                             scale_range=SCALE_RANGE, max_shift=MAX_SHIFT):
    """(batch, 8) projective transforms mapping output pixels to input pixels: a random horizontal flip,
    rotation, zoom and shift about the image centre."""
    angle = tf.random.uniform([batch], -max_rotation, max_rotation) * (math.pi / 180.0)
    scale = tf.exp(tf.random.uniform([batch], math.log(scale_range[0]), math.log(scale_range[1])))
    mirror = tf.where(tf.random.uniform([batch]) < 0.5, -1.0, 1.0) if flip else tf.ones([batch])
    width_f, height_f = tf.cast(width, tf.float32), tf.cast(height, tf.float32)
    shift_x = tf.random.uniform([batch], -max_shift, max_shift) * width_f
    shift_y = tf.random.uniform([batch], -max_shift, max_shift) * height_f
    center_x, center_y = (width_f - 1.0) / 2.0, (height_f - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # input = M @ (output - centre) + centre + shift, with M = rotation / scale @ diag(mirror, 1)
    a0, a1 = cos * mirror, -sin
    b0, b1 = sin * mirror, cos
    a2 = center_x + shift_x - a0 * center_x - a1 * center_y
    b2 = center_y + shift_y - b0 * center_x - b1 * center_y
    zeros = tf.zeros([batch])
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def apply_transforms(images, transforms, interpolation):
    """Warp a (B, H, W, C) float batch; borders are reflected so image and mask stay consistent there."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation=interpolation,
        fill_mode="REFLECT",
    )


def color_jitter(images):
    """Brightness, contrast, saturation and hue jitter on a (B, H, W, 3) batch in [0, 255]."""
    unit = images / 255.0
    unit = tf.map_fn(jitter_one, unit)
    return tf.clip_by_value(unit, 0.0, 1.0) * 255.0


def jitter_one(image):
    image = tf.image.random_brightness(image, BRIGHTNESS)
    image = tf.image.random_contrast(image, *CONTRAST)
    image = tf.image.random_saturation(image, *SATURATION)
    return tf.image.random_hue(image, HUE)


def augment_batch(images, masks, geometric=True, color=True):
    """Augment a batch: images (B, H, W, 3) float in [0, 255], masks (B, H, W) integer class indices.
    The same geometric transform goes to each image and its mask."""
    images = tf.cast(images, tf.float32)
    if geometric:
        shape = tf.shape(images)
        transforms = random_affine_transforms(shape[0], shape[1], shape[2])
        images = apply_transforms(images, transforms, "BILINEAR")
        mask_channel = tf.cast(masks, tf.float32)[..., None]
        masks = tf.cast(apply_transforms(mask_channel, transforms, "NEAREST")[..., 0], masks.dtype)
    if color:
        images = color_jitter(images)
    return images, masks
