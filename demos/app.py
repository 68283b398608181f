"""Gradio demo: free-text segmentation (OVSS) and referring (RES) of remote-sensing images.

Uses only the public API of :mod:`dglrsis`. One CLIP (and SAM) is loaded once and shared; every browser
session keeps its own :class:`dglrsis.Predictor` in ``gr.State``, so a second query on the same image
reuses the cached proposals and crop embeddings. Limits: a queue with bounded concurrency, an upload size
limit, and errors shown as a message in the page (never a traceback).

Run: ``dglrsis demo [--host 127.0.0.1] [--port 7860] [--clip NAME]``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

import dglrsis

MAX_UPLOAD_MB = 50
CONCURRENCY = 2
MODES = ("auto", "classes (OVSS)", "expression (RES)")
RES_HINTS = {
    "the",
    "a",
    "an",
    "on",
    "in",
    "at",
    "of",
    "next",
    "near",
    "above",
    "below",
    "left",
    "right",
    "top",
    "bottom",
    "middle",
    "largest",
    "smallest",
    "biggest",
    "second",
    "between",
    "beside",
}


def detect_mode(text: str) -> str:
    """'ovss' for a class list ("ship, harbor"), 'res' for a sentence ("the ship on the left")."""
    t = text.strip().lower()
    if "," in t or ";" in t:
        return "ovss"
    words = t.replace("-", " ").split()
    return "res" if len(words) > 1 and any(w in RES_HINTS for w in words) else "ovss"


def parse_bands(text: str | None):
    if not text or not text.strip():
        return None
    try:
        return [int(b) for b in text.replace(" ", "").split(",") if b]
    except ValueError:
        raise dglrsis.DglrsisError(f"bands must look like 3,2,1, got {text!r}") from None


class DemoModels:
    """Models shared by every session; the CLIP choice falls back to world-clip with a visible note."""

    def __init__(self, clip: str | None = None, proposals: str = "slic", sam_checkpoint: str | None = None):
        self.note = ""
        wanted = clip or "ViT-B-16:openai"
        try:
            self.clip = dglrsis.load_clip(wanted)
            self.clip_name = wanted
        except dglrsis.DglrsisError as exc:
            if clip and clip != "world-clip":
                raise
            self.clip = dglrsis.load_clip("world-clip")
            self.clip_name = "world-clip"
            self.note = (
                f"Note: {wanted} weights are not available here ({exc}); running the small world-clip "
                f"trained on the synthetic world — results on real imagery will be poor."
            )
        self.sam = None
        self.proposals = proposals
        if proposals == "sam":
            self.sam = dglrsis.load_sam("vit_b", checkpoint=sam_checkpoint)
        self.base = dglrsis.PredictorConfig(clip=self.clip_name, proposals=proposals, background="prompt")

    def new_predictor(self, background: str) -> dglrsis.Predictor:
        return dglrsis.Predictor(replace(self.base, background=background), clip=self.clip, sam=self.sam)


def _legend_html(names, palette) -> str:
    items = "".join(
        f'<span class="legend-item" style="margin-right:12px"><span style="display:inline-block;'
        f'width:14px;height:14px;background:rgb{tuple(palette[i + 1])};margin-right:4px"></span>'
        f"{n}</span>"
        for i, n in enumerate(names)
    )
    return f'<div id="legend">{items}</div>'


def run_query(
    models: DemoModels,
    state: dict | None,
    image_path: str | None,
    text: str,
    mode: str,
    bands: str,
    background: str,
):
    """One request → (overlay, legend html, score rows, cam, download file, message, new state)."""
    import gradio as gr

    state = dict(state or {})
    if not image_path:
        raise gr.Error("Upload an image or pick an example first.")
    if not text or not text.strip():
        raise gr.Error(
            "Type class names (e.g. 'ship, harbor') or an expression (e.g. 'the ship on the left')."
        )
    try:
        raster = dglrsis.read_image(image_path, bands=parse_bands(bands))
        digest = hashlib.sha1(raster.array.tobytes()).hexdigest() + str(background)
        pred = state.get("predictor")
        if pred is None or state.get("digest") != digest:
            pred = models.new_predictor(background)
            pred.set_image(raster.array)
            state = {"predictor": pred, "digest": digest}
        state["reused"] = state.get("queries", 0) > 0
        state["queries"] = state.get("queries", 0) + 1
        chosen = {"classes (OVSS)": "ovss", "expression (RES)": "res"}.get(mode) or detect_mode(text)
        out_dir = Path(tempfile.mkdtemp(prefix="dglrsis-demo-"))
        geo = bool(raster.meta.crs)
        if chosen == "ovss":
            seg = pred.segment(text)
            palette = dglrsis.default_palette(len(seg.class_names) + 1)
            labels = (seg.labels + 1).astype(np.uint8)
            over = dglrsis.overlay(raster.array, labels, palette)
            rows = [
                [r["mask"], r["class"], r["score"], r["area"]]
                for r in seg.mask_scores()
                if r["class"] != "background"
            ]
            rows.sort(key=lambda r: -r[2])
            legend = _legend_html(seg.class_names, palette)
            cam = None
            mask_file = out_dir / ("labels.tif" if geo else "labels.png")
            dglrsis.write_label(mask_file, labels, raster.meta, palette)
            msg = f"Segmented {len(seg.class_names)} classes (OVSS)."
        else:
            ref = pred.refer(text)
            mask = ref.mask.astype(np.uint8)
            palette = [(0, 0, 0), (255, 40, 40)]
            over = dglrsis.overlay(raster.array, mask, palette, alpha=0.6)
            rows = [[c["mask"], ref.target or "(none)", c["score"], c["area"]] for c in ref.candidates]
            legend = _legend_html([f"referred: {ref.target or text}"], palette)
            cam = dglrsis.heatmap(ref.cam)
            mask_file = out_dir / ("mask.tif" if geo else "mask.png")
            dglrsis.write_label(mask_file, mask if geo else mask * 255, raster.meta, None)
            msg = f"Referring expression (RES): target '{ref.target or '-'}', {int(mask.sum())} pixels."
    except dglrsis.DglrsisError as exc:
        raise gr.Error(str(exc)) from None
    # Images go back as files in this request's own folder: gradio caches a returned array by rewriting
    # one content-addressed file in place, which races with a concurrent download of identical output.
    dglrsis.write_rgb_png(out_dir / "overlay.png", over)
    over = str(out_dir / "overlay.png")
    if cam is not None:
        dglrsis.write_rgb_png(out_dir / "cam.png", cam)
        cam = str(out_dir / "cam.png")
    if models.note:
        msg = models.note + "\n" + msg
    if state.get("reused"):
        msg += " (cached image state reused)"
    return over, legend, rows, cam, str(mask_file), msg, state


def build_app(models: DemoModels, examples: list[str] | None = None):
    import gradio as gr

    with gr.Blocks(title="dglrsis — text-driven RS segmentation") as app:
        gr.Markdown(
            "## dglrsis — segment remote-sensing images from free text\n"
            "A list of classes (`ship, harbor, storage tank`) runs open-vocabulary segmentation; a "
            "sentence (`the large ship next to the harbor`) runs referring segmentation."
        )
        note = gr.Markdown(models.note, elem_id="model-note")
        state = gr.State({})
        with gr.Row():
            with gr.Column():
                image = gr.File(
                    label="Image (PNG/JPEG/TIFF/GeoTIFF)",
                    file_types=["image", ".tif", ".tiff"],
                    type="filepath",
                    elem_id="image-input",
                )
                text = gr.Textbox(label="Classes or expression", elem_id="query")
                with gr.Row():
                    mode = gr.Radio(list(MODES), value="auto", label="Mode")
                    background = gr.Dropdown(
                        ["prompt", "none", "threshold:0.5"], value="prompt", label="Background (OVSS)"
                    )
                bands = gr.Textbox(label="Bands for multi-band rasters (e.g. 3,2,1)", value="")
                run = gr.Button("Segment", variant="primary", elem_id="run")
                if examples:
                    gr.Examples(
                        examples=[[e] for e in examples], inputs=[image], label="Synthetic world examples"
                    )
            with gr.Column():
                overlay = gr.Image(label="Overlay", type="filepath", elem_id="overlay", interactive=False)
                legend = gr.HTML(elem_id="legend-box")
                message = gr.Markdown(elem_id="message")
                cam = gr.Image(label="Grad-CAM (RES)", type="filepath", interactive=False)
                table = gr.Dataframe(headers=["mask", "class", "score", "area"], label="Per-mask scores")
                download = gr.File(label="Download mask")
        run.click(
            lambda *a: run_query(models, *a),
            [state, image, text, mode, bands, background],
            [overlay, legend, table, cam, download, message, state],
            api_name="segment",
            concurrency_limit=CONCURRENCY,
        )
        del note
    return app


def world_examples(folder: str | None = None, n: int = 3) -> list[str]:
    """A few synthetic-world images (generated once into a cache folder) as examples."""
    from dglrsis.eval.world import generate_world

    root = Path(
        folder or os.environ.get("DGLRSIS_DEMO_WORLD", Path(tempfile.gettempdir()) / "dglrsis-demo-world")
    )
    imgs = sorted((root / "isaid").glob("*/images/*.png"))
    if len(imgs) < n:
        generate_world(root, seed=5, n=max(n, 4), size=384, progress=False)
        imgs = sorted((root / "isaid").glob("*/images/*.png"))
    return [str(p) for p in imgs[:n]]


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    clip: str | None = None,
    proposals: str = "slic",
    sam_checkpoint: str | None = None,
    block: bool = True,
):
    models = DemoModels(clip, proposals, sam_checkpoint)
    examples = world_examples()
    app = build_app(models, examples)
    app.queue(max_size=64, default_concurrency_limit=CONCURRENCY)
    app.launch(
        server_name=host,
        server_port=port,
        max_file_size=f"{MAX_UPLOAD_MB}mb",
        prevent_thread_lock=not block,
        allowed_paths=[str(Path(e).parent) for e in examples],
        show_error=False,
        quiet=True,
    )
    return app
