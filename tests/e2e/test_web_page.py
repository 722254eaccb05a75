"""The web page in a real headless Chromium against a real server: restore, compare, download, errors, phones.

TAP_WRITE_SCREENSHOT=1 also writes docs/web_page.png (a procedural scene, never a dataset photo).
"""

import base64
import io
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e.conftest import API_KEY
from training.scenes import draw_city_scene, to_uint8
from training.synth import apply

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "web_page.png"
PHONE = (390, 844)
WAIT_S = 30
DURATION = r"(\d+ ms|\d+\.\d s)"
BOTH_IMAGES = "['before', 'after'].map((id) => document.getElementById(id))"


def rainy_city(h: int, w: int) -> bytes:
    """A PNG of the procedural city scene under synthetic rain: publishable, unlike the datasets."""
    lq = apply("rain", draw_city_scene(h, w, seed=0), np.random.default_rng(0), 0.6)
    buf = io.BytesIO()
    Image.fromarray(to_uint8(lq)).save(buf, format="PNG")
    return buf.getvalue()


def wait(driver, condition, message: str, timeout: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition, message)


def text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def open_page(driver, server) -> None:
    """Load the page and wait until the weather list has come from /v1/degradations."""
    driver.get(f"{server.url}/")
    wait(driver, lambda d: len(d.find_elements("css selector", "#degradation option")) > 1, "weathers never loaded")


def upload(driver, path: Path, degradation: str = "auto") -> None:
    from selenium.webdriver.support.ui import Select

    driver.find_element("id", "file").send_keys(str(path))
    Select(driver.find_element("id", "degradation")).select_by_value(degradation)
    driver.find_element("id", "submit").click()


def wait_for_result(driver) -> None:
    shown = wait(
        driver,
        lambda d: next((el for el in d.find_elements("css selector", "#result, #error") if el.is_displayed()), None),
        "neither a result nor an error",
    )
    assert shown.get_attribute("id") == "result", f"the page shows an error: {shown.text}"
    wait(
        driver,
        lambda d: d.execute_script(f"return {BOTH_IMAGES}.every((img) => img.complete && img.naturalWidth > 0)"),
        "the before/after images never loaded",
    )


def image_sizes(driver) -> dict[str, list[int]]:
    return driver.execute_script(
        f"return Object.fromEntries({BOTH_IMAGES}.map((img) => [img.id, [img.naturalWidth, img.naturalHeight]]))"
    )


def divider_pos(driver) -> float:
    return float(
        driver.execute_script("return document.getElementById('compare').style.getPropertyValue('--pos')").rstrip("%")
    )


