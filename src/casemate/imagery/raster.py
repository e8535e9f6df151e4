"""Raster access: validated opening, windowed reads under a bounded GDAL cache, georeferencing.

Memory depends on the window size, never on the raster's size: only windows and a decimated
overview (for the contrast stretch of non-8-bit imagery) are ever read.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from casemate.errors import UsageError

GDAL_CACHE_MB = 64
MAX_SIDE = 200_000  # pixels per side; beyond this a raster is refused (no real sensor scene is)
STATS_SIDE = 1024  # decimated read for percentile stretch


def gdal_env():
    """A rasterio environment whose block cache is bounded (GDAL's default is 5% of RAM)."""
    import rasterio

    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR",
                        CPL_VSIL_CURL_ALLOWED_EXTENSIONS="none")


class BandSpec:
    """Which bands feed the detector's three channels: "3,2,1" (three bands as R,G,B) or "4" (one band
    as grey). None: the bands the file marks red/green/blue, else the first three, else band 1."""

    @staticmethod
    def parse(text: str | None) -> tuple[int, ...] | None:
        if text is None or str(text).strip() == "":
            return None
        try:
            bands = tuple(int(b) for b in str(text).replace(" ", "").split(","))
        except ValueError:
            raise UsageError(f"--bands {text}: give band numbers from 1, e.g. --bands 3,2,1 or --bands 1") from None
        if len(bands) not in (1, 3) or min(bands) < 1:
            raise UsageError(f"--bands {text}: give one band (grey) or three (R,G,B), numbered from 1")
        return bands


def to_uint8_rgb(data: np.ndarray, stretch: list[tuple[float, float]] | None) -> np.ndarray:
    """bands x H x W of any dtype -> H x W x 3 uint8 (one band is replicated as grey)."""
    if data.shape[0] >= 3:
        data = data[:3]
    else:
        data = np.repeat(data[:1], 3, axis=0)
    if stretch is None and data.dtype == np.uint8:
        return np.ascontiguousarray(np.moveaxis(data, 0, 2))
    out = np.empty((data.shape[1], data.shape[2], 3), dtype=np.uint8)
    for b in range(3):
        lo, hi = stretch[b] if stretch else (float(data[b].min()), float(data[b].max()))
        scale = 255.0 / max(hi - lo, 1e-6)
        out[..., b] = np.clip((data[b].astype(np.float32) - lo) * scale, 0, 255)
    return out


@dataclass
class Georef:
    crs_wkt: str | None  # None: pixel coordinates only
    crs_name: str | None
    epsg: int | None
    transform: tuple[float, ...]  # affine a, b, c, d, e, f
    gsd_m: float | None
    geographic: bool = False


