"""Gradio demo: free-text segmentation (OVSS) and referring (RES) of remote-sensing images.

Uses only the public API of :mod:`dglrsis`. One CLIP (and SAM) is loaded once, in the background while the
page is already served, and shared; each browser session keeps its own :class:`dglrsis.Predictor`, so a
second query on the same image reuses the cached proposals and crop embeddings.

Two named API endpoints (see the README for a ``gradio_client`` call):

- ``segment(image, classes, bands="", background="prompt")`` → overlay with legend, legend HTML, no CAM,
  per-class table, downloads (label raster, scores JSON), message.
- ``refer(image, expression, bands="")`` → overlay (referred mask in red, candidates outlined and
  numbered as in the table), legend HTML, CAM over the image with a colour bar, candidate table,
  downloads (mask raster, scores JSON), message.

Resources stay bounded (:mod:`dglrsis.demos.resources`): at most ``MAX_SESSIONS`` cached sessions, each
dropped after ``SESSION_TTL_S`` idle seconds or when its tab closes; per-request output folders removed
after the answer is delivered; uploads above ``PIXEL_BUDGET`` pixels downscaled; messages never show a
server path or an exception's text. Gradio's analytics are off.

Run: ``dglrsis demo [--host 127.0.0.1] [--port 7860] [--clip NAME]``.
"""

from __future__ import annotations

import functools
import hashlib
import html
import inspect
import logging
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # analytics off, before gradio reads it at import
import gradio as gr  # noqa: E402

import dglrsis  # noqa: E402

from . import render  # noqa: E402
from .resources import (  # noqa: E402
    PIXEL_BUDGET,
    CacheJanitor,
    RequestFiles,
    SessionStore,
    load_upload,
    user_message,
)

MAX_UPLOAD_MB = 50
CONCURRENCY = 2
MAX_SESSIONS = 16  # cached image states kept at once (least recently used dropped first)
SESSION_TTL_S = 900  # a session's cached image state is dropped after this many idle seconds
CACHE_AGE_S = 900  # files gradio serves (uploads, answers) are deleted this long after they were written
DEFAULT_CLIP = "ViT-B-16:openai"
INTERNAL = "Something went wrong on the server while processing this request (it has been logged)."
log = logging.getLogger("dglrsis.demo")


def parse_bands(text: str | None) -> list[int] | None:
    """'3,2,1' → [3, 2, 1] (1-based); empty → None (automatic choice)."""
    if not text or not text.strip():
        return None
    try:
        return [int(b) for b in text.replace(" ", "").split(",") if b]
    except ValueError:
        raise dglrsis.DglrsisError(f"bands must look like 3,2,1, got {text!r}") from None


