"""GIS outputs: vector layers, self-describing label rasters, pictures with a legend or a colour bar.

Every function here is pure with respect to how the result was made (whole image or tiles): it takes
the label map (H×W int, ``k`` = ``names[k]``, ``-1`` = background), the class names, a palette and the
source :class:`dglrsis.io.RasterMeta` (CRS, transform), and writes through :func:`dglrsis.io.atomic_path`
(so a :func:`dglrsis.io.transaction` groups them).

File encoding of label rasters: value 0 = background, ``k + 1`` = ``names[k]``; the nodata value
(255, or 65535 with more than 254 classes) marks pixels outside the input's valid data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from .errors import DglrsisError
from .io import RasterMeta, atomic_path, write_index_png, write_text

LABEL_EXTS = (".png", ".tif", ".tiff")
VECTOR_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}
EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG), for areas in geographic CRSs
# GeoPackage stores a "last change" time; fixed so that the same result gives the same bytes.
GPKG_TIMESTAMP = "2000-01-01T00:00:00.000Z"


# ============================================================================================ labels
def encode_labels(labels: np.ndarray, n_classes: int, valid: np.ndarray | None = None) -> np.ndarray:
    """H×W int (-1 = background) → file values (0 = background, k+1 = class k; nodata outside ``valid``).

    uint8 up to 254 classes (nodata 255), else uint16 (nodata 65535).
    """
    labels = np.asarray(labels)
    dtype = np.uint8 if n_classes <= 254 else np.uint16
    out = (labels.astype(np.int64) + 1).clip(0).astype(dtype)
    if valid is not None:
        out[~np.asarray(valid, bool)] = np.iinfo(dtype).max
    return out


def _affine(meta: RasterMeta | None):
    from rasterio.transform import Affine

    if meta is not None and meta.transform:
        return Affine(*tuple(meta.transform)[:6])
    return Affine.identity()


def _palette_entries(names: list[str], palette: list) -> list[tuple[int, str, tuple]]:
    """(file value, name, RGB) for background and every class."""
    rows = [(0, "background", tuple(palette[0]) if palette else (0, 0, 0))]
    for k, name in enumerate(names):
        rgb = tuple(palette[k + 1]) if palette and k + 1 < len(palette) else (128, 128, 128)
        rows.append((k + 1, name, tuple(int(v) for v in rgb)))
    return rows


def qml_style(names: list[str], palette: list) -> str:
    """A QGIS layer style (.qml) with a paletted renderer: one entry per value with its class name.

    QGIS applies ``X.qml`` automatically when it opens ``X.tif``.
    """
    entries = "\n".join(
        f'          <paletteEntry value="{v}" color="#{r:02x}{g:02x}{b:02x}" alpha="255" '
        f"label={quoteattr(n)}/>"
        for v, n, (r, g, b) in _palette_entries(names, palette)
    )
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28" styleCategories="Symbology">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
  </pipe>
</qgis>
"""


