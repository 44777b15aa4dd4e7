"""A child's chest as attenuation layers: soft tissue, lungs, heart, airways, bones, vessels.

:func:`sample_anatomy` draws one patient (age, size, build and the shapes that follow from
them); :func:`build_thorax` projects that patient, in a given :class:`Pose`, onto a pixel grid
as attenuation along the rays, in units of "soft-tissue thickness" (1.0 is about the
antero-posterior depth of a child's chest). Layers add, so overlapping structures (a rib
over a vessel over the heart) add up the way they do on film.

Conventions (see :mod:`pneumo_lib.data.radiograph`): patient frame ``X`` to the image's right
(the patient's left), ``Y`` down; lung side ``s = -1`` is the patient's right lung (image
left), ``s = +1`` the left lung (image right), and ``u = s * (X - mediastinum)`` runs from
the midline outwards.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

#: Sides of the lung fields: the patient's right (image left) and left (image right).
SIDES = {"right": -1, "left": 1}


@dataclass(frozen=True)
class Anatomy:
    """One patient's anatomy (patient frame units; the lungs span about 1.2 in ``Y``).

    Attributes:
        age: Age in years (0.3 to 12).
        lung_width: Half-width of the lung fields at their base (0.62 to 0.8).
        body_margin: Soft tissue lateral to the ribs (0.1 to 0.22; larger = heavier build).
        build: Soft-tissue thickness factor (0.85 to 1.2).
        apex: ``Y`` of the lung apices (about -0.72).
        base: ``Y`` of the costophrenic angles at normal inspiration (about 0.45).
        right_lift: How much higher the right hemidiaphragm dome is (0.03 to 0.08).
        heart_ratio: Cardiothoracic ratio (about 0.58 in infants, 0.5 at 10 years).
        mediastinum: Half-width of the upper mediastinum (0.07 to 0.1).
        thymus: Extra upper-mediastinal width of the infant thymus (0 after about 3 years).
        rib_gap: Vertical spacing of the posterior ribs at the spine (about 0.11).
        rib_width: Height of a posterior rib (0.028 to 0.04).
        rib_arch: How much the posterior ribs arch upwards (more horizontal in infants).
        trachea: ``X`` offset of the trachea (slightly to the patient's right).
        vessel_seed: Seed of the bronchovascular tree's branching.
    """

    age: float
    lung_width: float
    body_margin: float
    build: float
    apex: float
    base: float
    right_lift: float
    heart_ratio: float
    mediastinum: float
    thymus: float
    rib_gap: float
    rib_width: float
    rib_arch: float
    trachea: float
    vessel_seed: int


def sample_anatomy(rng: np.random.Generator, age: float) -> Anatomy:
    """A random patient of ``age`` years (draws a fixed number of values from ``rng``)."""
    u = rng.random(14)
    young = float(np.clip(1 - age / 6, 0, 1))  # 1 for a newborn, 0 from 6 years on
    return Anatomy(
        age=float(age),
        lung_width=0.64 + 0.1 * u[0] + 0.04 * young,
        body_margin=0.1 + 0.1 * u[1],
        build=0.85 + 0.3 * u[2],
        apex=-0.75 + 0.06 * u[3],
        base=0.42 + 0.08 * u[4],
        right_lift=0.03 + 0.05 * u[5],
        heart_ratio=float(np.clip(0.5 + 0.08 * young + 0.05 * (u[6] - 0.5), 0.44, 0.64)),
        mediastinum=0.07 + 0.03 * u[7],
        thymus=young * young * (0.04 + 0.08 * u[8]),
        rib_gap=0.104 + 0.016 * u[9],
        rib_width=0.028 + 0.012 * u[10],
        rib_arch=0.22 + 0.12 * u[11] + 0.08 * (1 - young),
        trachea=-0.02 + 0.025 * u[12],
        vessel_seed=int(u[13] * 2**31),
    )


@dataclass(frozen=True)
class Pose:
    """How the patient lies in one study (set by :mod:`.acquisition`).

    Attributes:
        rotation: In-plane rotation in degrees (positive = clockwise on the image).
        shift: ``(dx, dy)`` of the patient in image units (the image height is 2).
        zoom: Patient size in the field (1 = lungs fill about 60% of the height).
        inspiration: Depth of inspiration (1 normal; 0.85 shallow, diaphragm high; 1.1 deep).
        axial: Rotation about the body axis as a mediastinal offset in ``X`` (-0.06 to 0.06).
        tilt: Lordotic tilt: clavicles projected higher (positive) or lower.
        arms_up: Arms raised beside the head (else down by the sides).
    """

    rotation: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    zoom: float = 1.0
    inspiration: float = 1.0
    axial: float = 0.0
    tilt: float = 0.0
    arms_up: bool = True


@dataclass
class Thorax:
    """One patient in one pose projected on a grid of ``(h, w)`` pixels.

    Attributes:
        X, Y: Patient-frame coordinates of every pixel, float32 ``(h, w)``.
        attenuation: Total attenuation along each ray, float32 ``(h, w)``, 0 outside the
            body, about 0.3-0.5 in the lungs, 1-1.4 over mediastinum, spine and abdomen.
        lung_region: ``{side: float32 (h, w)}`` in [0, 1], 0 outside that lung field,
            rising to 1 within about 0.1 of its border.
        lung_air: ``{side: float32 (h, w)}``: the attenuation the air in that lung removes
            (what a consolidation gives back), >= 0.
        bronchi: float32 ``(h, w)`` in [0, 1]: the airway lumens of the first branchings
            (seen as air bronchograms inside a consolidation).
        vessels: float32 ``(h, w)`` >= 0: the bronchovascular markings' attenuation.
        labels: Boolean ``(h, w)`` label maps: ``body``, ``lung_right``, ``lung_left``,
            ``heart``, ``spine``, ``below_diaphragm_right``, ``below_diaphragm_left``.
        hila: ``{side: (X, Y)}`` of each hilum; ``fissure``: ``Y`` of the right horizontal
            fissure; ``domes``: ``{side: Y}`` of each hemidiaphragm's top;
            ``heart_border``: ``{side: X}`` of the heart's right and left borders at its widest.
        to_pixels: Maps patient ``(X, Y)`` arrays to ``(column, row)`` pixel arrays.
        scale: Pixels per patient unit.
    """

    X: np.ndarray
    Y: np.ndarray
    attenuation: np.ndarray
    lung_region: dict
    lung_air: dict
    bronchi: np.ndarray
    vessels: np.ndarray
    labels: dict
    hila: dict
    fissure: float
    domes: dict
    heart_border: dict
    to_pixels: object = field(repr=False)
    scale: float = 1.0
    mediastinum_x: float = 0.0


def _ramp(v: np.ndarray, width: float) -> np.ndarray:
    return np.clip(v / width, 0.0, 1.0)


class _Canvas:
    """Float layers drawn with PIL in patient coordinates (lines, ellipses, polygons)."""

    def __init__(self, h: int, w: int, to_pixels, scale: float):
        self.h, self.w, self.to_pixels, self.scale = h, w, to_pixels, scale

    def layer(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        im = Image.new("F", (self.w, self.h), 0.0)
        return im, ImageDraw.Draw(im)

    def points(self, xs, ys) -> list[tuple[float, float]]:
        cols, rows = self.to_pixels(np.asarray(xs, float), np.asarray(ys, float))
        return list(zip(cols.tolist(), rows.tolist()))

    def px(self, length: float) -> int:
        return max(1, int(round(length * self.scale)))


def build_thorax(anatomy: Anatomy, pose: Pose, h: int, w: int, gas_rng: np.random.Generator) -> Thorax:
    """Project ``anatomy`` in ``pose`` onto an ``(h, w)`` grid (see :class:`Thorax`).

    ``gas_rng`` draws what changes from one study of a patient to the next besides the
    pose (bowel gas, the stomach bubble).
    """
    a, p = anatomy, pose
    aspect = (w - 1) / (h - 1)
    theta = math.radians(p.rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    dx, dy = p.shift
    xs = np.linspace(-aspect, aspect, w, dtype=np.float32)[None, :] - dx
    ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None] - dy
    X = ((cos * xs + sin * ys) / p.zoom).astype(np.float32)
    Y = ((-sin * xs + cos * ys) / p.zoom).astype(np.float32)
    scale = p.zoom * (h - 1) / 2

    def to_pixels(px_, py_):
        x = p.zoom * (cos * px_ - sin * py_) + dx
        y = p.zoom * (sin * px_ + cos * py_) + dy
        return (x + aspect) * (w - 1) / (2 * aspect), (y + 1) * (h - 1) / 2

    canvas = _Canvas(h, w, to_pixels, scale)
    xm = p.axial  # the mediastinum moves against the spine when the patient is rotated
    insp = p.inspiration
    base = a.apex + (a.base - a.apex) * insp
    L = a.lung_width * (0.96 + 0.04 * insp)
    body_w = L + a.body_margin

    # Soft tissue: neck, shoulders, chest wall, upper abdomen; an elliptical cross-section.
    half = np.interp(Y, [-1.4, -1.02, -0.84, -0.55, 0.35, 0.8, 1.4],
                     [0.26, 0.27, body_w + 0.06, body_w - 0.03, body_w + 0.04, body_w, body_w * 0.92]).astype(np.float32)
    depth = np.interp(Y, [-1.2, -0.85, -0.6, 1.4], [0.55, 0.85, 1.0, 1.05]).astype(np.float32)
    body = a.build * depth * np.sqrt(np.clip(1 - (X / half) ** 2, 0, 1))
    shoulder_y = -0.86
    for sx in (-1, 1):  # upper arms: capsules from the shoulders, raised or by the sides
        start = np.array([sx * (body_w + 0.0), shoulder_y])
        end = np.array([sx * (body_w + 0.3), -1.7]) if p.arms_up else np.array([sx * (body_w + 0.12), 0.9])
        seg = end - start
        t = np.clip(((X - start[0]) * seg[0] + (Y - start[1]) * seg[1]) / float(seg @ seg), 0, 1)
        dist2 = (X - start[0] - t * seg[0]) ** 2 + (Y - start[1] - t * seg[1]) ** 2
        body = np.maximum(body, 0.6 * a.build * np.sqrt(np.clip(1 - dist2 / 0.02, 0, 1)))

    # Lung fields: rounded apices, lateral costal margins, mediastinum and heart medially,
    # hemidiaphragm domes below (the right one higher), sharp costophrenic angles.
    fissure = -0.12 + 0.1 * (insp - 1)
    regions, airs, labels, domes = {}, {}, {}, {}
    heart_a = a.heart_ratio * L
    heart_b = 0.27 + 0.03 * a.heart_ratio
    dome_left = base - 0.55 * (L - 0.33) ** 2
    heart_cx, heart_cy = xm + heart_a / 3, dome_left + 0.02 - 0.8 * heart_b
    hx, hy = X - heart_cx, Y - heart_cy
    c20, s20 = math.cos(0.35), math.sin(0.35)
    rr = np.sqrt(((c20 * hx + s20 * hy) / heart_a) ** 2 + ((-s20 * hx + c20 * hy) / heart_b) ** 2)
    heart = _ramp(1 - rr, 0.08)
    air_fraction = 0.74 + 0.12 * (insp - 1)
    for name, s in SIDES.items():
        u = s * (X - xm)
        lateral = L * (0.5 + 0.5 * np.sqrt(np.clip((Y - a.apex) / 0.55, 0, 1)))
        medial = a.mediastinum + a.thymus * np.clip((-0.2 - Y) / 0.3, 0, 1)
        if s == 1:  # aortic knob
            medial = medial + 0.045 * np.exp(-(((Y + 0.42) / 0.07) ** 2))
        top = a.apex + 0.8 * (u - 0.3) ** 2
        dome = dome_left - (a.right_lift if s == -1 else 0.0)
        domes[name] = float(dome)
        dia = np.where(u > 0.33, dome + 0.55 * (u - 0.33) ** 2, dome + 0.3 * (0.33 - u) ** 2)
        inside = np.minimum(np.minimum(u - medial, lateral - u), np.minimum(Y - top, dia - Y))
        region = _ramp(inside, 0.1)
        regions[name] = region
        lung_depth = 0.62 * a.build * np.sqrt(region) * (1 - 0.65 * heart)
        airs[name] = (air_fraction * lung_depth).astype(np.float32)
        labels[f"lung_{name}"] = inside > 0
        labels[f"below_diaphragm_{name}"] = (Y > dia) & (u > 0.12) & (u < lateral)
    labels["heart"] = (rr < 1) & (Y < dome_left + 0.02)
    labels["body"] = body > 0.02

    # Airways: trachea to the carina, main bronchi to the hila.
    hila = {"right": (xm - 0.19, -0.17 + 0.05 * (insp - 1)), "left": (xm + 0.2, -0.22 + 0.05 * (insp - 1))}
    carina = (xm + a.trachea, -0.4 + 0.04 * (insp - 1))
    airway, draw = canvas.layer()
    draw.line(canvas.points([a.trachea + xm * 0.5, carina[0]], [-1.5, carina[1]]), fill=1.0, width=canvas.px(0.05))
    for name in SIDES:
        hxy = hila[name]
        draw.line(canvas.points([carina[0], hxy[0]], [carina[1], hxy[1]]), fill=0.8, width=canvas.px(0.03))

    # Bones: spine (vertebral bodies, pedicles, spinous processes), ribs, clavicles, scapulae,
    # each set on its own layer so that where they overlap their attenuations add.
    spine, draw_s = canvas.layer()
    pedicles, draw_d = canvas.layer()
    pitch = a.rib_gap * (0.9 + 0.1 * insp)
    yv = a.apex - 0.06 + np.arange(-2, 16) * pitch
    ring = canvas.px(0.008)
    for k, (body_box, right, left, process) in enumerate(zip(
            _boxes(canvas, -0.07, yv - 0.36 * pitch, 0.07, yv + 0.36 * pitch),
            _boxes(canvas, -0.071, yv - 0.3 * pitch, -0.039, yv + 0.05 * pitch),
            _boxes(canvas, 0.039, yv - 0.3 * pitch, 0.071, yv + 0.05 * pitch),
            _boxes(canvas, -0.012, yv + 0.1 * pitch, 0.012, yv + 0.4 * pitch))):
        draw_s.rectangle(body_box, fill=0.11)
        draw_d.ellipse(right, outline=0.1, width=ring)
        draw_d.ellipse(left, outline=0.1, width=ring)
        draw_d.ellipse(process, fill=0.05)
    labels["spine"] = np.asarray(spine) > 0.05
    posterior, draw_p = canvas.layer()
    anterior, draw_a = canvas.layer()
    uu = np.linspace(0.04, L + 0.05, 16)
    for k in range(10):
        ys_ = a.apex - 0.03 + k * pitch
        # Posterior ribs: up from the spine, arching, then down along the lateral wall.
        rise = (-a.rib_arch * uu + 0.9 * a.rib_arch * uu**2 / max(L, 0.5)
                + 2.5 * np.maximum(0, uu - (L - 0.12)) ** 2) * (1.05 - 0.3 * (insp - 1))
        for sx in (-1, 1):
            pts = canvas.points(sx * uu, ys_ + rise)
            width = canvas.px(a.rib_width)
            draw_p.line(pts, fill=1.0, width=width, joint="curve")
            if width >= 3:
                draw_p.line(pts, fill=0.55, width=max(1, width - 2), joint="curve")
            if k < 8:  # anterior ribs: from the lateral wall down towards the sternum, fainter
                ua = np.linspace(L + 0.02, 0.2, 10)
                ya = ys_ + 0.16 + 0.62 * (L - ua) - 0.25 * (L - ua) ** 2
                draw_a.line(canvas.points(sx * ua, ya), fill=0.5, width=canvas.px(1.3 * a.rib_width), joint="curve")
    clav, draw = canvas.layer()
    for sx in (-1, 1):
        t = np.linspace(0, 1, 12)
        cu = 0.06 + 0.58 * t
        cy = (a.apex - 0.04 - p.tilt) - 0.08 * t + 0.02 * np.sin(2 * np.pi * t) + sx * p.axial * 0.3
        pts = canvas.points(xm * 0.5 + sx * cu, cy)
        width = canvas.px(0.038)
        draw.line(pts, fill=1.0, width=width, joint="curve")
        if width >= 3:
            draw.line(pts, fill=0.6, width=max(1, width - 2), joint="curve")
    scapulae, draw = canvas.layer()
    for sx in (-1, 1):
        scap = [(sx * (L - 0.1), a.apex - 0.08), (sx * (L - 0.02), -0.18), (sx * (L + 0.14), -0.42),
                (sx * (L + 0.12), a.apex - 0.14)]
        draw.polygon(canvas.points(*zip(*scap)), fill=0.3)
        if not p.arms_up:  # humeral heads at the shoulders
            c = sx * (body_w + 0.04)
            draw.ellipse(_box(canvas, c - 0.1, shoulder_y - 0.08, c + 0.1, shoulder_y + 0.12), fill=0.9)
    bones = (np.asarray(spine) + np.asarray(pedicles) + 0.1 * np.asarray(posterior) + 0.06 * np.asarray(anterior)
             + 0.14 * np.asarray(clav) + 0.18 * np.asarray(scapulae))
    bones = ndimage.gaussian_filter(bones, max(0.5, 0.004 * scale))

    # Bronchovascular markings: branching, tapering trees from the hila.
    vessels, bronchi = _vessel_tree(canvas, a, hila, regions)
    lung_any = np.maximum(regions["right"], regions["left"])

    # Abdomen: the stomach bubble under the left dome, some bowel gas (drawn on the airway layer).
    draw = ImageDraw.Draw(airway)
    if gas_rng.random() < 0.7:
        gx = xm + 0.3 + 0.1 * gas_rng.random()
        gy = dome_left + 0.1 + 0.05 * gas_rng.random()
        draw.ellipse(_box(canvas, gx - 0.1, gy - 0.05, gx + 0.1, gy + 0.06), fill=0.6 + 0.5 * gas_rng.random())
    for _ in range(int(gas_rng.integers(0, 6))):
        gx, gy = gas_rng.uniform(-0.5, 0.5), gas_rng.uniform(dome_left + 0.3, 1.3)
        r = gas_rng.uniform(0.03, 0.08)
        draw.ellipse(_box(canvas, gx - r, gy - r, gx + r, gy + r), fill=0.45)
    air = ndimage.gaussian_filter(np.asarray(airway), max(0.7, 0.01 * scale))

    attenuation = body + 0.03 * heart * a.build - airs["right"] - airs["left"] - 0.18 * air + bones + vessels
    attenuation = np.clip(attenuation, 0, None).astype(np.float32)
    border = {"right": float(heart_cx - heart_a), "left": float(heart_cx + heart_a)}
    return Thorax(X=X, Y=Y, attenuation=attenuation, lung_region=regions, lung_air=airs,
                  bronchi=bronchi, vessels=vessels * lung_any, labels=labels, hila=hila,
                  fissure=fissure, domes=domes, heart_border=border, to_pixels=to_pixels,
                  scale=scale, mediastinum_x=xm)


def _boxes(canvas: _Canvas, x0, y0, x1, y1) -> list[tuple[float, float, float, float]]:
    """Pixel bounding boxes of patient-frame boxes (arrays of corners), in one transform."""
    x0, y0, x1, y1 = np.broadcast_arrays(*(np.asarray(v, float) for v in (x0, y0, x1, y1)))
    cols, rows = canvas.to_pixels(np.stack([x0, x1, x0, x1]), np.stack([y0, y0, y1, y1]))
    return list(zip(cols.min(0).tolist(), rows.min(0).tolist(), cols.max(0).tolist(), rows.max(0).tolist()))


def _box(canvas: _Canvas, x0, y0, x1, y1) -> tuple[float, float, float, float]:
    """Pixel bounding box of a patient-frame box (its corners transformed, then bounded)."""
    cols, rows = canvas.to_pixels(np.array([x0, x1, x0, x1], float), np.array([y0, y0, y1, y1], float))
    return float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())


@functools.lru_cache(maxsize=256)
def _tree(vessel_seed: int) -> dict[str, np.ndarray]:
    """A patient's bronchovascular tree relative to each hilum (cached: every study shares it).

    Five trunks fan out from the hilum (up, up-out, out, down-out, down); each segment
    forks in two, 16-34 degrees either way, 0.7-0.88 as long and 0.7 as wide, four times.

    Returns:
        ``{side: float (n, 6)}`` segments ``(u0, y0, u1, y1, width, depth)``: ``u`` outwards
        from the hilum, ``y`` down, ``width`` in patient units, ``depth`` the branching order.
    """
    rng = np.random.default_rng(vessel_seed)
    out = {}
    for name in SIDES:
        ang = np.radians(np.array([-100.0, -55, -10, 35, 75]) + rng.uniform(-12, 12, 5))
        length = 0.17 * rng.uniform(0.85, 1.15, 5)
        u0 = y0 = np.zeros(5)
        width = 0.028
        levels = []
        for depth in range(5):
            u1, y1 = u0 + length * np.cos(ang), y0 + length * np.sin(ang)
            levels.append(np.stack([u0, y0, u1, y1, np.full_like(u0, width), np.full_like(u0, depth)], 1))
            n = len(u0)
            turn = np.radians(rng.uniform(16, 34, 2 * n)) * np.tile([-1.0, 1.0], n)
            ang = np.repeat(ang, 2) + turn
            length = np.repeat(length, 2) * rng.uniform(0.7, 0.88, 2 * n)
            u0, y0, width = np.repeat(u1, 2), np.repeat(y1, 2), width * 0.7
        out[name] = np.concatenate(levels)
    return out


def _vessel_tree(canvas: _Canvas, a: Anatomy, hila: dict, regions: dict):
    """Bronchovascular trees: vessels (attenuation) and the larger bronchi's lumens (0-1)."""
    vessels, draw_v = canvas.layer()
    bronchi, draw_b = canvas.layer()
    for name, seg in _tree(a.vessel_seed).items():
        s = SIDES[name]
        hx, hy = hila[name]
        draw_v.ellipse(_box(canvas, hx - 0.06, hy - 0.07, hx + 0.06, hy + 0.07), fill=0.1)
        c0, r0 = canvas.to_pixels(hx + s * seg[:, 0], hy + seg[:, 1])
        c1, r1 = canvas.to_pixels(hx + s * seg[:, 2], hy + seg[:, 3])
        widths = np.maximum(1, np.round(seg[:, 4] * canvas.scale)).astype(int).tolist()
        for k, (a0, b0, a1, b1) in enumerate(zip(c0.tolist(), r0.tolist(), c1.tolist(), r1.tolist())):
            draw_v.line((a0, b0, a1, b1), fill=float(3.2 * seg[k, 4]), width=widths[k])
            if seg[k, 5] < 3:
                draw_b.line((a0, b0, a1, b1), fill=1.0, width=max(1, int(round(0.45 * widths[k]))))
    sigma = max(0.5, 0.006 * canvas.scale)
    vessels = ndimage.gaussian_filter(np.asarray(vessels), sigma)
    bronchi = np.clip(ndimage.gaussian_filter(np.asarray(bronchi), sigma), 0, 1)
    lung_any = np.maximum(regions["right"], regions["left"])
    return (vessels * np.sqrt(lung_any)).astype(np.float32), (bronchi * lung_any).astype(np.float32)
