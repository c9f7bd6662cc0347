"""The viewer page in headless Chromium (Debian's chromium + chromedriver, driven by Selenium): the page
served by the real gateway plays a session, keys steer it, and the cameras the session used (as its
blocks report them to the page) moved as the keys say. A screenshot is kept in test-artifacts/viewer.png.

The session behind the gateway comes from one fixture, `viewer_backend`: the gateway's own factory
(`coordinator_sessions`, the async SDK) against a real local stack (the four services as processes,
tiny weights, CPU: tests/support/session_stack.py), with the tenant's token given to the page. The
protocol's edge cases a real server cannot produce on demand stay with the stand-in in
tests/integration/test_gateway.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from inspatio_world.gateway import coordinator_sessions, viewer_url
from tests.support.session_stack import BUCKET, DATASET_KEY, session_stack

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
IN_FLIGHT_S = 3.0  # a real (tiny, CPU) block in flight when a pause comes takes about a second


def browser_or_skip() -> tuple[str, str]:
    """Chromium and chromedriver from Debian (`make test-tools` installs them); in CI their absence fails."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromium-driver", driver)) if path is None]
    try:
        import selenium  # noqa: F401  (only: is it installed?)
    except ImportError:
        missing.append("selenium (pip, the test extra)")
    if missing:
        message = f"the viewer test needs {', '.join(missing)}: run `make test-tools` / `make install`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return chromium, driver


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_weights):
    browser_or_skip()  # no stack to start where no browser can run
    with session_stack(tmp_path_factory.mktemp("stack"), tiny_weights.root, INSPATIO_SESSION_MAX_BLOCKS="100", INSPATIO_MAX_SESSIONS="2") as running:
        yield running


@pytest.fixture
def viewer_backend(stack):
    """(session factory for the gateway, video_uri to open, the page's token)."""
    return coordinator_sessions(stack.address), f"s3://{BUCKET}/{DATASET_KEY}", stack.tokens["acme"]


class GatewayThread:
    """The real gateway on 127.0.0.1 in a thread of its own (Selenium's calls block)."""

    def __init__(self, open_session) -> None:
        from inspatio_world.gateway.server import Gateway

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)
        self.thread.start()
        self.gateway = Gateway(open_session, fps=16)
        asyncio.run_coroutine_threadsafe(self.gateway.start("127.0.0.1", 0), self.loop).result(10)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gateway.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def gateway(viewer_backend):
    thread = GatewayThread(viewer_backend[0])
    yield thread
    thread.stop()


@pytest.fixture
def browser():
    chromium, driver_path = browser_or_skip()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager never fetches a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,800",
                "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_script_timeout(10)
    yield driver
    driver.quit()


def viewer(driver, expression: str):
    return driver.execute_script(f"return window.viewer && {expression};")


def wait_for(driver, expression: str, timeout: float = 20.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = viewer(driver, expression)
        if value:
            return value
        time.sleep(0.05)
    state = driver.execute_script("return window.viewer && {status: viewer.status, blocks: viewer.blocks, "
                                  "frames: viewer.framesShown, errors: viewer.errors, lastSeq: viewer.lastSeq};")
    raise AssertionError(f"timed out waiting for {what or expression}; page state {state}")


def settled_camera(driver) -> np.ndarray:
    """The camera of the last frame of the first block that reflects the page's latest command (whose
    move, after a key release, is zero: the camera no longer moves)."""
    seq = viewer(driver, "viewer.lastSeq")
    wait_for(driver, f"viewer.lastBlock && viewer.lastBlock.command_seq >= {seq} && viewer.lastBlock.generation >= 0",
             what=f"a block reflecting command {seq}")
    first = np.array(viewer(driver, "viewer.lastBlock.cameras"), dtype=np.float64).reshape(-1, 4, 4)
    index = viewer(driver, "viewer.lastBlock.index")
    wait_for(driver, f"viewer.lastBlock.index > {index}", what="the next block")
    camera = np.array(viewer(driver, "viewer.lastBlock.cameras"), dtype=np.float64).reshape(-1, 4, 4)
    assert np.allclose(camera[0], camera[-1]) and np.allclose(camera[-1], first[-1], atol=1e-9), \
        "the camera still moves after the keys were released"
    return camera[-1]


def centre(w2c: np.ndarray) -> np.ndarray:
    return -w2c[:3, :3].T @ w2c[:3, 3]


def press(driver, key: str, seconds: float) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).key_down(key).perform()
    time.sleep(seconds)
    ActionChains(driver).key_up(key).perform()


