"""Synthetic shapes: a seeded, offline stand-in for Oxford-IIIT Pets.

One shape per image (a circle, a square or a triangle) on a textured background, with
everything the three tasks of the books need:

    train, test = shapes.load_data(num_train=2000, num_test=500, image_size=64, seed=0)
    train.images   uint8 (n, size, size, 3)       the pictures
    train.labels   int64 (n,)                     0 circle, 1 square, 2 triangle (CLASS_NAMES)
    train.boxes    int64 (n, 4)                   (ymin, xmin, ymax, xmax), pixels, ymax/xmax exclusive
    train.masks    uint8 (n, size, size)          trimap, as Oxford Pets' after subtracting 1:
                                                  0 foreground, 1 background, 2 contour

Geometry. A shape is defined in continuous pixel coordinates (pixel (i, j) has its center
at (i + 0.5, j + 0.5)); a pixel belongs to the shape when its center is inside. Every
shape pixel is painted in the shape's colour, and the masks come from the same test, so
mask and picture agree pixel for pixel:

    contour     shape pixels whose center lies within `contour_width` pixels of the outline
                (a band of 1 to 2 pixels on the inner side of the edge, for the default 1.5)
    foreground  the other shape pixels
    background  every pixel outside the shape

The box is the tightest box around the shape pixels (foreground and contour), so the shape
touches all four of its sides: rows ymin..ymax-1 and columns xmin..xmax-1.

Each image draws, from its own generator: the class (uniformly); the diameter of the
shape's circumscribed circle, between min_size and max_size times the image side; a center
that keeps that circle (so the whole shape, whatever its rotation) inside the image; a
rotation for squares and triangles (equilateral); a background made of a linear gradient
between two random colours, faint stripes of random frequency and direction, and pixel
noise; a shape colour at least MIN_CONTRAST (Euclidean RGB distance) away from every colour of
the gradient, so the shape always stands out (stripes add at most 15 to each channel,
noise has a standard deviation of 6).

Seeds. Image i of a part is generated from numpy.random.default_rng([seed, part, i]),
part 0 for "train", 1 for "test" and 2 for "validation" (generate(..., part="validation"),
what the training jobs watch during training): the same seed gives bit-identical arrays,
each part is drawn from a stream of its own (never a continuation of another), and a
smaller n gives a prefix of a larger n.
"""

import numpy as np

__all__ = ["load_data", "generate", "ShapesData", "CLASS_NAMES", "MIN_CONTRAST", "generate_scenes", "load_scenes",
           "ShapesScenes"]

CLASS_NAMES = ["circle", "square", "triangle"]
CIRCLE, SQUARE, TRIANGLE = 0, 1, 2

# Trimap values (Oxford Pets' 1, 2, 3, less 1, as in Chollet's segmentation example).
FOREGROUND, BACKGROUND, CONTOUR = 0, 1, 2

MIN_CONTRAST = 110.0  # smallest RGB distance between the shape colour and the background gradient
_PARTS = {"train": 0, "test": 1, "validation": 2}


class ShapesData:
    """One part (train or test) of the shapes dataset: arrays of the same length n.

    images uint8 (n, size, size, 3); labels int64 (n,); boxes int64 (n, 4) as
    (ymin, xmin, ymax, xmax) with ymax, xmax exclusive; masks uint8 (n, size, size) trimap
    (0 foreground, 1 background, 2 contour); class_names the names of labels 0, 1, 2.
    """

    __slots__ = ("images", "labels", "boxes", "masks", "class_names")

    def __init__(self, images, labels, boxes, masks):
        self.images, self.labels, self.boxes, self.masks = images, labels, boxes, masks
        self.class_names = list(CLASS_NAMES)

    def __len__(self):
        return len(self.labels)

    def __repr__(self):
        size = self.images.shape[1] if self.images.ndim == 4 else None
        return f"ShapesData({len(self)} images of {size}x{size}, class_names={self.class_names})"


