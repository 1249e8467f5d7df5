"""Procedural 3-D objects for the synthetic datasets: shape categories, deformation, paint.

Every object is built from trimesh primitives (icosphere, box, torus, capsule, and
surfaces of revolution via ``trimesh.creation.revolve``), concatenated without
booleans, then deformed per instance (anisotropic scale, twist, bend, taper and smooth
noise along the normals) and painted per face with a random pattern (stripes, patches,
checks, or differently coloured sides). The paint is not rotationally symmetric, so
turning an object changes what the camera sees: viewpoint invariance is not trivial.

Coordinates are Z-up; a finished object is centred at the origin and fits the unit
sphere. Everything random comes from the ``numpy.random.Generator`` passed in.
"""
from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import trimesh

Parts = list[trimesh.Trimesh]

# Order matters: generators take the first `num_classes` categories, so the first eight
# (the default) mix primitives with compound objects.
CATEGORIES: tuple[str, ...] = (
    "sphere",
    "box",
    "cylinder",
    "cone",
    "torus",
    "mug",
    "table",
    "dumbbell",
    "capsule",
    "lamp",
    "mushroom",
    "bottle",
    "chair",
)


@dataclass(frozen=True)
class ObjectMesh:
    """A painted triangle mesh ready for :func:`datasets.synthetic.render.render`.

    ``vertices`` (V, 3) float64 fit the unit sphere around the origin; ``faces`` (F, 3)
    int64 wind counter-clockwise seen from outside; ``face_normals`` (F, 3) are unit
    outward normals; ``albedo`` (F, 3) float32 RGB reflectance in [0, 1].
    """

    category: str
    vertices: np.ndarray
    faces: np.ndarray
    face_normals: np.ndarray
    albedo: np.ndarray


# ----------------------------------------------------------------------------- helpers


def _densify(profile: np.ndarray, step: float) -> np.ndarray:
    """Insert points along a polyline so no segment is longer than ``step``.

    Revolved surfaces need rings along their height, or a twist or bend would only move
    the few original corners.
    """
    points = [profile[0]]
    for start, end in zip(profile[:-1], profile[1:]):
        count = max(1, int(np.ceil(np.linalg.norm(end - start) / step)))
        for k in range(1, count + 1):
            points.append(start + (end - start) * k / count)
    return np.asarray(points)


def _lathe(profile: list[tuple[float, float]], sections: int = 28, step: float = 0.12) -> trimesh.Trimesh:
    """Closed solid of revolution around Z from a (radius, z) profile that starts and ends on the axis."""
    mesh = trimesh.creation.revolve(_densify(np.asarray(profile, float), step), sections=sections)
    if mesh.volume < 0:  # the profile ran top-down: flip so normals point outward
        mesh.invert()
    return mesh


def _cylinder(radius: float, height: float, sections: int = 28, z0: float | None = None) -> trimesh.Trimesh:
    """Capped cylinder on the Z axis from ``z0`` (default: centred) up ``height``."""
    z0 = -height / 2 if z0 is None else z0
    return _lathe([(0, z0), (radius, z0), (radius, z0 + height), (0, z0 + height)], sections)