def centre_pixel(driver) -> int:
    """A checksum of the picture on screen (tiny weights' frames are dark: one pixel may not change)."""
    return driver.execute_script(
        "const c = document.getElementById('screen');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let h = 0; for (let i = 0; i < d.length; i++) { h = (h * 31 + d[i]) | 0; } return h;")


def test_keys_steer_the_camera_and_frames_play(viewer_backend, gateway, browser):
    from selenium.webdriver.common.keys import Keys

    _, video_uri, token = viewer_backend
    # the Wan VAE: the tiny TAEHV decodes near-black frames, in which a move may change nothing on screen
    page, _, fragment = viewer_url(gateway.address, video_uri, token=token).partition("#")
    browser.get(f"{page}&autoencoder=wan_vae" + (f"#{fragment}" if fragment else ""))
    assert "token" not in browser.current_url  # the page takes the token out of the address bar
    wait_for(browser, "viewer.status === 'playing' && viewer.framesShown >= 6", what="frames playing")
    assert viewer(browser, "viewer.ready.session_id")
    start = settled_camera(browser) if viewer(browser, "viewer.lastSeq") else \
        np.array(viewer(browser, "viewer.lastBlock.cameras"), dtype=np.float64).reshape(-1, 4, 4)[-1]
    pixel_before = centre_pixel(browser)

    # W: forward, along the camera's view axis
    press(browser, "w", 1.0)
    after_w = settled_camera(browser)
    step = centre(after_w) - centre(start)
    view_axis = start[2, :3]
    # before any key the session holds at the source video's own camera of each frame (DA3's poses, which
    # drift a little): W's step is mostly, not exactly, along the view axis of the camera seen before it
    assert step @ view_axis > 0.05, f"W did not move the camera forward: step {step}"
    assert np.linalg.norm(step - (step @ view_axis) * view_axis) < 0.5 * (step @ view_axis)
    assert np.allclose(after_w[:3, :3], start[:3, :3], atol=0.1), "W turned the camera"  # the source poses turn a few degrees
    wait_for(browser, f"viewer.shownBlock && viewer.shownBlock.index >= {viewer(browser, 'viewer.lastBlock.index')}",
             what="the settled block on screen")
    assert centre_pixel(browser) != pixel_before, "the picture on screen did not change: new frames are not drawn"

    # A: strafe left, against the camera's x axis
    press(browser, "a", 1.0)
    after_a = settled_camera(browser)
    step = centre(after_a) - centre(after_w)
    right = after_w[0, :3]
    assert step @ right < -0.05, f"A did not strafe left: step {step}"
    assert np.linalg.norm(step - (step @ right) * right) < 1e-6 * max(1.0, np.linalg.norm(step))

    # Left arrow: the view axis turns left, the camera stays where it is
    press(browser, Keys.ARROW_LEFT, 1.0)
    after_left = settled_camera(browser)
    assert np.allclose(centre(after_left), centre(after_a), atol=1e-9), "turning moved the camera"
    assert after_left[2, :3] @ after_a[0, :3] < -0.01, "the left arrow did not turn the view to the left"

    latency = viewer(browser, "viewer.latencyMs")
    assert latency is not None and 0 < latency < 10_000
    assert viewer(browser, "viewer.fps") > 1
    assert viewer(browser, "viewer.errors.length") == 0

    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "viewer.png"))


def test_space_pauses_and_r_resets(viewer_backend, gateway, browser):
    _, video_uri, token = viewer_backend
    browser.get(viewer_url(gateway.address, video_uri, token=token))
    wait_for(browser, "viewer.status === 'playing' && viewer.blocks >= 2", what="blocks")
    press(browser, " ", 0.05)
    wait_for(browser, "viewer.status === 'paused'")
    time.sleep(IN_FLIGHT_S)  # the block in flight may still come
    blocks = viewer(browser, "viewer.blocks")
    time.sleep(1.0)
    assert viewer(browser, "viewer.blocks") == blocks, "blocks kept coming while paused"
    press(browser, " ", 0.05)
    wait_for(browser, f"viewer.blocks > {blocks}", what="blocks after resume")
    press(browser, "r", 0.05)
    wait_for(browser, "viewer.lastBlock.generation === 1 && viewer.lastBlock.index === 0", what="generation 1, block 0")