class DemoModels:
    """Models shared by every session.

    ``clip=None`` uses ``ViT-B-16:openai`` when its weights are already on this machine and otherwise the
    bundled world-clip, without trying a download (the presence check touches no network). With
    ``background=True`` the weights load in a thread so the page is served at once; requests wait.
    """

    def __init__(
        self,
        clip: str | None = None,
        proposals: str = "slic",
        sam_checkpoint: str | None = None,
        background: bool = False,
    ):
        self.requested, self.proposals, self.sam_checkpoint = clip, proposals, sam_checkpoint
        self.clip_name, self.note = "", ""
        self.clip = self.sam = None
        self._chosen, self._ready = threading.Event(), threading.Event()
        self._error: dglrsis.DglrsisError | None = None
        if background:
            threading.Thread(target=self._load, name="dglrsis-demo-models", daemon=True).start()
        else:
            self._load()
            self.wait()

    def _choose(self) -> tuple[str, str]:
        if self.requested:
            name = self.requested
            return name, f"**Model:** {name}" + (
                " (small CLIP trained on synthetic scenes)." if _world(name) else "."
            )
        from dglrsis.models import list_models

        present = {r["name"]: r["present"] for r in list_models() if r["family"] == "clip"}
        if present.get(DEFAULT_CLIP) == "yes":
            return DEFAULT_CLIP, f"**Model:** {DEFAULT_CLIP}."
        return "world-clip", (
            f"**Model:** world-clip, a small CLIP trained on synthetic scenes ({DEFAULT_CLIP} weights are "
            f"not on this machine; start with `--clip NAME` for another model). Expect poor results on real "
            f"imagery."
        )

    def _load(self) -> None:
        try:
            self.clip_name, self.note = self._choose()
            self._chosen.set()
            self.clip = dglrsis.load_clip(self.clip_name)
            if self.proposals == "sam":
                self.sam = dglrsis.load_sam("vit_b", checkpoint=self.sam_checkpoint)
        except dglrsis.DglrsisError as exc:
            self._error = exc
        except Exception as exc:  # noqa: BLE001 - reported as one line by wait()
            log.exception("loading the demo models failed")
            self._error = dglrsis.DglrsisError(f"the models could not be loaded ({type(exc).__name__})")
        finally:
            self._chosen.set()
            self._ready.set()

    def wait(self) -> DemoModels:
        """Block until the models are loaded; DglrsisError when they could not be."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def model_note(self) -> str:
        """The one-line model note (known before the weights finish loading)."""
        self._chosen.wait()
        if self._error is not None and not self.note:
            return "**Model:** not available — " + user_message(str(self._error))
        return self.note

    def new_predictor(self) -> dglrsis.Predictor:
        cfg = dglrsis.PredictorConfig(clip=self.clip_name, proposals=self.proposals, background="prompt")
        return dglrsis.Predictor(cfg, clip=self.wait().clip, sam=self.sam)


def _world(name: str) -> bool:
    return name.split(":")[0] == "world-clip"


# ----------------------------------------------------------------------------------------- helpers
def _legend_html(names, palette, shares=None) -> str:
    items = "".join(
        f'<span class="legend-item" style="margin-right:12px;white-space:nowrap">'
        f'<span style="display:inline-block;width:14px;height:14px;background:rgb{tuple(palette[i + 1])};'
        f'margin-right:4px;vertical-align:middle;border:1px solid #333"></span>{html.escape(n)}'
        + (f" ({shares[i]:.1f} %)" if shares is not None else "")
        + "</span>"
        for i, n in enumerate(names)
    )
    return f'<div id="legend">{items}</div>'


def _bands_text(up) -> str:
    used = ", ".join(map(str, up.bands))
    size = f"{up.source_size[0]}×{up.source_size[1]}"
    text = f"{size} px, {up.count} band{'s' if up.count != 1 else ''}; bands used: {used}"
    if up.scaled:
        text += f"; downscaled to {up.meta.width}×{up.meta.height} (the demo's {PIXEL_BUDGET:,}-pixel budget)"
    return text


def _label_download(folder: Path, upload, labels: np.ndarray, names, palette) -> list[Path]:
    """The label-raster download (``labels``: H×W uint8, 0 = background, k + 1 = ``names[k]``): the CLI's
    writer — a GeoTIFF with the source CRS, colour table, class names and QGIS/GDAL sidecars for
    georeferenced uploads, else an index PNG with the palette."""
    from dglrsis import export

    path = folder / ("labels.tif" if upload.meta.crs else "labels.png")
    return export.write_label_raster(path, labels.astype(int) - 1, names, palette, upload.meta)


def _vector_download(folder: Path, upload, labels: np.ndarray, names) -> list[Path]:
    """The vector download: a GeoPackage of class polygons (class, score, area) in the upload's CRS, the
    CLI's vector writer; none when no class was found."""
    from dglrsis import export

    geoms, cols = export.label_features(labels.astype(int) - 1, names, upload.meta)
    if not geoms:
        return []
    return [export.write_vectors(folder / "labels.gpkg", geoms, cols, upload.meta)]


_NOT_TERMS = ("rank", "mask", "area", "box", "selected")  # shown in their own columns, or not at all


