"""`masktrack app`: the web page's routes (security, one job at a time, uploads, exports) and a real-browser session."""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading
import time
import urllib.request
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from masktrack.data.video import probe_video
from masktrack.web.server import create_app
from masktrack.web.state import Workspace

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # newer Starlette prefers httpx2 over httpx
    from starlette.testclient import TestClient

FRAMES, HEIGHT, WIDTH, SIDE = 8, 96, 128, 28
POST = {"X-Requested-By": "masktrack"}


def square_left(t: int) -> int:
    return 8 + 9 * t


def square(t: int) -> np.ndarray:
    """Where the moving square is on frame ``t``: ``(H, W)`` bool."""
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[30 : 30 + SIDE, square_left(t) : square_left(t) + SIDE] = True
    return mask


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frame folder: a red square moving right over a noisy grey background."""
    folder = tmp_path_factory.mktemp("square")
    background = np.random.default_rng(0).integers(70, 130, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    for t in range(FRAMES):
        image = background.copy()
        image[square(t)] = (225, 40, 35)
        Image.fromarray(image).save(folder / f"{t:05d}.png")
    return folder


class FakeSession:
    """A session that repeats the latest given mask; its propagation waits for ``gate`` (a run in progress)."""

    def __init__(self, folder: Path, gate: threading.Event) -> None:
        self.paths = sorted(folder.glob("*.png"))
        self.gate, self.given, self.start = gate, {}, None

    @property
    def frame_count(self) -> int:
        return len(self.paths)

    def read_frame(self, index: int) -> np.ndarray:
        return np.asarray(Image.open(self.paths[index]).convert("RGB"))

    def add_mask(self, index: int, labels: np.ndarray) -> None:
        self.given[index] = labels
        self.start = index if self.start is None else min(self.start, index)

    def finetune_steps_pending(self) -> int:
        return 2

    def propagate(self, on_step: Any = None) -> Any:
        start, self.start = self.start, None
        for _ in range(2):
            on_step()
        assert self.gate.wait(30)
        for index in range(start, self.frame_count):
            yield index, self.given[max(i for i in self.given if i <= index)]


class FakePredictor:
    """Boxes proposed as filled rectangles; sessions of :class:`FakeSession`."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()

    def session(self, path: Path) -> FakeSession:
        return FakeSession(Path(path), self.gate)

    def propose(self, frame: np.ndarray, prompts: list) -> np.ndarray:
        labels = np.zeros(frame.shape[:2], np.uint8)
        for prompt in prompts:
            x, y, w, h = prompt.box
            labels[y : y + h, x : x + w] = prompt.object_id
        return labels


@pytest.fixture()
def fake(frames: Path, tmp_path: Path) -> tuple[TestClient, FakePredictor, Workspace]:
    predictor = FakePredictor()
    space = Workspace(predictor, tmp_path / "run", max_upload=4096)
    space.open(frames)
    return TestClient(create_app(space), base_url="http://127.0.0.1"), predictor, space


def png_labels(data: bytes) -> np.ndarray:
    """A palette PNG's pixel values (object ids)."""
    image = Image.open(io.BytesIO(data))
    assert image.mode == "P"
    return np.asarray(image)


def box_of(t: int) -> list[int]:
    return [square_left(t), 30, SIDE, SIDE]


def propose_and_run(client: TestClient, frame: int = 0) -> None:
    reply = client.post("/api/propose", json={"frame": frame, "objects": [{"id": 1, "box": box_of(frame)}]}, headers=POST)
    assert reply.status_code == 200, reply.text
    assert client.post("/api/run", headers=POST).status_code == 202


def wait_done(client: TestClient) -> dict:
    deadline = time.monotonic() + 60
    while (job := client.get("/api/status").json()["job"])["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["state"] == "done", job
    return job


def test_prompts_give_proposals_strokes_and_removals() -> None:
    from masktrack.web.prompts import FramePrompt, Stroke, frame_labels

    base = np.zeros((HEIGHT, WIDTH), np.uint8)
    base[square(0)], base[60:70, 100:110] = 1, 2
    prompts = [FramePrompt(1, strokes=(Stroke(((80, 80),), 4), Stroke(((10, 40), (20, 40)), 3, erase=True))),
               FramePrompt(2), FramePrompt(3, box=(90, 5, 20, 10))]
    labels = frame_labels(np.zeros((HEIGHT, WIDTH, 3), np.uint8), base, prompts, FakePredictor().propose)
    assert labels[80, 80] == 1 and labels[40, 15] == 0 and labels[50, 25] == 1  # brushed, erased, kept
    assert not (labels == 2).any() and (labels == 3).sum() == 200  # removed; proposed from the box


@pytest.mark.parametrize("path", [
    "/static/..%2Fserver.py", "/static/%2e%2e%2fstate.py", "/static/server.py", "/static/..%5Cstate.py",
    "/api/frame/..%2F..%2F..%2Fetc%2Fpasswd", "/api/frame/-1.jpg", "/api/frame/8.jpg", "/api/frame/1e3.jpg",
    "/api/view/99999999999999999999.jpg", "/api/export/..%2Fmasks%2F00000.png", "/api/export/%2Fetc%2Fpasswd",
    "/api/export/masks", "/masks/00000.png", "/etc/passwd",
])  # fmt: skip
def test_paths_outside_the_page_are_not_found(fake: tuple, path: str) -> None:
    client, _, _ = fake
    assert client.get(path).status_code == 404


def test_page_and_frames_are_served_with_guards(fake: tuple) -> None:
    client, _, _ = fake
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "http" not in page.text.replace("http-equiv", "")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "app.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/api/frame/7.jpg").content[:2] == b"\xff\xd8"
    assert client.post("/api/run").status_code == 403  # no page header: another site's form cannot start work
    other = TestClient(client.app, base_url="http://evil.example")
    assert other.get("/api/info").status_code == 400  # DNS rebinding: foreign Host names are refused


