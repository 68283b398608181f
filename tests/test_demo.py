"""The Gradio demo: named API endpoints driven over HTTP with gradio_client, and its resource bounds
(sessions, request folders, pixel budget, messages without server paths) checked directly."""

import concurrent.futures
import gc
import json
import os
import re
import socket
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import dglrsis  # noqa: E402
from dglrsis.demos import app as demo_app  # noqa: E402
from dglrsis.demos import render  # noqa: E402
from dglrsis.demos.resources import (  # noqa: E402
    RequestFiles,
    SessionStore,
    fit_size,
    load_upload,
    prune_empty_dirs,
    user_message,
)
from dglrsis.io import write_json  # noqa: E402

PATH_RE = re.compile(r"/(tmp|home|root|usr|work|var)/")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    models = demo_app.DemoModels("world-clip")
    examples = demo_app.world_examples(str(tmp_path_factory.mktemp("demo_world")), 2, size=192)
    files = RequestFiles(tmp_path_factory.mktemp("demo_files"), grace=0.5)
    handlers = demo_app.Demo(models, files=files)
    app = demo_app.build_app(models, examples, handlers)
    port = _free_port()
    demo_app.launch_app(app, port=port, examples=examples, max_file_size="2mb")
    yield {"url": f"http://127.0.0.1:{port}/", "models": models, "examples": examples, "demo": handlers}
    app.close()


def _segment(url, path, classes, **kw):
    return Client(url, verbose=False).predict(
        image=handle_file(path), classes=classes, api_name="/segment", **kw
    )


def _refer(url, path, expression):
    return Client(url, verbose=False).predict(
        image=handle_file(path), expression=expression, api_name="/refer"
    )


def _reference(demo, path):
    pred = dglrsis.Predictor(
        dglrsis.PredictorConfig(clip="world-clip", background="prompt"), clip=demo["models"].clip
    )
    return pred.set_image(dglrsis.read_image(path).array)


def test_endpoints_have_named_documented_parameters(demo):
    api = Client(demo["url"], verbose=False).view_api(return_format="dict")["named_endpoints"]
    assert set(api) == {"/segment", "/refer"}  # preview, table selection, load/unload are not API
    names = {k: [p["parameter_name"] for p in v["parameters"]] for k, v in api.items()}
    assert names == {
        "/segment": ["image", "classes", "bands", "background"],
        "/refer": ["image", "expression", "bands"],
    }
    for endpoint, params in names.items():
        description = api[endpoint]["description"]
        assert all(f"{p}:" in description for p in params), description


def test_segment_by_name_matches_the_pipeline(demo):
    path = demo["examples"][0]
    image = dglrsis.read_image(path).array
    classes = "ship, storage tank, harbor"
    overlay, legend, cam, table, downloads, message = _segment(demo["url"], path, classes)
    expected = (_reference(demo, path).segment(classes).labels + 1).astype(np.uint8)
    files = {os.path.basename(f): f for f in downloads}
    assert np.array_equal(np.asarray(Image.open(files["labels.png"])), expected)
    scores = json.load(open(files["scores.json"]))
    assert scores["classes"] == ["ship", "storage tank", "harbor"]
    assert scores["pixels"]["harbor"] == int((expected == 3).sum())
    assert all(f">{n} (" in legend for n in scores["classes"])  # every asked class in the legend
    over = np.asarray(Image.open(overlay))
    assert over.shape[1] == image.shape[1] and over.shape[0] > image.shape[0]  # legend strip drawn below
    assert cam is None and "OVSS" in message and "bands used: 1, 2, 3" in message
    assert [r[0] for r in table["data"]] == ["ship", "storage tank", "harbor", "(background)"]
    assert sum(r[1] for r in table["data"]) == expected.size