def _candidate_table(ref, props) -> tuple[list[str], list[list], list[tuple[int, np.ndarray]]]:
    """Rows for the candidate table (rank, chosen, centre, area, then every numeric or yes/no term the
    answer carries, nested ones such as per-modifier scores included) and the ``(rank, mask)`` pairs
    drawn on the image with the same ranks."""
    terms: list[str] = []
    flat_rows = []
    for c in ref.candidates:
        flat = {}
        for k, v in c.items():
            if k in _NOT_TERMS:
                continue
            for kk, vv in v.items() if isinstance(v, dict) else [(k, v)]:
                if isinstance(vv, bool):  # a yes/no term (size_ranked: size ranked this candidate)
                    flat[kk if kk not in flat else f"{k}.{kk}"] = "yes" if vv else "no"
                elif isinstance(vv, (int, float, np.number)):
                    flat[kk if kk not in flat else f"{k}.{kk}"] = round(float(vv), 4)
        terms += [k for k in flat if k not in terms]
        flat_rows.append(flat)
    rows, drawn = [], []
    for rank, (c, flat) in enumerate(zip(ref.candidates, flat_rows, strict=True), start=1):
        mask = props.mask(int(c["mask"]))
        ys, xs = np.nonzero(mask)
        cx, cy = (int(xs.mean()), int(ys.mean())) if len(xs) else (-1, -1)
        chosen = "yes" if c.get("selected", int(c["mask"]) in ref.selected) else ""
        rows.append([rank, chosen, cx, cy, int(c.get("area", mask.sum()))] + [flat.get(t, "") for t in terms])
        drawn.append((rank, mask))
    return ["rank", "chosen", "x", "y", "area", *terms], rows, drawn


def _modifiers_used(ref) -> list[str]:
    """Names of the modifiers the answer scored (a list, or the keys of per-modifier scores)."""
    if not ref.candidates:
        return []
    c = ref.candidates[0]
    if isinstance(c.get("modifier_scores"), dict):
        return list(c["modifier_scores"])
    return [str(m) for m in c.get("modifiers", [])] if isinstance(c.get("modifiers"), list) else []


