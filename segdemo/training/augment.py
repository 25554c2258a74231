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
ELASTIC_GRID = 3  # the U-Net paper: random displacements on a coarse 3x3 grid ...
ELASTIC_SIGMA = 10.0  # ... with 10 px standard deviation, interpolated bicubically to every pixel


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


def random_displacements(batch, height, width, grid=ELASTIC_GRID, sigma=ELASTIC_SIGMA):
    """(B, H, W, 2) smooth per-pixel (dy, dx) displacement fields: Gaussian vectors on a coarse grid,
    upsampled bicubically."""
    coarse = tf.random.normal([batch, grid, grid, 2], stddev=sigma)
    return tf.image.resize(coarse, tf.stack([height, width]), method="bicubic")


def warp(images, displacements, interpolation):
    """Sample (B, H, W, C) images at (y + dy, x + dx): "BILINEAR" for images, "NEAREST" for masks (no new
    classes). Coordinates outside are mirrored back inside (like the affine transforms' REFLECT)."""
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    grid_y, grid_x = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32),
                                 indexing="ij")
    y = reflect(grid_y[None] + displacements[..., 0], tf.cast(height - 1, tf.float32))
    x = reflect(grid_x[None] + displacements[..., 1], tf.cast(width - 1, tf.float32))
    batch_index = tf.broadcast_to(tf.range(shape[0])[:, None, None], tf.shape(y))

    def gather(yy, xx):
        return tf.gather_nd(images, tf.stack([batch_index, tf.cast(yy, tf.int32), tf.cast(xx, tf.int32)], -1))

    if interpolation == "NEAREST":
        return gather(tf.round(y), tf.round(x))
    y0, x0 = tf.floor(y), tf.floor(x)
    y1 = tf.minimum(y0 + 1.0, tf.cast(height - 1, tf.float32))
    x1 = tf.minimum(x0 + 1.0, tf.cast(width - 1, tf.float32))
    wy, wx = (y - y0)[..., None], (x - x0)[..., None]
    top = gather(y0, x0) * (1.0 - wx) + gather(y0, x1) * wx
    bottom = gather(y1, x0) * (1.0 - wx) + gather(y1, x1) * wx
    return top * (1.0 - wy) + bottom * wy


def reflect(coordinates, last):
    """Mirror coordinates into [0, last] (displacements are far smaller than the image)."""
    coordinates = tf.abs(coordinates)
    return tf.clip_by_value(last - tf.abs(last - coordinates), 0.0, last)


def elastic_deform(images, masks, sigma=ELASTIC_SIGMA):
    """The U-Net paper's elastic deformation: one smooth random field per example, applied to the image
    (bilinear) and its mask (nearest) alike."""
    shape = tf.shape(images)
    displacements = random_displacements(shape[0], shape[1], shape[2], sigma=sigma)
    warped_masks = warp(tf.cast(masks, tf.float32)[..., None], displacements, "NEAREST")[..., 0]
    return warp(images, displacements, "BILINEAR"), tf.cast(warped_masks, masks.dtype)


def random_crop_pair(image, mask, height, width):
    """The same random height x width window of an (H, W, 3) image and its (H, W) mask."""
    stacked = tf.concat([tf.cast(image, tf.float32), tf.cast(mask, tf.float32)[..., None]], axis=-1)
    cropped = tf.image.random_crop(stacked, [height, width, 4])
    return cropped[..., :3], tf.cast(cropped[..., 3], mask.dtype)


def augment_batch(images, masks, geometric=True, color=True, elastic=False):
    """Augment a batch: images (B, H, W, 3) float in [0, 255], masks (B, H, W) integer class indices.
    The same geometric transform (and elastic deformation, when on) goes to each image and its mask."""
    images = tf.cast(images, tf.float32)
    if elastic:
        images, masks = elastic_deform(images, masks)
    if geometric:
        shape = tf.shape(images)
        transforms = random_affine_transforms(shape[0], shape[1], shape[2])
        images = apply_transforms(images, transforms, "BILINEAR")
        mask_channel = tf.cast(masks, tf.float32)[..., None]
        masks = tf.cast(apply_transforms(mask_channel, transforms, "NEAREST")[..., 0], masks.dtype)
    if color:
        images = color_jitter(images)
    return images, masks