def test_refer_by_name_matches_the_pipeline(demo):
    path = demo["examples"][1]
    image = dglrsis.read_image(path).array
    text = "the storage tank on the left"
    overlay, legend, cam, table, downloads, message = _refer(demo["url"], path, text)
    ref = _reference(demo, path).refer(text)
    files = {os.path.basename(f): f for f in downloads}
    assert np.array_equal(np.asarray(Image.open(files["mask.png"])) > 0, ref.mask)
    assert json.load(open(files["scores.json"]))["selected"] == ref.selected
    cam_img = np.asarray(Image.open(cam))
    assert cam_img.shape[:2] == (image.shape[0], image.shape[1] + render.BAR_WIDTH)  # CAM + colour bar
    assert table["headers"][:5] == ["rank", "chosen", "x", "y", "area"] and "score" in table["headers"]
    assert len(table["data"]) == len(ref.candidates) >= 1
    assert [r[0] for r in table["data"]] == list(range(1, len(ref.candidates) + 1))
    chosen = [r[1] == "yes" for r in table["data"]]
    assert chosen == [c["mask"] in ref.selected for c in ref.candidates]
    assert np.asarray(Image.open(overlay)).shape == image.shape and "RES" in message


def test_bad_inputs_give_one_message_without_server_paths(demo, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    cases = (
        (lambda: _segment(demo["url"], str(bad), "ship"), "not a supported image"),
        (lambda: _segment(demo["url"], demo["examples"][0], "   "), "type class names"),
        (lambda: _segment(demo["url"], demo["examples"][0], "ship, ship"), "listed twice"),
        (lambda: _segment(demo["url"], demo["examples"][0], "ship", bands="9"), "band 9 does not exist"),
        (lambda: _refer(demo["url"], demo["examples"][0], ""), "type an expression"),
    )
    for call, expected in cases:
        with pytest.raises(AppError) as info:
            call()
        text = str(info.value)
        assert expected in text.lower(), text
        assert "Traceback" not in text and not PATH_RE.search(text), text


def test_internal_errors_show_a_generic_message():
    def boom():
        raise RuntimeError("failed at /srv/secret/model.bin")

    with pytest.raises(demo_app.gr.Error) as info:
        demo_app._guarded(boom)()
    assert info.value.message == demo_app.INTERNAL


def test_oversized_upload_is_refused(demo, tmp_path):
    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((1400, 1400, 3)) * 255).astype(np.uint8)).save(big)  # ~5.9 MB > 2 MB
    with pytest.raises((AppError, ValueError)) as info:  # refused by the client or by the server
        _segment(demo["url"], str(big), "ship")
    assert "large" in str(info.value).lower() or "size" in str(info.value).lower()


def test_concurrent_answers_equal_sequential_ones_and_folders_are_removed(demo):
    jobs = [(demo["examples"][i % 2], "ship, harbor" if i % 3 else "plane, storage tank") for i in range(8)]
    sequential = {job: _segment(demo["url"], *job)[4] for job in set(jobs)}

    def labels(files):
        return np.asarray(Image.open(next(f for f in files if f.endswith(".png"))))

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda job: _segment(demo["url"], *job)[4], jobs))
    for job, files in zip(jobs, results, strict=True):
        assert np.array_equal(labels(files), labels(sequential[job]))
    files = demo["demo"].files
    deadline = time.time() + 10
    while files.pending() and time.time() < deadline:
        time.sleep(0.1)
    assert files.pending() == 0 and list(files.root.iterdir()) == []  # no folder left per request
    assert len(demo["demo"].sessions) <= demo_app.MAX_SESSIONS