# ------------------------------------------------------------------------------------------- the app
class Demo:
    """Request handlers over shared models, a bounded session store and per-request folders."""

    def __init__(
        self,
        models: DemoModels,
        sessions: SessionStore | None = None,
        files: RequestFiles | None = None,
        budget: int = PIXEL_BUDGET,
    ):
        self.models = models
        self.sessions = sessions or SessionStore(MAX_SESSIONS, SESSION_TTL_S)
        self.files = files or RequestFiles()
        self.budget = budget

    # -- shared steps -------------------------------------------------------------------------------
    def _session(self, request):
        return self.sessions.get(getattr(request, "session_hash", None) or "local")

    def _prepare(self, session, image: str | None, bands: str | None):
        """Read the upload (pixel budget applied) and make sure the session's predictor holds it."""
        if not image:
            raise dglrsis.DglrsisError("upload an image or pick an example first")
        up = load_upload(image, parse_bands(bands), self.budget)
        digest = hashlib.sha1(up.array.tobytes()).hexdigest() + str(up.array.shape)
        reused = session.predictor is not None and session.digest == digest
        if not reused:
            session.predictor = session.predictor or self.models.new_predictor()
            session.digest = ""
            session.extra.clear()
            session.predictor.set_image(up.array)
            session.digest = digest
        return up, reused

    def _publish(self, path: Path) -> str:
        return self.files.publish(path)

    # -- endpoints ------------------------------------------------------------------------------------
    def preview(self, image: str | None, bands: str | None):
        """(preview PNG, bands note) for the upload, with the band choice and the pixel budget applied."""
        if not image:
            return None, ""
        try:
            up = load_upload(image, parse_bands(bands), self.budget)
        except dglrsis.DglrsisError as exc:
            return None, user_message(str(exc))
        with self.files.request() as folder:
            path = folder / "preview.png"
            dglrsis.write_rgb_png(path, up.array)
            return self._publish(path), _bands_text(up)

    def segment(self, image, classes, bands="", background="prompt", request=None):
        from dglrsis.predictor import normalise_classes, parse_background

        if not classes or not str(classes).strip():
            raise dglrsis.DglrsisError("type class names, e.g. 'ship, harbor, storage tank'")
        normalise_classes(classes)  # a bad query or policy is refused before any image work
        parse_background(background or "prompt")
        session = self._session(request)
        with session.lock, self.files.request() as folder:
            up, reused = self._prepare(session, image, bands)
            seg = session.predictor.segment(classes, background=background or "prompt")
            names = seg.class_names
            palette = dglrsis.default_palette(len(names) + 1)
            labels = (seg.labels + 1).astype(np.uint8)
            total = max(labels.size, 1)
            pixels = np.bincount(labels.ravel(), minlength=len(names) + 1)
            shares = [100.0 * pixels[k + 1] / total for k in range(len(names))]
            best = [
                float(seg.probs[seg.mask_labels == k, k].max()) if np.any(seg.mask_labels == k) else 0.0
                for k in range(len(names))
            ]
            rows = [
                [n, int(pixels[k + 1]), round(shares[k], 2), round(best[k], 4)] for k, n in enumerate(names)
            ]
            rows.append(["(background)", int(pixels[0]), round(100.0 * pixels[0] / total, 2), ""])
            over = render.legend_strip(dglrsis.overlay(up.array, labels, palette), names, palette)
            dglrsis.write_rgb_png(folder / "overlay.png", over)
            scores = {
                "query": str(classes),
                "classes": names,
                "palette": {n: list(palette[k + 1]) for k, n in enumerate(names)},
                "label_values": {n: k + 1 for k, n in enumerate(names)} | {"background": 0},
                "pixels": {n: int(pixels[k + 1]) for k, n in enumerate(names)},
                "image": self._image_json(up),
                "proposals": seg.mask_scores(),
            }
            downloads = [
                *_label_download(folder, up, labels, names, palette),
                *_vector_download(folder, up, labels, names),
                self._scores(folder, scores),
            ]
            msg = f"Segmented {len(names)} classes (OVSS) — {_bands_text(up)}."
            if reused:
                msg += " Cached image state reused."
            table = {"headers": ["class", "pixels", "share %", "best score"], "data": rows}
            return (
                self._publish(folder / "overlay.png"),
                _legend_html(names, palette, shares),
                None,
                table,
                [self._publish(p) for p in downloads],
                msg,
            )

    def refer(self, image, expression, bands="", request=None):
        if not expression or not str(expression).strip():
            raise dglrsis.DglrsisError("type an expression, e.g. 'the ship on the left'")
        session = self._session(request)
        with session.lock, self.files.request() as folder:
            up, reused = self._prepare(session, image, bands)
            ref = session.predictor.refer(expression)
            props = session.predictor.state.proposals
            headers, rows, drawn = _candidate_table(ref, props)
            session.extra["refer"] = (
                ref.mask,
                [(r, int(c["mask"])) for r, c in enumerate(ref.candidates, 1)],
            )
            over = render.candidate_overlay(up.array, ref.mask, drawn)
            dglrsis.write_rgb_png(folder / "overlay.png", over)
            dglrsis.write_rgb_png(folder / "cam.png", render.cam_figure(up.array, ref.cam))
            mask_path = folder / ("mask.tif" if up.meta.crs else "mask.png")
            mask = ref.mask.astype(np.uint8)
            dglrsis.write_label(mask_path, mask if up.meta.crs else mask * 255, up.meta, None)
            scores = ref.to_json() | {"image": self._image_json(up)}
            downloads = [mask_path, self._scores(folder, scores)]
            target = ref.target or "-"
            used = ", ".join(_modifiers_used(ref))
            found = (
                f"{int(ref.mask.sum())} pixels"
                if getattr(ref, "found", True)
                else f"not found (best confidence {getattr(ref, 'confidence', 0.0):.2f})"
            )
            msg = (
                f"Referring (RES): target '{target}', {found}"
                + (f"; modifiers scored: {used}" if used else "")
                + f" — {_bands_text(up)}. Candidates are numbered on the image as in the table."
            )
            if reused:
                msg += " Cached image state reused."
            legend = _legend_html([f"referred: {ref.target or expression}"], [(0, 0, 0), render.CHOSEN])
            return (
                self._publish(folder / "overlay.png"),
                legend,
                self._publish(folder / "cam.png"),
                {"headers": headers, "data": rows},
                [self._publish(p) for p in downloads],
                msg,
            )

    def highlight(self, row: int, request=None):
        """The last referring overlay with candidate ``row`` (0-based table row) outlined in cyan."""
        session = self._session(request)
        with session.lock:
            last = session.extra.get("refer")
            if last is None or session.predictor is None or session.predictor.state is None:
                return None
            referred, cands = last
            props, image = session.predictor.state.proposals, session.predictor.state.image
            drawn = [(rank, props.mask(i)) for rank, i in cands]
            with self.files.request() as folder:
                over = render.candidate_overlay(image, referred, drawn, highlight=row + 1)
                dglrsis.write_rgb_png(folder / "overlay.png", over)
                return self._publish(folder / "overlay.png")

    def close_session(self, request=None) -> None:
        self.sessions.drop(getattr(request, "session_hash", None) or "local")

    # -- small pieces -----------------------------------------------------------------------------------
    def _image_json(self, up) -> dict:
        return {
            "width": up.meta.width,
            "height": up.meta.height,
            "source_size": list(up.source_size),
            "bands": up.bands,
            "crs": up.meta.crs,
            "transform": list(up.meta.transform) if up.meta.transform else None,
        }

    def _scores(self, folder: Path, obj: dict) -> Path:
        from dglrsis.io import write_json

        write_json(folder / "scores.json", obj)
        return folder / "scores.json"