def rat_aux_xml(names: list[str], palette: list) -> str:
    """GDAL PAM sidecar (``X.tif.aux.xml``): category names and a raster attribute table
    (Value, Class, Red, Green, Blue) for band 1."""
    cats = "\n".join(
        f"      <Category>{escape(n)}</Category>" for _, n, _ in _palette_entries(names, palette)
    )
    rows = "\n".join(
        f'      <Row index="{i}"><F>{v}</F><F>{escape(n)}</F><F>{r}</F><F>{g}</F><F>{b}</F></Row>'
        for i, (v, n, (r, g, b)) in enumerate(_palette_entries(names, palette))
    )
    fields = [("Value", 0, 5), ("Class", 2, 2), ("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8)]
    defn = "\n".join(
        f'      <FieldDefn index="{i}"><Name>{n}</Name><Type>{t}</Type><Usage>{u}</Usage></FieldDefn>'
        for i, (n, t, u) in enumerate(fields)
    )
    return f"""<PAMDataset>
  <PAMRasterBand band="1">
    <CategoryNames>
{cats}
    </CategoryNames>
    <GDALRasterAttributeTable tableType="thematic">
{defn}
{rows}
    </GDALRasterAttributeTable>
  </PAMRasterBand>
</PAMDataset>
"""


def write_label_raster(
    path: str | os.PathLike,
    labels: np.ndarray,
    names: list[str],
    palette: list,
    meta: RasterMeta | None = None,
    valid: np.ndarray | None = None,
    cog: bool = True,
) -> list[Path]:
    """Write a label map that describes itself; returns the files written.

    ``.png``: index PNG with the palette. ``.tif``/``.tiff``: GeoTIFF with the source CRS and
    transform, a colour table, band description "class", band tags ``CLASS_<value>=<name>`` and
    ``CLASSES`` (JSON list), nodata, DEFLATE; with ``cog`` (default) a Cloud-Optimised GeoTIFF
    (512-px internal tiles, nearest-neighbour overviews); sidecars ``X.qml`` (QGIS style) and
    ``X.tif.aux.xml`` (category names + raster attribute table).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in LABEL_EXTS:
        raise DglrsisError(f"unsupported label output {path}: use .png or .tif")
    values = encode_labels(labels, len(names), valid)
    if ext == ".png":
        if values.dtype != np.uint8:
            raise DglrsisError(f"{len(names)} classes do not fit an index PNG; use .tif")
        write_index_png(path, values, palette)
        return [path]
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile

    h, w = values.shape
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": 1,
        "dtype": values.dtype.name,
        "nodata": int(np.iinfo(values.dtype).max),
    }
    if meta is not None and meta.crs:
        profile["crs"] = meta.crs
    if meta is not None and meta.transform:
        profile["transform"] = _affine(meta)
    entries = _palette_entries(names, palette)
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(values, 1)
            if values.dtype == np.uint8:
                dst.write_colormap(1, {v: rgb + (255,) for v, _, rgb in entries})
            dst.set_band_description(1, "class")
            dst.update_tags(1, CLASSES=json.dumps(["background", *names]))
            dst.update_tags(1, **{f"CLASS_{v}": n for v, n, _ in entries})
        with mem.open() as src, atomic_path(path, suffix=".tif") as tmp:
            opts = {"compress": "DEFLATE"}
            if cog:
                opts.update(driver="COG", blocksize=512, overview_resampling="nearest")
            else:
                opts.update(driver="GTiff", tiled=w >= 16 and h >= 16, blockxsize=256, blockysize=256)
            rasterio.shutil.copy(src, tmp, **opts)
    qml = path.with_suffix(".qml")
    aux = path.with_name(path.name + ".aux.xml")
    write_text(qml, qml_style(names, palette))
    write_text(aux, rat_aux_xml(names, palette))
    return [path, qml, aux]


def sidecars(path: str | os.PathLike) -> list[Path]:
    """The files :func:`write_label_raster` writes for ``path`` (for validation and manifests)."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        return [path, path.with_suffix(".qml"), path.with_name(path.name + ".aux.xml")]
    return [path]


# ============================================================================================ vectors
def area_field(meta: RasterMeta | None) -> str:
    """Name of the area attribute: ``area_m2`` (metric or geographic CRS), ``area_map_units`` (other
    projected units) or ``area_px`` (no georeference)."""
    if meta is None or not meta.crs:
        return "area_px"
    from rasterio.crs import CRS

    crs = CRS.from_user_input(meta.crs)
    if crs.is_geographic or (crs.linear_units or "").lower() in ("metre", "meter", "m"):
        return "area_m2"
    return "area_map_units"


def _geodesic_area(geom) -> float:
    """Area in m² of a lon/lat (degrees) polygon on a sphere of the mean Earth radius (≈0.3 % of the
    ellipsoidal area)."""
    import shapely

    def ring(coords) -> float:
        lon, lat = np.radians(coords[:, 0]), np.radians(coords[:, 1])
        return float(np.sum((np.roll(lon, -1) - lon) * (2 + np.sin(lat) + np.sin(np.roll(lat, -1))))) / 2

    total = 0.0
    for poly in getattr(geom, "geoms", [geom]):
        total += abs(ring(shapely.get_coordinates(poly.exterior)))
        total -= sum(abs(ring(shapely.get_coordinates(r))) for r in poly.interiors)
    return total * EARTH_RADIUS_M**2


def _area(geom, meta: RasterMeta | None) -> float:
    if area_field(meta) == "area_m2" and _is_geographic(meta):
        return _geodesic_area(geom)
    return float(geom.area)


def _is_geographic(meta: RasterMeta | None) -> bool:
    from rasterio.crs import CRS

    return bool(meta is not None and meta.crs and CRS.from_user_input(meta.crs).is_geographic)


def region_score(name: str, bounds: tuple, values: np.ndarray | None, rows: list[dict]) -> float | None:
    """Score of one region: the mean of ``values`` (the per-pixel probabilities inside the region)
    when given; otherwise the best score of the mask rows of class ``name`` whose box meets the
    region's pixel bounds (``bounds`` = x0, y0, x1, y1). None when neither exists."""
    if values is not None:
        return float(np.mean(values))
    x0, y0, x1, y1 = bounds
    best = None
    for row in rows:
        bx0, by0, bx1, by1 = row.get("box", (0, 0, 0, 0))
        if row.get("class") == name and bx0 < x1 and bx1 > x0 and by0 < y1 and by1 > y0:
            best = row["score"] if best is None else max(best, row["score"])
    return None if best is None else float(best)


def _polygons(mask: np.ndarray, transform) -> list:
    """Shapely polygons of the True pixels of a bool mask (one per 4-connected part, holes kept)."""
    import shapely
    from rasterio.features import shapes

    return [shapely.geometry.shape(g) for g, _ in shapes(mask.astype(np.uint8), mask, transform=transform)]


def label_features(
    labels: np.ndarray,
    names: list[str],
    meta: RasterMeta | None = None,
    confidence: np.ndarray | None = None,
    mask_rows: list[dict] | None = None,
    simplify: float | None = None,
) -> tuple[list, dict]:
    """One polygon per 4-connected region of each class (background skipped).

    Returns (geometries in the raster's CRS — pixel col/row without georeference —, attribute
    columns ``class``, ``score``, area (:func:`area_field`)). The area is the region's exact pixel area
    (before any ``simplify`` tolerance, in map units).
    """
    import shapely
    from rasterio.features import shapes
    from scipy.ndimage import find_objects
    from scipy.ndimage import label as cc_label

    labels = np.asarray(labels)
    transform = _affine(meta)
    geoms, cls_col, score_col, area_col = [], [], [], []
    for k in range(len(names)):
        mask = labels == k
        if not mask.any():
            continue
        comp, n = cc_label(mask)  # 4-connected, as rasterio.features.shapes
        for i, sl in enumerate(find_objects(comp), start=1):
            sub = comp[sl] == i
            y0, x0 = sl[0].start, sl[1].start
            sub_tr = transform @ type(transform).translation(x0, y0)
            polys = [
                shapely.geometry.shape(g) for g, v in shapes(sub.astype(np.uint8), sub, transform=sub_tr)
            ]
            geom = polys[0] if len(polys) == 1 else shapely.union_all(polys)
            area = _area(geom, meta)
            if simplify:
                geom = geom.simplify(simplify, preserve_topology=True)
            values = None if confidence is None else np.asarray(confidence)[sl][sub]
            bounds = (x0, y0, sl[1].stop, sl[0].stop)
            geoms.append(geom)
            cls_col.append(names[k])
            score_col.append(region_score(names[k], bounds, values, mask_rows or []))
            area_col.append(area)
    return geoms, {"class": cls_col, "score": score_col, area_field(meta): area_col}


def mask_feature(
    mask: np.ndarray,
    meta: RasterMeta | None,
    attrs: dict,
    simplify: float | None = None,
) -> tuple[list, dict]:
    """The selected mask of ``refer`` as one (multi)polygon feature with ``attrs`` plus its area."""
    import shapely
    from rasterio.features import shapes

    mask = np.asarray(mask, bool)
    polys = [
        shapely.geometry.shape(g) for g, _ in shapes(mask.astype(np.uint8), mask, transform=_affine(meta))
    ]
    if not polys:
        return [], {**{k: [] for k in attrs}, area_field(meta): []}
    geom = shapely.MultiPolygon(polys) if len(polys) > 1 else polys[0]
    area = _area(geom, meta)
    if simplify:
        geom = geom.simplify(simplify, preserve_topology=True)
    return [geom], {**{k: [v] for k, v in attrs.items()}, area_field(meta): [area]}


def write_vectors(path: str | os.PathLike, geoms: list, columns: dict, meta: RasterMeta | None) -> Path:
    """Write features to ``.gpkg`` (layer in the raster's CRS) or ``.geojson`` (RFC 7946: GDAL
    reprojects to WGS 84 lon/lat, as the format requires; without a georeference, pixel coordinates
    and no CRS). Written with pyogrio, atomically."""
    import pyogrio
    import shapely
    from pyogrio.raw import write

    path = Path(path)
    driver = VECTOR_DRIVERS.get(path.suffix.lower())
    if driver is None:
        raise DglrsisError(f"unsupported vector output {path}: use .gpkg or .geojson")
    geometry = np.array(
        [shapely.to_wkb(shapely.MultiPolygon([g]) if g.geom_type == "Polygon" else g) for g in geoms],
        dtype=object,
    )
    fields = list(columns)
    data = []
    for name in fields:
        col = columns[name]
        if name == "score" or name.startswith("area"):
            data.append(np.array([np.nan if v is None else v for v in col], dtype=np.float64))
        else:
            data.append(np.array(col, dtype=object))
    crs = meta.crs if meta is not None and meta.crs else None
    layer_options = {"RFC7946": "YES"} if driver == "GeoJSON" and crs else None
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": GPKG_TIMESTAMP})
    with atomic_path(path) as tmp:
        tmp.unlink()  # the driver creates the file itself
        write(
            str(tmp),
            geometry,
            data,
            fields,
            layer=path.stem,
            driver=driver,
            geometry_type="MultiPolygon",
            crs=crs,
            layer_options=layer_options,
        )
    return path


# ============================================================================================ pictures
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def legend_overlay(
    image: np.ndarray, labels: np.ndarray, names: list[str], palette: list, alpha: float = 0.5
) -> np.ndarray:
    """The image with class colours blended over it and a legend panel on the right (swatch + name
    for each class present). labels: H×W int, -1 = background. Returns H×W'×3 uint8."""
    from PIL import Image, ImageDraw

    from .io import overlay

    coded = encode_labels(labels, len(names))
    blended = overlay(np.asarray(image, np.uint8), coded.astype(np.int64), palette, alpha)
    present = [k for k in range(len(names)) if (coded == k + 1).any()]
    h = blended.shape[0]
    size = max(10, min(18, h // 24))
    font, row = _font(size), size + 6
    width = 16 + size + max([int(_font(size).getlength(names[k])) for k in present] or [60])
    panel = Image.new("RGB", (width, max(h, row * (len(present) + 1))), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    draw.text((6, 4), "classes" if present else "no class found", fill=(0, 0, 0), font=font)
    for i, k in enumerate(present, start=1):
        y = 4 + i * row
        draw.rectangle([6, y, 6 + size, y + size], fill=tuple(palette[k + 1]), outline=(0, 0, 0))
        draw.text((12 + size, y), names[k], fill=(0, 0, 0), font=font)
    out = Image.new("RGB", (blended.shape[1] + width, panel.height), (255, 255, 255))
    out.paste(Image.fromarray(blended), (0, 0))
    out.paste(panel, (blended.shape[1], 0))
    return np.asarray(out)


def cam_figure(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5, label: str = "CAM") -> np.ndarray:
    """The CAM (H×W in [0, 1]) as a blue→red heatmap blended over the image, with a vertical colour
    bar (0 at the bottom, 1 at the top, ticks at 0, 0.5, 1) on the right. Returns H×W'×3 uint8."""
    from PIL import Image, ImageDraw

    from .io import heatmap

    img = np.asarray(image, np.float32)
    heat = heatmap(cam).astype(np.float32)
    blended = ((1 - alpha) * img + alpha * heat).round().clip(0, 255).astype(np.uint8)
    h = blended.shape[0]
    size = max(10, min(16, h // 24))
    font = _font(size)
    bar_h, bar_w, pad = max(16, h - 2 * (size + 8)), max(8, size), 6
    width = pad + bar_w + pad + int(font.getlength("0.5")) + pad
    panel = Image.new("RGB", (width, h), (255, 255, 255))
    ramp = heatmap(np.linspace(1, 0, bar_h)[:, None].repeat(bar_w, 1))
    top = size + 8
    panel.paste(Image.fromarray(ramp), (pad, top))
    draw = ImageDraw.Draw(panel)
    draw.text((pad, 2), label, fill=(0, 0, 0), font=font)
    for v in (1.0, 0.5, 0.0):
        y = top + round((1 - v) * (bar_h - 1))
        draw.line([pad + bar_w, y, pad + bar_w + 3, y], fill=(0, 0, 0))
        draw.text((pad + bar_w + 5, max(0, y - size // 2)), f"{v:g}", fill=(0, 0, 0), font=font)
    out = Image.new("RGB", (blended.shape[1] + width, h), (255, 255, 255))
    out.paste(Image.fromarray(blended), (0, 0))
    out.paste(panel, (blended.shape[1], 0))
    return np.asarray(out)


def check_vector_path(path: str | os.PathLike) -> None:
    """DglrsisError unless ``path`` has a vector extension this module writes."""
    if Path(path).suffix.lower() not in VECTOR_DRIVERS:
        raise DglrsisError(f"unsupported --vectors {path}: use .gpkg or .geojson")


__all__ = [
    "area_field",
    "cam_figure",
    "encode_labels",
    "label_features",
    "legend_overlay",
    "mask_feature",
    "qml_style",
    "rat_aux_xml",
    "write_label_raster",
    "write_vectors",
]