# ---------------------------------------------------------------------------------- resources, direct
def test_session_store_caps_expires_and_releases():
    now = [0.0]
    store = SessionStore(cap=3, ttl=10, clock=lambda: now[0])

    class Heavy:
        pass

    refs = []
    for i in range(5):
        s = store.get(f"s{i}")
        s.predictor = Heavy()
        refs.append(weakref.ref(s.predictor))
        now[0] += 1
    assert len(store) == 3 and "s0" not in store and "s4" in store  # least recently used dropped
    store.get("s2")  # used again: survives the next eviction
    store.get("s9")
    assert "s2" in store and "s3" not in store
    now[0] += 11
    store.get("new")
    assert len(store) == 1  # the idle ones expired
    store.drop("new")
    del s
    gc.collect()
    assert all(r() is None for r in refs)  # nothing else keeps an evicted session's state alive


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_request_folders_are_removed_and_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        files = RequestFiles(tmp_path / "files", grace=0.05)
        with files.request() as folder:
            path = folder / "a.json"
            write_json(path, {"x": 1})
            files.publish(path)
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
        assert os.stat(folder).st_mode & 0o777 == 0o777 & ~umask
        with pytest.raises(ValueError), files.request() as failed:
            raise ValueError
        assert not failed.exists()  # a failed request's folder goes at once
        deadline = time.time() + 5
        while folder.exists() and time.time() < deadline:
            time.sleep(0.02)
        assert not folder.exists() and files.pending() == 0
    finally:
        os.umask(old)


def test_cache_pruning_removes_only_old_empty_folders(tmp_path):
    old_empty, new_empty, old_full = (tmp_path / n for n in ("a", "b", "c"))
    for d in (old_empty, new_empty, old_full):
        d.mkdir()
    (old_full / "x.png").write_bytes(b"x")
    now = time.time()
    for d in (old_empty, old_full):
        os.utime(d, (now - 1000, now - 1000))
    assert prune_empty_dirs(tmp_path, age=900, now=now) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "c"]


def test_user_message_cuts_paths():
    msg = user_message("/tmp/gradio/3f2a/upload.png is not a supported image; see /home/u/x/")
    assert msg == "upload.png is not a supported image; see x"
    assert user_message("select one or three bands, got 2: [1, 2]") == (
        "select one or three bands, got 2: [1, 2]"
    )


def test_pixel_budget_downscales_and_scales_the_georeference(tmp_path):
    assert fit_size(4000, 2000, 1_000_000) == (1414, 707)
    assert fit_size(800, 600, 1_000_000) == (800, 600)
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    data = (np.arange(4 * 600 * 900) % 4000).reshape(4, 600, 900).astype(np.uint16)
    path = tmp_path / "geo.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=900, height=600, count=4, dtype="uint16",
        crs="EPSG:32633", transform=from_origin(500000, 4000000, 0.5, 0.5),
    ) as dst:  # fmt: skip
        dst.write(data)
    up = load_upload(path, [4, 3, 2], budget=60_000)
    h, w = up.array.shape[:2]
    assert up.array.dtype == np.uint8 and h * w <= 60_000 and abs(w / h - 1.5) < 0.02
    assert up.bands == [4, 3, 2] and up.count == 4 and up.scaled and up.source_size == (900, 600)
    a, _, c, _, e, f = up.meta.transform
    assert (c, f) == (500000, 4000000)
    assert a == pytest.approx(0.5 * 900 / w) and e == pytest.approx(-0.5 * 600 / h)
    jpeg = tmp_path / "big.jpg"
    Image.fromarray(np.zeros((2048, 2048, 3), np.uint8)).save(jpeg)
    up = load_upload(jpeg, None)
    assert up.array.shape == (1024, 1024, 3) and up.scaled  # 2048² → the 1,048,576-pixel budget