def _guarded(fn):
    """Run a handler; a user error becomes one message without server paths, anything else a generic one."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except dglrsis.DglrsisError as exc:
            raise gr.Error(user_message(str(exc)), print_exception=False) from None
        except Exception:
            log.exception("demo request failed")
            raise gr.Error(INTERNAL, print_exception=False) from None

    return wrapper


def build_app(models: DemoModels, examples: list[str] | None = None, demo: Demo | None = None):
    """The Gradio Blocks app (not launched); ``demo`` holds the handlers and their resources."""
    demo = demo or Demo(models)

    @_guarded
    def segment(
        image: str, classes: str, bands: str = "", background: str = "prompt", request: gr.Request = None
    ):
        """Open-vocabulary segmentation of an image into the listed classes.

        Args:
            image: the image file (PNG, JPEG, TIFF or GeoTIFF); with gradio_client pass handle_file(path).
            classes: comma-separated class names, e.g. "ship, harbor, storage tank".
            bands: 1-based bands to show for multi-band rasters, e.g. "3,2,1" (empty: automatic).
            background: "prompt" (a background class competes), "none", or "threshold:T" with 0<T<1.
        Returns:
            overlay PNG with a drawn legend, legend HTML, no CAM (None), per-class table,
            downloads (label raster, scores JSON), message.
        """
        return demo.segment(image, classes, bands, background, request)

    @_guarded
    def refer(image: str, expression: str, bands: str = "", request: gr.Request = None):
        """Referring segmentation: the region an expression describes.

        Args:
            image: the image file (PNG, JPEG, TIFF or GeoTIFF); with gradio_client pass handle_file(path).
            expression: a sentence, e.g. "the large ship on the left".
            bands: 1-based bands to show for multi-band rasters, e.g. "3,2,1" (empty: automatic).
        Returns:
            overlay PNG (referred mask, numbered candidates), legend HTML, CAM PNG with a colour bar,
            candidate table (rank, chosen, centre x/y, area, score terms), downloads (mask, scores JSON),
            message.
        """
        return demo.refer(image, expression, bands, request)

    @_guarded
    def on_select(evt: gr.SelectData, request: gr.Request):
        return demo.highlight(int(evt.index[0]), request)

    def on_unload(request: gr.Request):
        demo.close_session(request)

    with gr.Blocks(
        title="dglrsis — text-driven RS segmentation",
        analytics_enabled=False,
        delete_cache=(300, CACHE_AGE_S),
    ) as app:
        gr.Markdown(
            "## dglrsis — segment remote-sensing images from free text\n"
            "**Segment** splits the image into a list of classes (`ship, harbor, storage tank`); **Refer** "
            "finds the region a sentence describes (`the large ship next to the harbor`)."
        )
        note = gr.Markdown(elem_id="model-note")
        with gr.Row():
            with gr.Column():
                image = gr.File(
                    label="Image (PNG/JPEG/TIFF/GeoTIFF)",
                    file_types=["image", ".tif", ".tiff"],
                    type="filepath",
                    elem_id="image-input",
                )
                preview = gr.Image(
                    label="Input preview", type="filepath", interactive=False, elem_id="preview"
                )
                preview_info = gr.Markdown(elem_id="preview-info")
                bands = gr.Textbox(
                    label="Bands for multi-band rasters (e.g. 3,2,1; empty: automatic)",
                    value="",
                    elem_id="bands",
                )
                with gr.Tab("Segment (classes)"):
                    classes = gr.Textbox(
                        label="Classes", placeholder="ship, harbor, storage tank", elem_id="classes"
                    )
                    background = gr.Dropdown(
                        ["prompt", "none", "threshold:0.5"], value="prompt", label="Background"
                    )
                    run_segment = gr.Button("Segment", variant="primary", elem_id="segment")
                with gr.Tab("Refer (expression)"):
                    expression = gr.Textbox(
                        label="Expression", placeholder="the ship on the left", elem_id="expression"
                    )
                    run_refer = gr.Button("Refer", variant="primary", elem_id="refer")
                if examples:
                    gr.Examples(
                        examples=[[e] for e in examples], inputs=[image], label="Synthetic world examples"
                    )
            with gr.Column():
                message = gr.Markdown(label="Message", elem_id="message")
                overlay = gr.Image(label="Overlay", type="filepath", elem_id="overlay", interactive=False)
                legend = gr.HTML(label="Legend", elem_id="legend-box")
                cam = gr.Image(
                    label="Grad-CAM over the image (RES)", type="filepath", elem_id="cam", interactive=False
                )
                table = gr.Dataframe(
                    label="Scores (refer: select a row to outline it)", elem_id="scores", interactive=False
                )
                downloads = gr.File(label="Downloads", file_count="multiple", elem_id="downloads")
        outputs = [overlay, legend, cam, table, downloads, message]
        run_segment.click(
            segment,
            [image, classes, bands, background],
            outputs,
            api_name="segment",
            api_description=inspect.getdoc(segment),
            concurrency_limit=CONCURRENCY,
        )
        run_refer.click(
            refer,
            [image, expression, bands],
            outputs,
            api_name="refer",
            api_description=inspect.getdoc(refer),
            concurrency_limit=CONCURRENCY,
        )
        for event in (image.change, bands.submit, bands.blur):
            event(_guarded(demo.preview), [image, bands], [preview, preview_info], api_name=False)
        table.select(on_select, None, overlay, api_name=False)
        app.load(models.model_note, None, note, api_name=False)
        app.unload(on_unload)
    app.demo = demo
    return app


def world_examples(folder: str | None = None, n: int = 3, size: int = 384) -> list[str]:
    """A few synthetic-world images (generated once into a cache folder) as examples."""
    from dglrsis.eval.world import generate_world

    root = Path(
        folder or os.environ.get("DGLRSIS_DEMO_WORLD", Path(tempfile.gettempdir()) / "dglrsis-demo-world")
    )
    imgs = sorted((root / "isaid").glob("*/images/*.png"))
    if len(imgs) < n:
        generate_world(root, seed=5, n=max(n, 4), size=size, progress=False)
        imgs = sorted((root / "isaid").glob("*/images/*.png"))
    return [str(p) for p in imgs[:n]]


def launch_app(app, host: str = "127.0.0.1", port: int = 7860, examples: list[str] | None = None, **kwargs):
    """Queue and serve ``app`` (non-blocking); the demo's limits on uploads, queue and sessions applied."""
    app.queue(max_size=64, default_concurrency_limit=CONCURRENCY)
    settings = dict(
        server_name=host,
        server_port=port,
        max_file_size=f"{MAX_UPLOAD_MB}mb",
        prevent_thread_lock=True,
        allowed_paths=[str(Path(e).parent) for e in examples or []],
        show_error=False,
        quiet=True,
        state_session_capacity=4 * MAX_SESSIONS,
    )
    app.launch(**(settings | kwargs))
    return app


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    clip: str | None = None,
    proposals: str = "slic",
    sam_checkpoint: str | None = None,
    block: bool = True,
):
    """Serve the demo: the page is up before the models finish loading; a model that cannot be loaded
    stops the server with a DglrsisError."""
    if block:  # SIGTERM, like Ctrl+C, ends the server through the clean-up below
        import signal
        import sys

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cleanups = []  # run in reverse order when the server stops (or fails to start)

    def shut():
        while cleanups:
            cleanups.pop()()

    try:
        models = DemoModels(clip, proposals, sam_checkpoint, background=True)
        examples = world_examples()
        if "GRADIO_TEMP_DIR" not in os.environ:  # a cache folder of its own, pruned and removed on exit
            os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="dglrsis-demo-cache-")
            cleanups.append(CacheJanitor(os.environ["GRADIO_TEMP_DIR"], age=CACHE_AGE_S).close)
        app = build_app(models, examples)
        cleanups.append(app.demo.files.close)
        launch_app(app, host, port, examples)
        cleanups.append(app.close)
        models.wait()
        if block:
            app.block_thread()
    except BaseException:
        shut()
        raise
    if block:
        shut()
    app.shut = shut
    return app