def test_a_second_run_while_one_runs_is_refused_with_409(fake: tuple) -> None:
    client, predictor, _ = fake
    predictor.gate.clear()
    propose_and_run(client)
    second = client.post("/api/run", headers=POST)
    assert second.status_code == 409 and "already running" in second.json()["error"]
    busy = client.post("/api/propose", json={"frame": 3, "objects": [{"id": 1, "box": box_of(3)}]}, headers=POST)
    assert busy.status_code == 409 and "wait" in busy.json()["error"]
    assert client.get("/api/export/masks-palette.zip").status_code == 409
    predictor.gate.set()
    assert wait_done(client)["done"] == FRAMES + 2
    propose_and_run(client, 3)  # a correction: frames 3.. only
    assert wait_done(client)["first"] == 3


def test_bad_requests_get_400(fake: tuple) -> None:
    client, _, _ = fake
    assert client.post("/api/run", headers=POST).status_code == 400  # nothing proposed yet
    for body in ({"frame": "0"}, {"frame": 0, "objects": [{"id": 0, "box": [1, 1, 5, 5]}]},
                 {"frame": 0, "objects": [{"id": 1, "box": [1, 1]}]}, {"frame": 0, "objects": [{"id": 1, "points": [[1, 2]]}]}):
        assert client.post("/api/propose", json=body, headers=POST).status_code == 400, body
    assert client.post("/api/propose", content=b"{", headers=POST).status_code == 400
    assert client.post("/api/propose", json={"frame": 9, "objects": []}, headers=POST).status_code == 404


def test_uploads_over_the_limit_get_413(fake: tuple, frames: Path) -> None:
    client, _, space = fake
    big = b"\0" * 5000
    assert client.post("/api/upload?name=clip.mp4", content=big, headers=POST).status_code == 413
    chunked = client.post("/api/upload?name=clip.mp4", content=iter([big[:3000], big[3000:]]), headers=POST)
    assert chunked.status_code == 413 and "limit" in chunked.json()["error"]
    assert not any((space.run_dir / "uploads").glob("*"))
    assert client.post("/api/upload?name=../../x.mp4", content=b"not a video", headers=POST).status_code == 400
    assert not (space.run_dir.parent / "x.mp4").exists()