def test_preview_states_the_bands_used(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    demo = demo_app.Demo(models=None, files=RequestFiles(tmp_path / "files", grace=0.05))
    path = tmp_path / "six.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=48, count=6, dtype="uint16") as dst:
        dst.write((np.arange(6 * 48 * 64) % 999).reshape(6, 48, 64).astype(np.uint16))
    img, info = demo.preview(str(path), "")
    # six bands without colour metadata: bands 1,2,3 by default, and the preview says which were used
    assert np.asarray(Image.open(img)).shape == (48, 64, 3) and "bands used: 1, 2, 3" in info
    assert not PATH_RE.search(info)
    img, info = demo.preview(str(path), "5,3,1")
    assert np.asarray(Image.open(img)).shape == (48, 64, 3) and "bands used: 5, 3, 1" in info
    assert "6 bands" in info


def test_default_model_falls_back_without_any_download(monkeypatch):
    import dglrsis.models as models

    monkeypatch.setattr(
        models, "list_models", lambda: [dict(family="clip", name="ViT-B-16:openai", present="no")]
    )
    asked = []
    real = dglrsis.load_clip

    def record(name, *a, **k):
        asked.append(name)
        return real(name, *a, **k)

    monkeypatch.setattr(dglrsis.models, "load_clip", record)
    m = demo_app.DemoModels(None)
    assert asked == ["world-clip"] and m.clip_name == "world-clip"
    note = m.model_note()
    assert note.count("Model:") == 1 and "world-clip" in note and "Error" not in note
    assert not PATH_RE.search(note)


def test_analytics_are_off_in_code():
    app = demo_app.build_app(demo_app.DemoModels("world-clip:random"), None)
    assert app.analytics_enabled is False and os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_readme_gradio_client_call_runs(demo, capsys):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## Demo") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'api_name="/segment"' in code and 'api_name="/refer"' in code
    code = code.replace("http://127.0.0.1:7860/", demo["url"])
    code = code.replace("demo_world/isaid/val/images/P0006.png", demo["examples"][0])
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "['rank', 'chosen', 'x', 'y', 'area', 'score'" in out and "scores.json" in out


def test_a_model_that_cannot_load_stops_the_server():
    port = _free_port()
    with pytest.raises(dglrsis.DglrsisError, match="unknown CLIP"):
        demo_app.launch(port=port, clip="no-such-clip:x", block=False)
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", port))


def test_candidate_table_takes_every_score_term():
    from types import SimpleNamespace

    from dglrsis.masks import Proposals

    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:6, 3:9] = True  # centre (5.5, 3.5)
    masks[1, 10:20, 20:30] = True
    props = Proposals.from_masks(masks)
    rows = [  # a candidate with nested per-modifier scores, as a richer referring answer gives
        {"rank": 1, "mask": 1, "box": [20, 10, 30, 20], "area": 100, "score": 1.5, "noun": 0.9,
         "cam": 0.4, "modifiers": 0.2, "modifier_scores": {"position": 0.8, "size": 0.1}, "selected": True},
        {"rank": 2, "mask": 0, "box": [3, 2, 9, 6], "area": 24, "score": 0.7, "noun": 0.5,
         "cam": 0.1, "modifiers": 0.1, "modifier_scores": {"position": 0.2, "size": 0.3}, "selected": False},
    ]  # fmt: skip
    for row, ranked in zip(rows, (True, False), strict=True):  # size's yes/no term, as explain() shows it
        row |= {"instance_area": row["area"], "size_ranked": ranked}
    ref = SimpleNamespace(candidates=rows, selected=[1])
    headers, table, drawn = demo_app._candidate_table(ref, props)
    assert headers == [
        "rank",
        "chosen",
        "x",
        "y",
        "area",
        "score",
        "noun",
        "cam",
        "modifiers",
        "position",
        "size",
        "instance_area",
        "size_ranked",
    ]
    assert table[0] == [1, "yes", 24, 14, 100, 1.5, 0.9, 0.4, 0.2, 0.8, 0.1, 100, "yes"]
    assert table[1][-2:] == [24, "no"]
    assert table[1][:5] == [2, "", 5, 3, 24] and [r for r, _ in drawn] == [1, 2]
    assert np.array_equal(drawn[1][1], masks[0])
    assert demo_app._modifiers_used(ref) == ["position", "size"]
