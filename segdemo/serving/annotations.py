"""Masks to take elsewhere: each class's regions of a class-index mask as polygons (holes kept, simplified to a
tolerance in pixels), and a batch as one COCO JSON that CVAT and Label Studio import. NumPy, OpenCV
(`findContours`, `approxPolyDP`) and pycocotools (RLE); no Gradio, no TensorFlow.

Coordinates are pixel *edges*: pixel (row r, column c) is the square x in [c, c+1], y in [r, r+1], which is how
pycocotools (and so CVAT and most trainers) rasterise a polygon, filling the pixels whose centres fall inside.
Outlines traced through pixel centres (what `findContours` gives on the mask itself) lose half a pixel all round:
a 1-pixel line vanishes, a 10x10 square comes back 9x9. So the outline is traced on a twice-finer lattice where
each pixel is the closed square of its corners, edge midpoints and centre: its border runs along pixel edges and
halving it gives the exact outline (at tolerance 0 the round trip reproduces the mask pixel for pixel). A
tolerance simplifies the line through the outline's edge midpoints (the staircase's smooth line) with
Douglas-Peucker, and is halved for a region while that would change more than 1% of its pixels, so thin and small
regions keep their shape (a 1-pixel line would otherwise collapse onto a segment).

How the COCO JSON encodes a region, from the importers' code:
- Label Studio (label-studio-sdk, converter/imports/coco.py) turns each polygon of an annotation's
  `segmentation` list into its own PolygonLabels region and does not read RLE at all ("RLE (Run-Length Encoding)
  segmentations are not yet supported"; a dict `segmentation` is iterated as if it were a list of polygons).
- CVAT imports through Datumaro (plugins/data_formats/coco/base.py): each polygon of the list becomes its own
  Polygon (at least 3 points, or the import fails), `iscrowd` must be an int, and RLE is read in both forms
  (a list of counts, which must match the image size, or pycocotools' compressed string) as a mask shape.
- Both therefore fill every polygon of a list: a hole given as a second polygon comes back filled. So the
  polygon form ("polygon", the default and the one both import) is one annotation per connected region whose
  `segmentation` is ONE polygon, each hole joined to the outline by a zero-width cut ("keyhole"); the cut runs
  there and back, so it encloses nothing, and the hole runs the other way round from the outline, so the hole
  stays empty under both the even-odd and the non-zero fill rule. `iscrowd` is 0: these are outlines, and
  pycocotools' evaluation ignores crowd regions.
- The RLE form ("rle") is exact (CVAT and pycocotools-based trainers; not Label Studio): one annotation per
  class present in an image, as COCO-Stuff does for semantic segmentation, with pycocotools' compressed string
  counts (CVAT reads them; several times smaller than count lists) and `iscrowd` 0, so that evaluation and
  training use it as an ordinary mask rather than an ignored crowd region.
Category ids are the class index + 1 (1..N, in the model card's order): COCO and most of its trainers
(Detectron2, torchvision's Mask R-CNN) keep id 0 for "no object", while the card's classes, background
included, are all real classes here."""

import json
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from segdemo.errors import InputError

SEGMENTATION_FORMATS = ("polygon", "rle")
DEFAULT_TOLERANCE = 1.0  # pixels an outline may move when simplified (cv2.approxPolyDP's epsilon); 0 = exact
MAX_TOLERANCE = 20.0  # beyond this outlines are caricatures; a typo (100 for 1.00) should not pass silently
MIN_TOLERANCE = 0.25  # below this the exact pixel outline is kept (simplifying would save next to nothing)
SIMPLIFY_BUDGET = 0.01  # share of a region's pixels simplification may change; the tolerance is halved until so
COORDINATES = ("pixel edges: (0, 0) is the top-left corner of the top-left pixel and pixel (row r, column c) "
               "covers x in [c, c+1], y in [r, r+1]; exteriors and holes run in opposite directions")