def test_a_zip_of_frames_can_be_uploaded(fake: tuple, frames: Path) -> None:
    client, _, space = fake
    space.max_upload = 2**20
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(frames.glob("*.png"))[:5]:
            archive.write(path, f"../clip/frame{int(path.stem)}.png")  # names inside never become paths
    reply = client.post("/api/upload?name=frames.zip", content=buffer.getvalue(), headers=POST)
    assert reply.status_code == 200, reply.text
    assert reply.json()["video"]["frames"] == 5
    assert [p.name for p in (space.run_dir / "uploads").iterdir()] == [space.source.name]  # the zip itself is gone
    assert sorted(p.name for p in space.source.iterdir()) == [f"{t:05d}.png" for t in range(5)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode with NumPy 2
def test_exports_hold_the_masks(fake: tuple) -> None:
    client, _, _ = fake
    assert client.get("/api/export/masks-palette.zip").status_code == 404  # nothing segmented yet
    propose_and_run(client)
    wait_done(client)
    palette = zipfile.ZipFile(io.BytesIO(client.get("/api/export/masks-palette.zip").content))
    masks = {name: png_labels(palette.read(name)) for name in sorted(palette.namelist())}
    assert list(masks) == [f"{t:05d}.png" for t in range(FRAMES)]
    assert all(np.array_equal(mask == 1, square(0)) for mask in masks.values())
    binary = zipfile.ZipFile(io.BytesIO(client.get("/api/export/masks-binary.zip").content))
    assert len(binary.namelist()) == FRAMES and np.array_equal(np.asarray(Image.open(binary.open("object-1/00003.png"))) == 255, square(0))
    coco = json.loads(client.get("/api/export/coco-rle.json").content)
    from pycocotools import mask as rle

    assert len(coco["images"]) == FRAMES and [c["id"] for c in coco["categories"]] == [1]
    for annotation in coco["annotations"]:
        decoded = rle.decode({"size": annotation["segmentation"]["size"], "counts": annotation["segmentation"]["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), masks[f"{annotation['image_id'] - 1:05d}.png"] == 1)
    video = client.get("/api/export/overlay.mp4")
    assert video.headers["content-type"] == "video/mp4"
    mp4 = client.app.state.workspace.run_dir / "exports" / "overlay.mp4"
    assert mp4.read_bytes() == video.content and probe_video(mp4).present == FRAMES


# --- in a real browser ---------------------------------------------------------------------


def browser() -> Any:
    """Headless Chromium driven by Debian's chromedriver; skips when either is missing."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    webdriver = pytest.importorskip("selenium.webdriver")
    if chromium is None or driver is None:
        pytest.skip("chromium or chromedriver not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def serve(space: Workspace) -> tuple[str, Any]:
    """The app on a free port in a thread: its URL and the uvicorn server (``should_exit`` stops it)."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(space), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def draw_box(driver: Any, box: list[int]) -> None:
    """Drag a box (frame pixels) on the page's canvas with the mouse."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "canvas")
    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", canvas)
    scale_x, scale_y = rect[0] / WIDTH, rect[1] / HEIGHT
    x, y, w, h = box
    start = (round((x - WIDTH / 2) * scale_x), round((y - HEIGHT / 2) * scale_y))
    ActionChains(driver).move_to_element_with_offset(canvas, *start).click_and_hold() \
        .move_by_offset(round(w * scale_x / 2), round(h * scale_y / 2)).move_by_offset(round(w * scale_x / 2), round(h * scale_y / 2)) \
        .release().perform()


def wait_for(driver: Any, element: str, text: str, timeout: float = 60) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: text in d.find_element(By.ID, element).text)
    return driver.find_element(By.ID, element).text


def palette_masks(url: str) -> dict[str, np.ndarray]:
    with urllib.request.urlopen(f"{url}/api/export/masks-palette.zip", timeout=60) as response:
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    return {name: png_labels(archive.read(name)) for name in sorted(archive.namelist())}


def test_box_run_correct_and_rerun_in_a_browser(frames: Path, weights: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    import masktrack

    driver = browser()
    predictor = masktrack.Predictor(weights, device="cpu", finetune={"steps": 2}, propagate={"flow": False})
    space = Workspace(predictor, tmp_path / "run")
    space.open(frames)
    url, server = serve(space)
    try:
        driver.get(url)
        wait_for(driver, "frame-label", f"0 / {FRAMES - 1}", 20)
        draw_box(driver, box_of(0))
        wait_for(driver, "message", "proposal for object 1")
        driver.find_element(By.ID, "run").click()
        wait_for(driver, "progress-text", "segmented frames 0-7")
        first = palette_masks(url)
        corrected = 5
        for _ in range(corrected):
            driver.find_element(By.ID, "next").click()
        wait_for(driver, "frame-label", f"{corrected} / {FRAMES - 1}")
        draw_box(driver, box_of(corrected))
        wait_for(driver, "message", f"frame {corrected}: proposal")
        driver.find_element(By.ID, "run").click()
        wait_for(driver, "progress-text", f"segmented frames {corrected}-7")
        second = palette_masks(url)
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        driver.quit()
        server.should_exit = True
    assert list(second) == [f"{t:05d}.png" for t in range(FRAMES)] and not errors, errors
    for t, name in enumerate(second):
        assert (second[name] == 1).any(), f"object 1 missing on frame {t}"
    assert all(np.array_equal(second[name], first[name]) for name in list(second)[:corrected])  # before the correction: kept
    for t in (0, corrected):  # the given frames: the proposals of the drawn boxes, on the square
        mask, truth = second[f"{t:05d}.png"] == 1, square(t)
        assert (mask & truth).sum() / (mask | truth).sum() > 0.5, t


# --- the command -------------------------------------------------------------------------------


def test_app_command_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from masktrack.cli import main

    assert main(["app", str(tmp_path / "missing.mp4")]) == 2
    assert main(["app", "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 2 and "missing.mp4: no such file or folder" in error and "--port" in error


def test_app_command_serves_the_page(frames: Path, weights: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "masktrack", "app", str(frames), "--port", str(port), "--weights", str(weights),
               "--device", "cpu", "--out", str(tmp_path / "run")]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stderr.readline()
        assert f"http://127.0.0.1:{port}/" in line, line
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=5) as response:
                    info = json.load(response)
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        assert info["video"]["frames"] == FRAMES and info["video"]["name"] == frames.name
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert (tmp_path / "run" / "masks").is_dir()


def test_without_a_video_the_page_waits_for_one(tmp_path: Path) -> None:
    client = TestClient(create_app(Workspace(FakePredictor(), tmp_path / "run")), base_url="http://127.0.0.1")
    assert client.get("/api/info").json()["video"] is None
    assert client.get("/api/frame/0.jpg").status_code == 404
    assert client.get("/api/export/coco-rle.json").status_code == 404
    reply = client.post("/api/run", headers=POST)
    assert reply.status_code == 400 and "open a video" in reply.json()["error"]
