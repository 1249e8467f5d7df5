"""A small vectorised rasteriser for painted meshes: perspective camera, Lambert shading.

Painter's algorithm with OpenCV: back faces are culled, the rest sorted far to near and
filled with ``cv2.fillConvexPoly``. Faces are drawn as their indices (a face-id buffer)
and coloured afterwards with flat Lambertian shading (directional RGB lights plus an
ambient term), so one rasterised view can be relit under many lights for the cost of a
lookup: deferred shading. Images are drawn at ``supersample`` times the output size with
sub-pixel vertex positions and shrunk with ``cv2.INTER_AREA``, which anti-aliases the
edges. Projection and shading are numpy over all faces; only the polygon fill is a
Python loop (about 2-3 microseconds a face).

World coordinates are Z-up; the object sits at the origin.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from datasets.synthetic.shapes import ObjectMesh

# Fixed-point bits for cv2.fillConvexPoly: vertices are placed to 1/16 pixel.
_SHIFT = 4
# Wavelengths (m) standing in for the camera's R, G and B channels.
_RGB_WAVELENGTHS = np.array([610e-9, 550e-9, 465e-9])
_PLANCK_C2 = 1.4388e-2  # h c / k, metre kelvin


def direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector from the origin towards azimuth/elevation (degrees).

    Azimuth 0 is the front (-Y, where the default camera stands), positive azimuth
    turns counter-clockwise seen from above; elevation is up from the ground plane.
    """
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.array([np.sin(az) * np.cos(el), -np.cos(az) * np.cos(el), np.sin(el)])


def rotation_z(degrees: float) -> np.ndarray:
    """Rotation about the vertical axis: the turntable."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_about(axis: np.ndarray, degrees: float) -> np.ndarray:
    """Rotation by ``degrees`` about a unit ``axis`` (Rodrigues' formula)."""
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    angle = np.radians(degrees)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def blackbody_rgb(kelvin: float, white_kelvin: float = 6500.0) -> np.ndarray:
    """RGB colour of a black body at ``kelvin``, white-balanced for ``white_kelvin``.

    Planck's law evaluated at one wavelength per channel (610/550/465 nm), divided by
    the same for the white point (a camera white-balanced at ``white_kelvin`` sees
    that light as neutral), then scaled to unit luminance (Rec. 709 weights) so only
    the colour balance changes, not the exposure.
    """
    def planck(t: float) -> np.ndarray:
        return _RGB_WAVELENGTHS ** -5 / np.expm1(_PLANCK_C2 / (_RGB_WAVELENGTHS * t))

    rgb = planck(kelvin) / planck(white_kelvin)
    return rgb / (rgb @ np.array([0.2126, 0.7152, 0.0722]))


@dataclass(frozen=True)
class Camera:
    """A pinhole camera on a sphere around the origin, looking at it, Z up."""

    azimuth_deg: float = 0.0
    elevation_deg: float = 20.0
    distance: float = 4.0
    fov_deg: float = 34.0

    @property
    def position(self) -> np.ndarray:
        return self.distance * direction(self.azimuth_deg, self.elevation_deg)

    def axes(self) -> np.ndarray:
        """Rows: right, up, forward (world coordinates)."""
        forward = -self.position / np.linalg.norm(self.position)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        if np.linalg.norm(right) < 1e-9:  # looking straight down or up
            right = np.array([1.0, 0.0, 0.0])
        right /= np.linalg.norm(right)
        return np.stack([right, np.cross(right, forward), forward])


@dataclass(frozen=True)
class Lighting:
    """Directional lights (unit vectors towards each lamp, RGB intensities) and ambient RGB."""

    directions: np.ndarray
    colours: np.ndarray
    ambient: np.ndarray = field(default_factory=lambda: np.full(3, 0.15))

    def irradiance(self, normals: np.ndarray) -> np.ndarray:
        """Lambertian irradiance (F, 3) at faces with unit ``normals`` (F, 3)."""
        cosines = np.clip(normals @ np.asarray(self.directions).T, 0.0, None)
        return np.asarray(self.ambient)[None] + cosines @ np.asarray(self.colours)


@dataclass(frozen=True)
class Pose:
    """Where the object is: ``rotation`` (3x3), uniform ``scale``, world ``offset``."""

    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    scale: float = 1.0
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))