def _check_count(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def _check_options(image_size, seed, min_size, max_size, contour_width):
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size must be an int >= 16 (pixels per side), got {image_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not (isinstance(min_size, (int, float)) and isinstance(max_size, (int, float))
            and 0.1 <= min_size <= max_size <= 0.9):
        raise ValueError(f"min_size and max_size must be fractions of the image side with "
                         f"0.1 <= min_size <= max_size <= 0.9, got min_size={min_size!r}, max_size={max_size!r}")
    if not isinstance(contour_width, (int, float)) or not 0 < contour_width <= 4:
        raise ValueError(f"contour_width must be a number of pixels in (0, 4], got {contour_width!r}")
    # The smallest triangle's inscribed circle (radius a quarter of the smallest diameter)
    # must keep a disk of radius > sqrt(2)/2 deeper than the contour band: such a disk always
    # holds a pixel center, so every image has foreground pixels.
    smallest_inradius = min_size * image_size / 4
    if smallest_inradius < contour_width + 0.75:
        raise ValueError(f"min_size={min_size!r} is too small for image_size={image_size!r} and "
                         f"contour_width={contour_width!r}: the smallest triangle would have no foreground; "
                         f"expected min_size >= {4 * (contour_width + 0.75) / image_size:.3f}")


def _polygon_depth(rows, cols, vertices):
    """For each pixel center, its distance inside a convex polygon (negative outside).

    Inside a convex polygon the distance to the outline is the smallest distance to the
    lines of its edges, each measured along the edge's normal turned toward the centroid.
    vertices: (k, 2) array of (row, column) points.
    """
    centroid = vertices.mean(axis=0)
    depth = np.full(rows.shape, np.inf)
    for a, b in zip(vertices, np.roll(vertices, -1, axis=0)):
        edge = b - a
        normal = np.array([-edge[1], edge[0]]) / np.hypot(edge[0], edge[1])
        if np.dot(centroid - a, normal) < 0:
            normal = -normal
        distance = (rows - a[0]) * normal[0] + (cols - a[1]) * normal[1]
        depth = np.minimum(depth, distance)
    return depth


def _shape_depth(label, rows, cols, center, radius, angle):
    """Distance of each pixel center inside the shape's outline (negative outside)."""
    if label == CIRCLE:
        return radius - np.hypot(rows - center[0], cols - center[1])
    corners = 4 if label == SQUARE else 3
    angles = angle + 2 * np.pi * np.arange(corners) / corners
    vertices = np.stack([center[0] + radius * np.sin(angles), center[1] + radius * np.cos(angles)], axis=1)
    return _polygon_depth(rows, cols, vertices)


def _background(rng, size, rows, cols):
    """A gradient between two colours, faint stripes and noise: float (size, size, 3), and the two colours."""
    start, end = rng.uniform(0, 255, size=(2, 3))
    direction = rng.uniform(0, 2 * np.pi)
    along = rows * np.sin(direction) + cols * np.cos(direction)
    t = (along - along.min()) / max(along.max() - along.min(), 1e-9)
    image = (start + t[..., None] * (end - start)).astype(np.float32)
    stripe_angle = rng.uniform(0, np.pi)
    frequency = rng.uniform(2, 8) * 2 * np.pi / size
    phase = rng.uniform(0, 2 * np.pi)
    stripes = np.sin(frequency * (rows * np.sin(stripe_angle) + cols * np.cos(stripe_angle)) + phase)
    image += np.float32(rng.uniform(5, 15)) * stripes[..., None]
    return image, start, end


def _distance_to_segment(point, start, end):
    direction = end - start
    length2 = float(np.dot(direction, direction))
    t = 0.0 if length2 == 0 else float(np.clip(np.dot(point - start, direction) / length2, 0.0, 1.0))
    return float(np.linalg.norm(point - (start + t * direction)))


def _contrasting_colour(rng, start, end):
    """A colour at least MIN_CONTRAST away from every colour of the gradient start..end."""
    for _ in range(10_000):  # a few tries at most: much of the RGB cube is that far from any segment
        colour = rng.uniform(0, 255, size=3)
        if _distance_to_segment(colour, start, end) >= MIN_CONTRAST:
            return colour
    raise RuntimeError(f"no colour found at distance {MIN_CONTRAST} from the gradient {start} .. {end}")


def _draw(rng, size, rows, cols, min_size, max_size, contour_width):
    label = int(rng.integers(3))
    radius = rng.uniform(min_size, max_size) * size / 2
    # Keep the circumscribed circle (and so the shape) at least a pixel inside the image.
    center = rng.uniform(radius + 1, size - radius - 1, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    depth = _shape_depth(label, rows, cols, center, radius, angle)
    inside = depth > 0
    mask = np.full((size, size), BACKGROUND, dtype=np.uint8)
    mask[inside] = FOREGROUND
    mask[inside & (depth <= contour_width)] = CONTOUR

    image, start, end = _background(rng, size, rows, cols)
    colour = _contrasting_colour(rng, start, end)
    image[inside] = colour
    image += np.float32(6) * rng.standard_normal(size=image.shape, dtype=np.float32)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    ys, xs = np.nonzero(inside)
    box = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
    return image, label, box, mask


def generate(num_images, image_size=64, seed=0, part="train", min_size=0.2, max_size=0.6, contour_width=1.5):
    """A ShapesData of `num_images` images of one part ("train", "test" or "validation"), see the
    module docstring."""
    num_images = _check_count(num_images, "num_images")
    _check_options(image_size, seed, min_size, max_size, contour_width)
    if part not in _PARTS:
        raise ValueError(f"part must be one of {list(_PARTS)}, got {part!r}")
    size = int(image_size)
    centers = np.arange(size, dtype=np.float32) + np.float32(0.5)
    rows, cols = np.meshgrid(centers, centers, indexing="ij")
    images = np.empty((num_images, size, size, 3), dtype=np.uint8)
    masks = np.empty((num_images, size, size), dtype=np.uint8)
    labels = np.empty(num_images, dtype=np.int64)
    boxes = np.empty((num_images, 4), dtype=np.int64)
    for index in range(num_images):
        rng = np.random.default_rng([int(seed), _PARTS[part], index])
        images[index], labels[index], boxes[index], masks[index] = _draw(
            rng, size, rows, cols, min_size, max_size, contour_width)
    return ShapesData(images, labels, boxes, masks)


def load_data(num_train=2000, num_test=500, image_size=64, seed=0, min_size=0.2, max_size=0.6, contour_width=1.5):
    """(train, test): two ShapesData parts drawn from independent seed streams.

    num_train, num_test: images in each part.
    image_size: side of the square images, in pixels.
    seed: the dataset's seed; the same seed gives bit-identical arrays.
    min_size, max_size: range of the shape's circumscribed-circle diameter, as a fraction
        of the image side.
    contour_width: width in pixels of the contour band of the trimap (inner side of the edge).
    """
    num_train = _check_count(num_train, "num_train")
    num_test = _check_count(num_test, "num_test")
    options = dict(image_size=image_size, seed=seed, min_size=min_size, max_size=max_size,
                   contour_width=contour_width)
    return generate(num_train, part="train", **options), generate(num_test, part="test", **options)


# ---------------------------------------------------------------------------- several shapes per image


class ShapesScenes(ShapesData):
    """Images with several shapes each, for detection: images uint8 (n, size, size, 3);
    boxes a list of n int64 arrays (k_i, 4) (ymin, xmin, ymax, xmax), pixels, max exclusive;
    labels a list of n int64 arrays (k_i,); masks uint8 (n, size, size) trimap of all shapes."""

    __slots__ = ()

    def __repr__(self):
        return f"ShapesScenes({len(self)} images, {sum(len(b) for b in self.boxes)} shapes)"


def _draw_scene(rng, size, rows, cols, min_shapes, max_shapes, min_size, max_size, contour_width):
    count = int(rng.integers(min_shapes, max_shapes + 1))
    image, start, end = _background(rng, size, rows, cols)
    mask = np.full((size, size), BACKGROUND, dtype=np.uint8)
    placed, labels, boxes = [], [], []
    for _ in range(100 * count):  # rejection sampling: circumscribed circles never overlap
        if len(placed) == count:
            break
        radius = rng.uniform(min_size, max_size) * size / 2
        center = rng.uniform(radius + 1, size - radius - 1, size=2)
        if any(np.hypot(*(center - c)) < radius + r + 1 for c, r in placed):
            continue
        placed.append((center, radius))
        label = int(rng.integers(3))
        depth = _shape_depth(label, rows, cols, center, radius, rng.uniform(0, 2 * np.pi))
        inside = depth > 0
        mask[inside] = FOREGROUND
        mask[inside & (depth <= contour_width)] = CONTOUR
        image[inside] = _contrasting_colour(rng, start, end)
        ys, xs = np.nonzero(inside)
        labels.append(label)
        boxes.append((ys.min(), xs.min(), ys.max() + 1, xs.max() + 1))
    image += np.float32(6) * rng.standard_normal(size=image.shape, dtype=np.float32)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image, np.array(labels, dtype=np.int64), np.array(boxes, dtype=np.int64).reshape(-1, 4), mask


def generate_scenes(num_images, image_size=64, seed=0, part="train", min_shapes=1, max_shapes=3, min_size=0.2,
                    max_size=0.4, contour_width=1.5):
    """A ShapesScenes of `num_images` images, each with min_shapes..max_shapes shapes (fewer
    when they do not fit without overlapping) whose circumscribed circles neither overlap nor
    leave the image, so every box is the tight box of a whole, unoccluded shape.

    Image i is drawn from numpy.random.default_rng([seed, part, i, 1]) (part 0 train, 1
    test): a stream of its own, apart from generate()'s one-shape images."""
    num_images = _check_count(num_images, "num_images")
    _check_options(image_size, seed, min_size, max_size, contour_width)
    if part not in _PARTS:
        raise ValueError(f"part must be one of {list(_PARTS)}, got {part!r}")
    for name, value in (("min_shapes", min_shapes), ("max_shapes", max_shapes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if min_shapes > max_shapes:
        raise ValueError(f"min_shapes must be <= max_shapes, got min_shapes={min_shapes}, max_shapes={max_shapes}")
    size = int(image_size)
    centers = np.arange(size, dtype=np.float32) + np.float32(0.5)
    rows, cols = np.meshgrid(centers, centers, indexing="ij")
    images = np.empty((num_images, size, size, 3), dtype=np.uint8)
    masks = np.empty((num_images, size, size), dtype=np.uint8)
    labels, boxes = [], []
    for index in range(num_images):
        rng = np.random.default_rng([int(seed), _PARTS[part], index, 1])
        images[index], image_labels, image_boxes, masks[index] = _draw_scene(
            rng, size, rows, cols, int(min_shapes), int(max_shapes), min_size, max_size, contour_width)
        labels.append(image_labels)
        boxes.append(image_boxes)
    return ShapesScenes(images, labels, boxes, masks)


def load_scenes(num_train=2000, num_test=200, image_size=64, seed=0, min_shapes=1, max_shapes=3, min_size=0.2,
                max_size=0.4, contour_width=1.5):
    """(train, test) ShapesScenes from independent seed streams (see generate_scenes)."""
    options = dict(image_size=image_size, seed=seed, min_shapes=min_shapes, max_shapes=max_shapes,
                   min_size=min_size, max_size=max_size, contour_width=contour_width)
    return (generate_scenes(_check_count(num_train, "num_train"), part="train", **options),
            generate_scenes(_check_count(num_test, "num_test"), part="test", **options))