def _tube(path: np.ndarray, radius: float, sections: int = 10) -> trimesh.Trimesh:
    """A capped tube of circular cross-section along a 3-D polyline (a mug handle, say)."""
    path = np.asarray(path, float)
    tangents = np.gradient(path, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    helper = np.array([0.0, 0.0, 1.0]) if abs(tangents[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    normals = np.cross(tangents, helper)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    binormals = np.cross(tangents, normals)
    angles = np.linspace(0, 2 * np.pi, sections, endpoint=False)
    ring = np.cos(angles)[None, :, None] * normals[:, None] + np.sin(angles)[None, :, None] * binormals[:, None]
    vertices = (path[:, None] + radius * ring).reshape(-1, 3)
    n, s = len(path), sections
    faces = []
    for i in range(n - 1):
        for j in range(s):
            a, b = i * s + j, i * s + (j + 1) % s
            c, d = a + s, b + s
            faces += [(a, b, d), (a, d, c)]
    start, end = len(vertices), len(vertices) + 1
    vertices = np.vstack([vertices, path[0], path[-1]])
    for j in range(s):
        faces.append((start, (j + 1) % s, j))
        faces.append((end, (n - 1) * s + j, (n - 1) * s + (j + 1) % s))
    mesh = trimesh.Trimesh(vertices, np.asarray(faces), process=False)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def _moved(mesh: trimesh.Trimesh, offset=(0.0, 0.0, 0.0), rotation: np.ndarray | None = None) -> trimesh.Trimesh:
    """A copy of ``mesh`` rotated (3x3) about the origin, then translated."""
    matrix = np.eye(4)
    if rotation is not None:
        matrix[:3, :3] = rotation
    matrix[:3, 3] = offset
    return mesh.copy().apply_transform(matrix)


def _rotation(axis: str, degrees: float) -> np.ndarray:
    """Rotation matrix about a coordinate axis."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _leg_positions(half_x: float, half_y: float) -> list[tuple[float, float]]:
    return [(sx * half_x, sy * half_y) for sx in (-1, 1) for sy in (-1, 1)]


# ----------------------------------------------------------------------------- categories


def _sphere(rng: np.random.Generator) -> Parts:
    mesh = trimesh.creation.icosphere(subdivisions=3)
    mesh.apply_scale([1.0, rng.uniform(0.65, 1.0), rng.uniform(0.55, 1.15)])
    return [mesh]


def _box(rng: np.random.Generator) -> Parts:
    mesh = trimesh.creation.box(extents=[rng.uniform(1.0, 1.8), rng.uniform(0.6, 1.2), rng.uniform(0.5, 1.5)])
    return [mesh.subdivide().subdivide().subdivide()]


def _cylinder_shape(rng: np.random.Generator) -> Parts:
    return [_cylinder(rng.uniform(0.35, 0.7), rng.uniform(1.0, 2.0))]


def _cone(rng: np.random.Generator) -> Parts:
    radius, height = rng.uniform(0.5, 0.9), rng.uniform(1.0, 2.0)
    return [_lathe([(0, -height / 2), (radius, -height / 2), (0, height / 2)])]


def _torus(rng: np.random.Generator) -> Parts:
    mesh = trimesh.creation.torus(1.0, rng.uniform(0.22, 0.45), major_sections=28, minor_sections=14)
    # Stand it up part of the way so the hole shows from the turntable camera.
    return [_moved(mesh, rotation=_rotation("x", rng.uniform(20, 80)))]


def _mug(rng: np.random.Generator) -> Parts:
    radius, height = rng.uniform(0.45, 0.65), rng.uniform(0.9, 1.4)
    wall, bottom = 0.07, 0.1
    body = _lathe([
        (0, -height / 2), (radius, -height / 2), (radius, height / 2),
        (radius - wall, height / 2), (radius - wall, -height / 2 + bottom), (0, -height / 2 + bottom),
    ])
    # A C-shaped handle in the x-z plane whose ends sink into the wall.
    reach, span = rng.uniform(0.28, 0.42), height * rng.uniform(0.28, 0.38)
    t = np.linspace(-np.pi / 2, np.pi / 2, 14)
    path = np.stack([radius - 0.03 + reach * np.cos(t), np.zeros_like(t), span * np.sin(t)], axis=1)
    return [body, _tube(path, rng.uniform(0.05, 0.08))]


def _table(rng: np.random.Generator) -> Parts:
    height, thickness = rng.uniform(0.8, 1.2), rng.uniform(0.08, 0.14)
    leg_radius = rng.uniform(0.05, 0.09)
    if rng.random() < 0.5:  # rectangular top, four legs
        width, depth = rng.uniform(1.6, 2.2), rng.uniform(0.9, 1.5)
        top = trimesh.creation.box(extents=[width, depth, thickness]).subdivide().subdivide()
        legs = [(x, y) for x, y in _leg_positions(width / 2 - 0.12, depth / 2 - 0.12)]
    else:  # round top, three legs
        radius = rng.uniform(0.8, 1.1)
        top = _cylinder(radius, thickness, sections=32)
        legs = [(0.75 * radius * np.cos(a), 0.75 * radius * np.sin(a)) for a in np.radians([90, 210, 330])]
    parts = [_moved(top, (0, 0, height - thickness / 2))]
    for x, y in legs:
        parts.append(_moved(_cylinder(leg_radius, height - thickness, sections=10, z0=0.0), (x, y, 0)))
    return parts


def _dumbbell(rng: np.random.Generator) -> Parts:
    half_length, bar_radius = rng.uniform(0.7, 1.0), rng.uniform(0.07, 0.12)
    bar = _moved(_cylinder(bar_radius, 2 * half_length, sections=14), rotation=_rotation("y", 90))
    parts = [bar]
    for side in (-1, 1):
        if rng.random() < 0.5:  # ball weights
            weight = trimesh.creation.icosphere(subdivisions=2, radius=rng.uniform(0.28, 0.42))
        else:  # disc weights
            weight = _moved(_cylinder(rng.uniform(0.3, 0.45), rng.uniform(0.15, 0.3)), rotation=_rotation("y", 90))
        parts.append(_moved(weight, (side * half_length, 0, 0)))
    return parts


def _capsule(rng: np.random.Generator) -> Parts:
    mesh = trimesh.creation.capsule(height=rng.uniform(0.8, 1.6), radius=rng.uniform(0.3, 0.5), count=[16, 12])
    return [_moved(mesh, rotation=_rotation("x", rng.uniform(0, 90)))]


def _lamp(rng: np.random.Generator) -> Parts:
    base_radius, pole_height = rng.uniform(0.35, 0.5), rng.uniform(1.0, 1.5)
    shade_bottom, shade_top, shade_height = rng.uniform(0.45, 0.7), rng.uniform(0.2, 0.35), rng.uniform(0.45, 0.7)
    z = pole_height
    return [
        _cylinder(base_radius, 0.1, z0=0.0),
        _cylinder(0.05, pole_height, sections=10, z0=0.0),
        _lathe([(0, z - 0.2), (shade_bottom, z - 0.2), (shade_top, z - 0.2 + shade_height), (0, z - 0.2 + shade_height)]),
    ]


def _mushroom(rng: np.random.Generator) -> Parts:
    stem_radius, stem_height = rng.uniform(0.15, 0.3), rng.uniform(0.6, 1.1)
    cap_radius, cap_height = rng.uniform(0.6, 1.0), rng.uniform(0.3, 0.6)
    stem = _lathe([(0, 0), (stem_radius * 1.2, 0), (stem_radius, stem_height * 0.5), (stem_radius * 0.9, stem_height), (0, stem_height)], 20)
    arc = np.linspace(0, np.pi / 2, 8)
    z0 = stem_height - 0.1
    cap = _lathe([(0, z0)] + [(cap_radius * np.cos(a), z0 + cap_height * np.sin(a)) for a in arc])
    return [stem, cap]


def _bottle(rng: np.random.Generator) -> Parts:
    radius, body = rng.uniform(0.3, 0.45), rng.uniform(0.9, 1.3)
    neck_radius, neck = rng.uniform(0.09, 0.15), rng.uniform(0.35, 0.6)
    shoulder = rng.uniform(0.2, 0.35)
    return [_lathe([
        (0, 0), (radius, 0), (radius, body), (neck_radius, body + shoulder),
        (neck_radius, body + shoulder + neck), (neck_radius * 1.25, body + shoulder + neck),
        (neck_radius * 1.25, body + shoulder + neck + 0.06), (0, body + shoulder + neck + 0.06),
    ], sections=24)]


def _chair(rng: np.random.Generator) -> Parts:
    width, seat_height, back_height = rng.uniform(0.9, 1.2), rng.uniform(0.7, 0.9), rng.uniform(0.7, 1.1)
    thickness, leg_radius = 0.1, rng.uniform(0.04, 0.07)
    seat = _moved(trimesh.creation.box(extents=[width, width, thickness]).subdivide().subdivide(), (0, 0, seat_height))
    back = _moved(
        trimesh.creation.box(extents=[width, thickness, back_height]).subdivide().subdivide(),
        (0, width / 2 - thickness / 2, seat_height + back_height / 2),
    )
    legs = [_moved(_cylinder(leg_radius, seat_height, sections=10, z0=0.0), (x, y, 0))
            for x, y in _leg_positions(width / 2 - 0.08, width / 2 - 0.08)]
    return [seat, back, *legs]


_BUILDERS: dict[str, Callable[[np.random.Generator], Parts]] = {
    "sphere": _sphere,
    "box": _box,
    "cylinder": _cylinder_shape,
    "cone": _cone,
    "torus": _torus,
    "mug": _mug,
    "table": _table,
    "dumbbell": _dumbbell,
    "capsule": _capsule,
    "lamp": _lamp,
    "mushroom": _mushroom,
    "bottle": _bottle,
    "chair": _chair,
}
assert set(_BUILDERS) == set(CATEGORIES)


# ----------------------------------------------------------------------------- deformation


def _deform(vertices: np.ndarray, normals: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Per-instance shape change: anisotropic scale, taper, twist, bend and smooth bumps.

    ``strength`` is 1 for single primitives and smaller for compound objects, whose
    parts must stay recognisable (a table leg bent too far stops being a table).
    """
    v = vertices - vertices.mean(axis=0)
    extent = np.abs(v).max()
    v = v / extent
    v = v * rng.uniform(1 - 0.25 * strength, 1 + 0.25 * strength, size=3)
    z = v[:, 2:3]
    v[:, :2] *= 1 + rng.uniform(-0.3, 0.3) * strength * z  # taper
    twist = rng.uniform(-0.9, 0.9) * strength * v[:, 2]
    c, s = np.cos(twist), np.sin(twist)
    v[:, 0], v[:, 1] = c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]
    v[:, 0] += rng.uniform(-0.25, 0.25) * strength * v[:, 2] ** 2  # bend
    # Smooth noise: a few random plane waves, displacing along the vertex normals.
    waves = rng.normal(size=(3, 3)) * rng.uniform(2.0, 5.0)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    bumps = np.sin(v @ waves.T + phases).sum(axis=1) / 3
    v += normals * (rng.uniform(0.0, 0.05) * strength * bumps)[:, None]
    return v * extent


# ----------------------------------------------------------------------------- paint


def _palette(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` saturated, bright-enough RGB colours with well-separated hues."""
    hue0 = rng.random()
    hues = (hue0 + np.arange(count) / count + rng.uniform(-0.06, 0.06, count)) % 1.0
    rng.shuffle(hues)
    colours = [
        colorsys.hsv_to_rgb(h, rng.uniform(0.45, 0.95), rng.uniform(0.6, 1.0)) for h in hues
    ]
    if rng.random() < 0.3:  # some objects carry white or light grey too
        colours[-1] = (rng.uniform(0.8, 0.95),) * 3
    return np.asarray(colours, np.float32)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _pattern(centroids: np.ndarray, rng: np.random.Generator, colours: int) -> np.ndarray:
    """A colour index per face from a random surface pattern (object coordinates)."""
    kind = rng.choice(["stripes", "patches", "checks", "sides"])
    if kind == "stripes":
        along = centroids @ _unit(rng)
        return np.floor(along * rng.uniform(2.0, 4.5) + rng.random()).astype(int) % colours
    if kind == "patches":  # Voronoi cells around random points
        seeds = rng.normal(size=(int(rng.integers(4, 10)), 3))
        seeds /= np.linalg.norm(seeds, axis=1, keepdims=True)
        labels = rng.integers(0, colours, size=len(seeds))
        labels[: min(colours, len(seeds))] = np.arange(min(colours, len(seeds)))
        nearest = np.argmin(((centroids[:, None] - seeds[None]) ** 2).sum(-1), axis=1)
        return labels[nearest]
    if kind == "checks":
        azimuth = np.arctan2(centroids[:, 1], centroids[:, 0]) + np.pi
        ring = np.floor(azimuth / (2 * np.pi) * int(rng.integers(3, 7)))
        band = np.floor((centroids[:, 2] + 1) * rng.uniform(1.0, 2.5))
        return (ring + band).astype(int) % colours
    # "sides": the object's halves/quadrants differ, like a label on one side of a can
    first, second = _unit(rng), _unit(rng)
    return ((centroids @ first > rng.uniform(-0.2, 0.2)).astype(int)
            + 2 * (centroids @ second > rng.uniform(-0.2, 0.4)).astype(int)) % colours


def _paint(centroids: np.ndarray, part_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-face albedo: a pattern over the palette, parts offset, slight per-face jitter."""
    colours = int(rng.integers(2, 5))
    palette = _palette(rng, colours)
    index = (_pattern(centroids, rng, colours) + part_ids) % colours
    jitter = rng.uniform(0.92, 1.0, size=(len(centroids), 1)).astype(np.float32)
    return np.clip(palette[index] * jitter, 0.0, 1.0)


# ----------------------------------------------------------------------------- public


def make_object(category: str, rng: np.random.Generator) -> ObjectMesh:
    """Build, deform and paint one random instance of ``category`` (one of :data:`CATEGORIES`)."""
    if category not in _BUILDERS:
        raise ValueError(f"unknown shape category {category!r}; choose from {', '.join(CATEGORIES)}")
    parts = _BUILDERS[category](rng)
    mesh = trimesh.util.concatenate(parts)
    part_ids = np.repeat(np.arange(len(parts)), [len(p.faces) for p in parts])
    strength = 1.0 if len(parts) == 1 else 0.45
    vertices = _deform(np.asarray(mesh.vertices), np.asarray(mesh.vertex_normals), rng, strength)
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    vertices = vertices - (lo + hi) / 2
    vertices /= np.linalg.norm(vertices, axis=1).max()
    faces = np.asarray(mesh.faces, np.int64)
    triangles = vertices[faces]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    keep = lengths > 1e-12  # drop degenerate faces (revolve's poles can make them)
    faces, normals, triangles = faces[keep], normals[keep] / lengths[keep, None], triangles[keep]
    albedo = _paint(triangles.mean(axis=1), part_ids[keep], rng)
    return ObjectMesh(category, vertices, faces, normals, albedo)