def rasterize(obj: ObjectMesh, pose: Pose, camera: Camera, size: int) -> np.ndarray:
    """Which face each pixel of a ``size`` x ``size`` view shows: (size, size) int32, -1 for none.

    Painter's algorithm: faces turned away from the camera are culled, the rest filled
    far to near so nearer faces overwrite farther ones.
    """
    world = (obj.vertices * pose.scale) @ pose.rotation.T + pose.offset
    normals = obj.face_normals @ pose.rotation.T
    eye = camera.position
    facing = np.einsum("ij,ij->i", normals, eye - world[obj.faces].mean(axis=1)) > 0

    cam = (world - eye) @ camera.axes().T  # x right, y up, z forward
    depth = cam[:, 2]
    if depth.min() <= 1e-3:
        raise ValueError("the object reaches behind the camera; move the camera back")
    focal = (size / 2) / np.tan(np.radians(camera.fov_deg) / 2)
    pixels = np.stack([size / 2 + focal * cam[:, 0] / depth, size / 2 - focal * cam[:, 1] / depth], axis=1)

    visible = np.flatnonzero(facing)
    visible = visible[np.argsort(-depth[obj.faces[visible]].mean(axis=1), kind="stable")]  # far to near
    polygons = list(np.round(pixels[obj.faces[visible]] * (1 << _SHIFT)).astype(np.int32))
    face_ids = np.full((size, size), -1, np.int32)
    fill = cv2.fillConvexPoly
    for polygon, face in zip(polygons, visible.tolist()):
        fill(face_ids, polygon, face, cv2.LINE_8, _SHIFT)  # positional: keyword parsing is slow
    return face_ids


def shade(obj: ObjectMesh, pose: Pose, lighting: Lighting) -> np.ndarray:
    """Flat-shaded colour of every face, (F, 3) uint8 RGB: albedo times Lambertian irradiance."""
    irradiance = lighting.irradiance(obj.face_normals @ pose.rotation.T)
    return np.clip(obj.albedo * irradiance * 255.0 + 0.5, 0, 255).astype(np.uint8)


def compose(
    face_ids: np.ndarray,
    face_colours: np.ndarray,
    image_size: int,
    background: np.ndarray | tuple[int, int, int] = (6, 6, 8),
) -> np.ndarray:
    """Paint shaded faces over ``background`` and shrink to ``image_size`` (anti-aliasing).

    ``background`` is an RGB colour or an RGB uint8 image the size of ``face_ids``.
    """
    size = face_ids.shape[0]
    if isinstance(background, np.ndarray) and background.ndim == 3:
        if background.shape != (size, size, 3):
            raise ValueError(f"background must be {(size, size, 3)}, got {background.shape}")
        covered = (face_ids >= 0)[..., None]
        canvas = np.where(covered, np.take(face_colours, face_ids, axis=0), background.astype(np.uint8, copy=False))
    else:
        # Face id -1 (no face) picks the last row of the lookup table: the background colour.
        lookup = np.vstack([face_colours, np.asarray(background, np.uint8)[None]])
        canvas = np.take(lookup, face_ids, axis=0)  # 3x faster than lookup[face_ids]
    if size == image_size:
        return canvas
    return cv2.resize(canvas, (image_size, image_size), interpolation=cv2.INTER_AREA)


def render(
    obj: ObjectMesh,
    pose: Pose,
    camera: Camera,
    lighting: Lighting,
    image_size: int,
    background: np.ndarray | tuple[int, int, int] = (6, 6, 8),
    supersample: int = 2,
) -> np.ndarray:
    """Render ``obj`` to an ``image_size`` x ``image_size`` RGB uint8 image.

    Drawn at ``supersample`` times the size and shrunk. ``background`` is an RGB
    colour or an RGB uint8 image of size ``image_size * supersample``. To relight one
    view cheaply, call :func:`rasterize` once and :func:`shade`/:func:`compose` per light.
    """
    face_ids = rasterize(obj, pose, camera, image_size * supersample)
    return compose(face_ids, shade(obj, pose, lighting), image_size, background)


def write_png(path, image_rgb: np.ndarray, compression: int = 1) -> None:
    """Write an RGB uint8 image as a 24-bit PNG (OpenCV writes BGR).

    zlib level 1 by default: for small images it is twice as fast as the default and
    the files are barely larger.
    """
    if not cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, compression]):
        raise OSError(f"could not write {path}")