def check_options(segmentation="polygon", tolerance=DEFAULT_TOLERANCE):
    """(segmentation, tolerance as a float) when both are accepted; InputError saying what is otherwise."""
    if segmentation not in SEGMENTATION_FORMATS:
        raise InputError(f"Unknown segmentation format {segmentation!r}: accepted are "
                         f"{' and '.join(repr(name) for name in SEGMENTATION_FORMATS)}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or not 0 <= tolerance <= MAX_TOLERANCE:
        raise InputError(f"Polygon tolerance {tolerance!r} is not accepted: give a number of pixels from 0 (exact "
                         f"outlines) to {MAX_TOLERANCE:g}")
    return segmentation, float(tolerance)


@dataclass
class Region:
    """One connected region (8-connected, as OpenCV traces) of one class."""

    class_name: str
    class_index: int
    exterior: np.ndarray  # (n, 2) x, y vertices, pixel-edge coordinates
    holes: list = field(default_factory=list)  # (m, 2) rings running the other way round from the exterior
    area: int = 0  # pixels of the region (exact, whatever the tolerance)
    bbox: list = field(default_factory=list)  # [x, y, width, height] in pixels, as COCO's

    def to_dict(self):
        return {"class": self.class_name, "class_index": self.class_index, "area": self.area, "bbox": self.bbox,
                "exterior": points_list(self.exterior), "holes": [points_list(hole) for hole in self.holes]}


def points_list(ring):
    """[[x, y], ...], ints where the coordinate is whole (exact outlines; simplified ones run through edge middles)."""
    return [[number(x), number(y)] for x, y in ring.tolist()]


def number(value):
    value = float(value)
    return int(value) if value.is_integer() else round(value, 3)


def signed_area(ring):
    """Shoelace area: positive for one direction round, negative for the other."""
    x, y = ring[:, 0].astype(np.float64), ring[:, 1].astype(np.float64)
    return 0.5 * float(x[:-1] @ y[1:] - x[1:] @ y[:-1] + x[-1] * y[0] - x[0] * y[-1])


def turned(points, step):
    """`points` rolled by `step` (1 or -1) along the first axis: np.roll's result at a fraction of its cost on the
    many short rings of a speckled mask."""
    return np.concatenate((points[-1:], points[:-1])) if step == 1 else np.concatenate((points[1:], points[:1]))


def traced_rings(points):
    """A contour traced on the twice-finer lattice ((n, 2) x, y) -> (its exact ring, its midpoint ring).
    OpenCV follows borders 8-connectedly, so it cuts each concave corner of the pixel outline with a diagonal
    step between two edge midpoints; the corner is put back (the one of the step's two other lattice points with
    even coordinates: the other is a pixel centre). The exact ring is the pixel outline's corners (straight runs
    dropped); the midpoint ring runs through the middle of each pixel edge of the outline, a staircase's smooth
    line (it still holds the same pixel centres), which simplifies with fewer vertices for the same fidelity."""
    following = turned(points, -1)
    diagonal = (points[:, 0] != following[:, 0]) & (points[:, 1] != following[:, 1])
    on_vertical_edge = (points[:, 0] % 2 == 0)[:, None]
    corners = np.where(on_vertical_edge, np.stack([points[:, 0], following[:, 1]], 1),
                       np.stack([following[:, 0], points[:, 1]], 1))
    positions = np.arange(len(points)) + np.cumsum(diagonal) - diagonal
    path = np.empty((len(points) + int(diagonal.sum()), 2), points.dtype)
    path[positions] = points
    path[positions[diagonal] + 1] = corners[diagonal]
    incoming = np.sign(path - turned(path, 1))
    outgoing = np.sign(turned(path, -1) - path)
    exact = path[(incoming != outgoing).any(axis=1)] // 2
    return exact, path[(path % 2).sum(axis=1) == 1] / 2.0


def oriented(ring, positive):
    return ring if (signed_area(ring) > 0) == positive else ring[::-1]


def from_top_left(ring):
    """The same ring starting at its top vertex (the leftmost of those): the same mask gives the same file."""
    first = int(np.lexsort((ring[:, 0], ring[:, 1]))[0])
    return np.concatenate((ring[first:], ring[:first]))


def rasterised(ring, window):
    """The pixels pycocotools (as CVAT and trainers) fills for one ring, within `window` (left, top, w, h)."""
    left, top, width, height = window
    return coco_mask.decode(coco_mask.frPyObjects([(ring - (left, top)).ravel().tolist()], height, width)[0])


def simplified(exact, midpoints, tolerance, area, shape):
    """A region's rings (exterior first) simplified by Douglas-Peucker (cv2.approxPolyDP) on their midpoint
    rings to `tolerance` px; the tolerance is halved while that changes more than SIMPLIFY_BUDGET of the region's
    pixels, and the exact rings are kept when even MIN_TOLERANCE does (a 1-pixel line is within 1 px of a
    segment): a thin or small region is never lost to the tolerance. Each simplified ring is rasterised as the
    importers do against its exact ring, in the ring's own box; the differences summed bound what the region
    loses or gains."""
    if tolerance < MIN_TOLERANCE or sum(len(ring) for ring in exact) <= 8:  # a rectangle, an L: nothing to gain
        return exact
    targets = {}
    while tolerance >= MIN_TOLERANCE:
        rings, changed = [], 0
        for order, (ring, line) in enumerate(zip(exact, midpoints)):
            approx = cv2.approxPolyDP(line.reshape(-1, 1, 2).astype(np.float32), tolerance, True).reshape(-1, 2)
            if len(ring) <= 4 or len(approx) < 3:
                rings.append(ring)
                continue
            rings.append(oriented(approx.astype(np.float64), order == 0))
            margin = math.ceil(tolerance) + 1
            (x0, y0), (x1, y1) = ring.min(axis=0) - margin, ring.max(axis=0) + margin
            x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(shape[1], int(x1)), min(shape[0], int(y1))
            window = (x0, y0, x1 - x0, y1 - y0)
            if order not in targets:
                targets[order] = rasterised(ring, window)
            changed += int(np.count_nonzero(rasterised(rings[-1], window) != targets[order]))
            if changed > SIMPLIFY_BUDGET * area:
                break
        else:
            return rings
        tolerance /= 2
        targets.clear()  # the windows shrink with the tolerance
    return exact


def class_regions(labels, classes, tolerance=DEFAULT_TOLERANCE):
    """Every connected region of every class in `labels` ((h, w) class indices; values without a class, such as
    255 for "ignore", are skipped), ordered by class, then top to bottom, left to right. Holes are kept (a region
    of another class inside, or an island of the same class, which is then a region of its own)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be an (h, w) class-index mask, not shape {labels.shape}")
    _, tolerance = check_options("polygon", tolerance)
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=len(classes))[:len(classes)])
    regions = []
    for index in present.tolist():
        mask = labels == index
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        top, left = int(rows[0]), int(cols[0])
        crop = mask[top:rows[-1] + 1, left:cols[-1] + 1]
        # Each pixel as the closed 3x3 square of lattice points around its centre, with a free border of one
        # point all round (findContours needs background around the shape).
        height, width = crop.shape
        lattice = np.zeros((2 * height + 3, 2 * width + 3), np.uint8)
        lattice[2:2 * height + 1:2, 2:2 * width + 1:2] = crop
        lattice = cv2.dilate(lattice, np.ones((3, 3), np.uint8))
        contours, hierarchy = cv2.findContours(lattice, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE,
                                               offset=(2 * left - 1, 2 * top - 1))
        hierarchy = hierarchy[0]
        for position, contour in enumerate(contours):
            if hierarchy[position][3] != -1:  # a hole: taken with its region
                continue
            members, child = [contour], hierarchy[position][2]
            while child != -1:
                members.append(contours[child])
                child = hierarchy[child][0]
            traced = [traced_rings(member.reshape(-1, 2)) for member in members]
            exact = [oriented(ring, order == 0) for order, (ring, _) in enumerate(traced)]
            area = round(sum(signed_area(ring) for ring in exact))  # exterior positive, holes negative
            (x0, y0), (x1, y1) = exact[0].min(axis=0), exact[0].max(axis=0)
            rings = [from_top_left(ring) for ring in simplified(exact, [line for _, line in traced], tolerance,
                                                                 area, labels.shape)]
            regions.append(Region(str(classes[index]), index, rings[0], rings[1:], area,
                                  [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]))
    regions.sort(key=lambda region: (region.class_index, region.bbox[1], region.bbox[0]))
    return regions


def image_polygons(labels, classes, tolerance=DEFAULT_TOLERANCE, regions=None):
    """One image's regions as a self-describing JSON-able dict (size, classes, coordinate convention, tolerance,
    and per region its class, area, bbox, exterior ring and hole rings). `regions`: already traced ones."""
    labels = np.asarray(labels)
    if regions is None:
        regions = class_regions(labels, classes, tolerance)
    return {"width": int(labels.shape[1]), "height": int(labels.shape[0]), "classes": [str(name) for name in classes],
            "coordinates": COORDINATES, "tolerance": float(tolerance),
            "regions": [region.to_dict() for region in regions]}


def keyhole(exterior, holes):
    """One ring covering what `exterior` less `holes` covers: each hole is joined by a zero-width cut, run there
    and back, from its top vertex straight up to the first edge above it of the outline or of a hole above it
    (holes taken top first), so that the cut stays inside the region. Linear in the vertices: the rays are cast
    through a per-column index of the edges and the ring is written once, however many holes there are."""
    if not holes:
        return exterior.astype(np.float64)
    holes = sorted((hole.astype(np.float64) for hole in holes), key=lambda hole: (hole[:, 1].min(), hole[:, 0].min()))
    rings = [exterior.astype(np.float64)] + [from_top_left(hole) for hole in holes]
    starts = np.concatenate(rings)
    ends = np.concatenate([turned(ring, -1) for ring in rings])
    owners = np.repeat(np.arange(len(rings)), [len(ring) for ring in rings])
    numbers = np.concatenate([np.arange(len(ring)) for ring in rings])
    low, high = np.minimum(starts[:, 0], ends[:, 0]), np.maximum(starts[:, 0], ends[:, 0])
    spanning = np.flatnonzero(low < high)  # vertical edges are never crossed by a vertical ray
    first = np.floor(low[spanning]).astype(np.int64)
    widths = np.ceil(high[spanning]).astype(np.int64) - first
    edges = np.repeat(spanning, widths)
    columns = np.repeat(first, widths) + np.arange(len(edges)) - np.repeat(np.cumsum(widths) - widths, widths)
    by_column = np.argsort(columns, kind="stable")
    edges, columns = edges[by_column], columns[by_column]
    attachments = [[] for _ in rings]  # per ring: (edge number, distance along it, anchor, hole)
    for hole in range(1, len(rings)):
        x, y = rings[hole][0]
        column = math.floor(x)
        found = edges[np.searchsorted(columns, column):np.searchsorted(columns, column, side="right")]
        found = found[(owners[found] < hole) & (low[found] <= x) & (x < high[found])]
        a, b = starts[found], ends[found]
        crossing = a[:, 1] + (x - a[:, 0]) * (b[:, 1] - a[:, 1]) / (b[:, 0] - a[:, 0])
        above = crossing <= y
        if above.any():
            best = int(np.argmax(np.where(above, crossing, -np.inf)))
            edge, anchor = int(found[best]), np.array([x, crossing[best]])
        else:  # simplification moved the hole out of its outline: join it to the outline's nearest vertex
            edge = int(np.argmin(((rings[0] - rings[hole][0]) ** 2).sum(axis=1)))
            anchor = rings[0][edge]
        attachments[owners[edge]].append((int(numbers[edge]), float(np.abs(anchor - starts[edge]).sum()), anchor,
                                          hole))
    for pending in attachments:
        pending.sort(key=lambda attachment: attachment[:2])
    pieces, stack = [], [(0, 0, 0)]  # (ring, next attachment, next vertex); a ring's holes are written inside it
    while stack:
        ring, next_attachment, next_vertex = stack.pop()
        if isinstance(ring, np.ndarray):  # back from a hole: its first vertex, then the cut back to the anchor
            pieces.append(ring)
            continue
        if next_attachment == len(attachments[ring]):
            pieces.append(rings[ring][next_vertex:])
            continue
        edge, _, anchor, hole = attachments[ring][next_attachment]
        pieces += [rings[ring][next_vertex:edge + 1], anchor[None]]
        stack += [(ring, next_attachment + 1, edge + 1), (np.stack([rings[hole][0], anchor]), 0, 0), (hole, 0, 0)]
    ring = np.concatenate(pieces)
    return ring[np.any(ring != turned(ring, 1), axis=1)]  # repeated points (a cut of length 0)


def coco_annotations(labels, classes, segmentation="polygon", tolerance=DEFAULT_TOLERANCE, regions=None):
    """One image's COCO annotations without ids ("polygon": one per region; "rle": one per class present). `area`
    is the region's or class's pixel count and `bbox` its pixel box [x, y, w, h], exact whatever the tolerance.
    Pure, so a writer thread can compute them while the model runs on the next images."""
    segmentation, tolerance = check_options(segmentation, tolerance)
    labels = np.asarray(labels)
    if segmentation == "rle":
        present = np.flatnonzero(np.bincount(labels.ravel(), minlength=len(classes))[:len(classes)])
        annotations = []
        for index in present.tolist():
            rle = coco_mask.encode(np.asfortranarray(labels == index, dtype=np.uint8))
            annotations.append({"category_id": index + 1,
                                "segmentation": {"size": [int(size) for size in rle["size"]],
                                                 "counts": rle["counts"].decode("ascii")},
                                "area": int(coco_mask.area(rle)),
                                "bbox": [int(value) for value in coco_mask.toBbox(rle)], "iscrowd": 0})
        return annotations
    if regions is None:
        regions = class_regions(labels, classes, tolerance)
    return [{"category_id": region.class_index + 1,
             "segmentation": [[number(value) for value in keyhole(region.exterior, region.holes).ravel().tolist()]],
             "area": region.area, "bbox": region.bbox, "iscrowd": 0} for region in regions]


class CocoBuilder:
    """A COCO document built one image at a time, keeping only the annotations (not the masks), so a batch of
    full-size masks need not stay in memory. Images and annotations are numbered from 1 in the order added."""

    def __init__(self, classes, segmentation="polygon", tolerance=DEFAULT_TOLERANCE, colors=None, info=None):
        self.segmentation, self.tolerance = check_options(segmentation, tolerance)
        self.classes = [str(name) for name in classes]
        self.colors = colors
        self.info = dict(info or {})
        self.images, self.annotations = [], []

    def add(self, file_name, labels):
        """Trace and add one image's (h, w) class-index mask; returns its image id."""
        labels = np.asarray(labels)
        return self.add_annotations(file_name, labels.shape[1], labels.shape[0],
                                    coco_annotations(labels, self.classes, self.segmentation, self.tolerance))

    def add_annotations(self, file_name, width, height, annotations):
        """Add one image whose annotations `coco_annotations` already made (e.g. in a writer thread)."""
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": str(file_name), "width": int(width), "height": int(height)})
        first = len(self.annotations) + 1
        self.annotations += [{"id": first + offset, "image_id": image_id, **annotation}
                             for offset, annotation in enumerate(annotations)]
        return image_id

    def categories(self):
        """id = class index + 1; "color" ([r, g, b], when given) is an extension the importers ignore."""
        categories = [{"id": index + 1, "name": name, "supercategory": ""} for index, name in enumerate(self.classes)]
        for category, color in zip(categories, self.colors or []):
            category["color"] = [int(channel) for channel in color]
        return categories

    def document(self):
        info = {"description": "segdemo segmentation", "segmentation": self.segmentation, **self.info}
        if self.segmentation == "polygon":
            info.setdefault("tolerance", self.tolerance)
        return {"info": info, "licenses": [], "images": self.images, "annotations": self.annotations,
                "categories": self.categories()}

    def write(self, path):
        with open(path, "w") as handle:
            json.dump(self.document(), handle, separators=(",", ":"))
        return str(path)


def coco_document(images, classes, segmentation="polygon", tolerance=DEFAULT_TOLERANCE, colors=None, info=None):
    """The COCO document of `images`, an iterable of (file_name, (h, w) class-index mask)."""
    builder = CocoBuilder(classes, segmentation, tolerance, colors, info)
    for file_name, labels in images:
        builder.add(file_name, labels)
    return builder.document()