def js_errors(driver) -> list[str]:
    """Console errors other than the failed requests a test provokes on purpose."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]


def write_screenshot(driver, width: int = 1100) -> None:
    """The whole page, top to bottom, at desktop width; only with TAP_WRITE_SCREENSHOT=1."""
    driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    height = 900
    for _ in range(3):  # the photo's height follows the viewport's (vh), so grow until nothing scrolls
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        time.sleep(0.3)  # layout, and the result's smooth scroll, settle
        needed = driver.execute_script("return document.documentElement.scrollHeight")
        if needed <= height:
            break
        height = needed
    SCREENSHOT.parent.mkdir(exist_ok=True)
    try:
        assert driver.save_screenshot(str(SCREENSHOT))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_page_and_static_files_are_served_outside_the_api_schema(ui_server):
    page = ui_server.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]  # no CDN can sneak in
    for name, media in (("app.js", "text/javascript"), ("style.css", "text/css")):
        r = ui_server.client.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(media)
    for path in ("/static/missing.css", "/static/%2e%2e", "/static/%2e%2e%2fapp.py"):
        r = ui_server.client.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
    paths = ui_server.client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_restore_compare_and_download(browser, ui_server, downloads, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    photo = tmp_path / "city-rain.png"
    photo.write_bytes(rainy_city(360, 540))
    open_page(browser, ui_server)
    options = [o.get_attribute("value") for o in browser.find_elements("css selector", "#degradation option")]
    assert options == ["auto", "haze", "rain", "raindrop", "snow"]
    assert text(browser, "model-version").startswith("Model ")

    upload(browser, photo, "rain")
    wait_for_result(browser)
    assert image_sizes(browser) == {"before": [540, 360], "after": [540, 360]}
    assert text(browser, "weather-label") == "Removed (your choice)" and text(browser, "weather") == "Rain streaks"
    assert not browser.find_element("id", "confidence-fact").is_displayed()  # only auto mode has one
    assert re.fullmatch(DURATION, text(browser, "timing"))
    assert re.fullmatch(f"{DURATION} with the upload", text(browser, "round-trip"))
    assert text(browser, "size").startswith("540 × 360 px")

    # The divider follows a click, a drag and the arrow keys (the range input holds the focus).
    compare = browser.find_element("id", "compare")
    quarter = compare.size["width"] / 4
    ActionChains(browser).move_to_element_with_offset(compare, -quarter, 0).click().perform()
    assert divider_pos(browser) == pytest.approx(25, abs=1)
    assert browser.switch_to.active_element.get_attribute("id") == "divider"
    ActionChains(browser).send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT).perform()
    assert divider_pos(browser) == pytest.approx(27, abs=1)
    ActionChains(browser).click_and_hold().move_by_offset(2 * quarter, 0).release().perform()
    assert divider_pos(browser) == pytest.approx(75, abs=1)
    ActionChains(browser).move_to_element(compare).click().perform()
    assert divider_pos(browser) == pytest.approx(50, abs=1)

    download = browser.find_element("id", "download")
    assert download.get_attribute("download") == "city-rain-restored.png"
    download.click()
    target = downloads / "city-rain-restored.png"
    wait(browser, lambda d: target.is_file(), f"no download; folder has {sorted(p.name for p in downloads.iterdir())}")
    with Image.open(target) as restored:
        restored.load()
        assert restored.format == "PNG" and restored.size == (540, 360)
    assert not js_errors(browser)

    if os.environ.get("TAP_WRITE_SCREENSHOT") == "1":
        write_screenshot(browser)


def test_best_quality_box_asks_for_the_flip_ensemble(browser, ui_server, tmp_path):
    photo = tmp_path / "small-rain.png"
    photo.write_bytes(rainy_city(48, 64))  # one tile, so its mirror makes two work items
    open_page(browser, ui_server)
    before = ui_server.metric("tap_tiles_per_request_sum")
    browser.find_element("id", "ensemble").click()
    upload(browser, photo, "rain")
    wait_for_result(browser)
    assert ui_server.metric("tap_tiles_per_request_sum") == before + 2
    assert not js_errors(browser)


def before_after_difference(driver) -> int:
    """Largest difference of any RGBA byte between the shown original and result (both drawn to canvases)."""
    return driver.execute_script(
        f"""const pixels = (img) => {{
          const canvas = document.createElement("canvas");
          canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
          const ctx = canvas.getContext("2d");
          ctx.drawImage(img, 0, 0);
          return ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        }};
        const [a, b] = {BOTH_IMAGES}.map(pixels);
        let most = 0;
        for (let i = 0; i < a.length; i += 1) most = Math.max(most, Math.abs(a[i] - b[i]));
        return most;"""
    )


def test_strength_slider_sends_the_strength(browser, ui_server, tmp_path):
    """The slider next to the weather choice: at 0% the service returns the photo untouched."""
    from selenium.webdriver.common.keys import Keys

    photo = tmp_path / "small-rain.png"
    photo.write_bytes(rainy_city(48, 64))
    open_page(browser, ui_server)
    slider = browser.find_element("id", "strength")
    assert slider.get_attribute("value") == "100" and text(browser, "strength-value") == "100%"
    slider.send_keys(Keys.HOME)
    assert text(browser, "strength-value") == "0%"
    before = ui_server.metric("tap_tiles_per_request_sum")
    upload(browser, photo, "rain")
    wait_for_result(browser)
    assert ui_server.metric("tap_tiles_per_request_sum") == before  # no backbone work at strength 0
    assert before_after_difference(browser) == 0

    slider.send_keys(Keys.END)
    assert text(browser, "strength-value") == "100%"
    browser.find_element("id", "submit").click()
    wait(browser, lambda d: ui_server.metric("tap_tiles_per_request_sum") == before + 1, "no restore at 100%")
    wait_for_result(browser)
    wait(browser, lambda d: before_after_difference(d) > 0, "the result never differed from the photo")
    assert not js_errors(browser)


def test_a_text_file_gets_a_readable_error(browser, ui_server, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a photo\n")
    open_page(browser, ui_server)
    upload(browser, notes)
    wait(browser, lambda d: d.find_element("id", "error").is_displayed(), "no error message")
    assert text(browser, "error-title") == (
        "This file is not an image we can read (415). Try a PNG, JPEG or WebP photo."
    )
    assert text(browser, "error-detail").startswith("Details: not a supported image; send one of PNG")
    assert not browser.find_element("id", "result").is_displayed()
    assert browser.find_element("id", "submit").is_enabled()  # the form is usable again
    assert not js_errors(browser)


def test_phone_layout_auto_mode_dropped_photo_and_touch(browser, ui_server):
    """390x844 touch screen: nothing scrolls sideways, and a finger drag moves the divider."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 2, "mobile": True},
    )
    browser.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
    try:
        open_page(browser, ui_server)
        browser.execute_script(
            """const [data, name] = arguments;
            const file = new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], name, {type: 'image/png'});
            const dropped = new DataTransfer();
            dropped.items.add(file);
            const drop = new DragEvent('drop', {dataTransfer: dropped, bubbles: true, cancelable: true});
            document.getElementById('drop').dispatchEvent(drop);""",
            base64.b64encode(rainy_city(300, 400)).decode(),
            "dropped.png",
        )
        assert text(browser, "drop-title") == "dropped.png"
        browser.find_element("id", "submit").click()
        wait_for_result(browser)
        assert image_sizes(browser) == {"before": [400, 300], "after": [400, 300]}
        assert text(browser, "weather-label") == "Detected weather" and text(browser, "weather")
        assert re.fullmatch(r"\d+%", text(browser, "confidence"))
        assert len(browser.find_elements("css selector", "#score-list li")) == 5  # 4 weathers + clean
        reason = text(browser, "reason")  # auto mode says why, in the rule's own words
        assert re.match(r"(nothing to remove|not sure|\w+: p = |\w+ \(p = )", reason), reason

        layout = browser.execute_script(
            """const box = document.getElementById('compare').getBoundingClientRect();
            return {inner: innerWidth, scroll: document.documentElement.scrollWidth, left: box.left, right: box.right,
                    grip: document.querySelector('.grip').getBoundingClientRect().width,
                    button: document.getElementById('download').getBoundingClientRect().height};"""
        )
        assert layout["inner"] == PHONE[0]
        assert layout["scroll"] <= layout["inner"], f"horizontal scroll on a phone: {layout}"
        assert 0 <= layout["left"] < layout["right"] <= layout["inner"]
        assert layout["grip"] >= 44 and layout["button"] >= 44  # touch targets

        box = browser.execute_script(
            """arguments[0].scrollIntoView({block: 'center'});
            const b = arguments[0].getBoundingClientRect();
            return [b.left, b.top, b.width, b.height];""",
            browser.find_element("id", "compare"),
        )
        y = box[1] + box[3] / 2
        for kind, x in (("touchStart", 0.5), ("touchMove", 0.4), ("touchMove", 0.2), ("touchEnd", None)):
            points = [] if x is None else [{"x": box[0] + x * box[2], "y": y}]
            browser.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})
        assert divider_pos(browser) == pytest.approx(20, abs=2)
        assert not js_errors(browser)
    finally:
        browser.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_api_key_is_asked_for_and_remembered(browser, keyed_server, tmp_path):
    photo = tmp_path / "small.png"
    photo.write_bytes(rainy_city(120, 160))
    open_page(browser, keyed_server)
    assert not browser.find_element("id", "api-key").is_displayed()  # tucked away until needed
    upload(browser, photo)
    wait(browser, lambda d: d.find_element("id", "error").is_displayed(), "no error message")
    assert text(browser, "error-title").startswith("This service needs an API key (401).")
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"

    browser.switch_to.active_element.send_keys(API_KEY)
    browser.find_element("id", "submit").click()
    wait_for_result(browser)
    assert not browser.find_element("id", "error").is_displayed()

    open_page(browser, keyed_server)
    assert browser.find_element("id", "api-key").get_attribute("value") == API_KEY
    assert not js_errors(browser)