class RasterSource:
    """One open raster. Use as a context manager; read windows with `read_window`."""

    def __init__(self, path: str | Path, *, gsd_override: float | None = None, bands: str | None = None) -> None:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        self.path = Path(path)
        if not self.path.exists():
            raise UsageError(f"{self.path}: no such file")
        if not self.path.is_file():
            raise UsageError(f"{self.path}: not a file")
        size = self.path.stat().st_size
        if size == 0:
            raise UsageError(f"{self.path}: empty file (0 bytes); give a GeoTIFF, PNG or JPEG image")
        self._env = gdal_env()
        self._env.__enter__()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self.ds = rasterio.open(self.path)
        except RasterioIOError as exc:
            self._env.__exit__(None, None, None)
            raise UsageError(f"{self.path}: not a readable raster image ({_short(exc)}); "
                             "give a GeoTIFF, PNG or JPEG") from None
        try:
            self._validate(size)
        except BaseException:
            self.close()
            raise
        self.width, self.height, self.count = self.ds.width, self.ds.height, self.ds.count
        self.georef = self._georef(gsd_override)
        self._stretch: list[tuple[float, float]] | None | bool = False
        try:
            self.bands = self.band_spec(bands)
        except BaseException:
            self.close()
            raise

    # --- validation ---
    def _validate(self, size: int) -> None:
        ds = self.ds
        if ds.width <= 0 or ds.height <= 0 or ds.count <= 0:
            raise UsageError(f"{self.path}: raster has no pixels")
        if ds.width > MAX_SIDE or ds.height > MAX_SIDE:
            raise UsageError(f"{self.path}: declared size {ds.width} x {ds.height} px exceeds the "
                             f"{MAX_SIDE} px per side limit (a damaged or hostile header?)")
        dtype_bytes = np.dtype(ds.dtypes[0]).itemsize
        raw = ds.width * ds.height * ds.count * dtype_bytes
        compressed = ds.compression is not None or ds.driver in ("PNG", "JPEG", "GIF", "WEBP")
        if not compressed and ds.driver == "GTiff" and raw > size * 1.01 + 65536:
            raise UsageError(f"{self.path}: declares {ds.width} x {ds.height} x {ds.count} "
                             f"uncompressed pixels ({raw} bytes) but the file holds {size} bytes: "
                             "truncated or damaged")
        # Compressed data: reading the first and the last block proves the file is whole.
        from rasterio.windows import Window

        bh, bw = ds.block_shapes[0] if ds.block_shapes else (256, 256)
        w, h = min(bw, ds.width, 256), min(bh, ds.height, 256)
        try:
            ds.read(1, window=Window(0, 0, w, h))
            ds.read(ds.count, window=Window(ds.width - w, ds.height - h, w, h))
        except Exception as exc:  # GDAL raises several kinds for damaged data
            raise UsageError(f"{self.path}: pixel data cannot be read ({_short(exc)}): truncated "
                             "or damaged file") from None

    def _georef(self, gsd_override: float | None) -> Georef:
        ds = self.ds
        t = ds.transform
        crs = ds.crs
        if crs is None or t.is_identity:
            return Georef(None, None, None, tuple(t)[:6], gsd_override)
        wkt = crs.to_wkt()
        epsg = crs.to_epsg()
        from pyproj import CRS

        pcrs = CRS.from_wkt(wkt)
        if pcrs.is_geographic:
            # Degrees: metres per pixel from the geodesic length of one pixel at the centre.
            from pyproj import Geod

            geod = Geod(ellps="WGS84")
            cx, cy = t * (ds.width / 2, ds.height / 2)
            _, _, dx = geod.inv(cx, cy, cx + t.a, cy)
            _, _, dy = geod.inv(cx, cy, cx, cy + t.e)
            gsd = math.sqrt(abs(dx * dy))
        else:
            unit = pcrs.axis_info[0].unit_conversion_factor if pcrs.axis_info else 1.0
            gsd = math.sqrt(abs(t.a * t.e - t.b * t.d)) * unit
        return Georef(wkt, pcrs.name, epsg, tuple(t)[:6], gsd_override or gsd, pcrs.is_geographic)

    # --- reading ---
    def band_spec(self, text: str | None) -> list[int]:
        """The bands read as the detector's R, G, B (one band: grey); see `BandSpec`."""
        bands = BandSpec.parse(text)
        if bands is not None:
            if max(bands) > self.count:
                raise UsageError(f"--bands {text}: {self.path.name} has {self.count} band(s)")
            return list(bands)
        if self.count >= 3:
            from rasterio.enums import ColorInterp

            ci = list(self.ds.colorinterp)
            want = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
            if all(c in ci for c in want):
                return [ci.index(c) + 1 for c in want]
            return [1, 2, 3]
        return [1]

    def band_info(self) -> dict:
        """What was read and how it was scaled to 8 bits: recorded with every output."""
        st = self.stretch()
        return {"count": self.count, "dtype": str(self.ds.dtypes[0]), "used": list(self.bands),
                "as": "rgb" if len(self.bands) == 3 else "grey",
                "stretch": ("none (8-bit)" if st is None else
                            {"method": "percentile 2-98 % per band, from a decimated read",
                             "ranges": [[round(lo, 3), round(hi, 3)] for lo, hi in st[:len(self.bands)]]})}

    def stretch(self) -> list[tuple[float, float]] | None:
        """Per-band 2-98 % percentiles from a decimated read; None for 8-bit data (used as is)."""
        if self._stretch is False:
            if self.ds.dtypes[0] == "uint8":
                self._stretch = None
            else:
                scale = max(self.width, self.height) / STATS_SIDE
                oh, ow = max(1, int(self.height / max(scale, 1))), max(1, int(self.width / max(scale, 1)))
                bands = list(self.bands)
                data = self.ds.read(bands, out_shape=(len(bands), oh, ow)).astype(np.float32)
                nodata = self.ds.nodata
                st = []
                for b in range(len(bands)):
                    v = data[b].ravel()
                    if nodata is not None:
                        v = v[v != nodata]
                    if v.size == 0:
                        v = np.zeros(1)
                    lo, hi = np.percentile(v, [2, 98])
                    st.append((float(lo), float(hi)))
                self._stretch = st if len(st) == 3 else st * 3
        return self._stretch

    def read_window(self, col: float, row: float, width: int, height: int, scale: float = 1.0) -> np.ndarray:
        """H x W x 3 uint8 of the window at (col, row) covering width*scale x height*scale source
        pixels, resampled to width x height (area average when shrinking); outside is zero."""
        from rasterio.enums import Resampling
        from rasterio.windows import Window

        if scale == 1.0:
            data = self.ds.read(self.bands, window=Window(col, row, width, height), boundless=True, fill_value=0)
        else:
            data = self.ds.read(self.bands, window=Window(col, row, width * scale, height * scale),
                                out_shape=(len(self.bands), height, width), boundless=True, fill_value=0,
                                resampling=Resampling.average if scale > 1 else Resampling.bilinear)
        return to_uint8_rgb(data, self.stretch())

    # --- coordinates ---
    def pixel_to_crs(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b, c, d, e, f = self.georef.transform
        return a * px + b * py + c, d * px + e * py + f

    def crs_to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b, c, d, e, f = self.georef.transform
        det = a * e - b * d
        x, y = np.asarray(x, dtype=np.float64) - c, np.asarray(y, dtype=np.float64) - f
        return (e * x - b * y) / det, (-d * x + a * y) / det

    def to_wgs84(self):
        """A pyproj Transformer from the raster's CRS to WGS84 lon/lat (None without georef)."""
        if self.georef.crs_wkt is None:
            return None
        from pyproj import CRS, Transformer

        return Transformer.from_crs(CRS.from_wkt(self.georef.crs_wkt), CRS.from_epsg(4326), always_xy=True)

    def close(self) -> None:
        if getattr(self, "ds", None) is not None:
            self.ds.close()
            self.ds = None
        if getattr(self, "_env", None) is not None:
            self._env.__exit__(None, None, None)
            self._env = None

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
