"""The upload page (intake, ``GET /``) in headless Chromium (Debian's, driven by Selenium; nothing
downloads a browser): a small file, a file above a low multipart threshold, and an invalid file
whose line and column the page shows. Screenshots go to ``tests/browser/screenshots/``."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from genobase import stack
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from tests.conftest import Pipeline

pytestmark = pytest.mark.e2e
SCREENSHOTS = Path(__file__).parent / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Debian's chromium and chromium-driver are needed (scripts/setup.sh installs them)")
    options = Options()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1100,900", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    SCREENSHOTS.mkdir(exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def pages(pipeline: Pipeline, settings: Settings, multipart_intake: str) -> dict[str, str]:
    """Both intakes' pages may send to the uploads bucket from the browser (CORS)."""
    base = pipeline.settings.status_base_url
    origins = [*stack.browser_origins(base), *stack.browser_origins(multipart_intake)]
    ObjectStore(settings).allow_browser_uploads(settings.uploads_bucket, origins)
    return {"put": base, "multipart": multipart_intake}


def send_through_the_page(driver: webdriver.Chrome, page: str, key: str, path: Path, shot: str) -> str:
    driver.get(f"{page}/")
    field = driver.find_element(By.ID, "key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.ID, "file").send_keys(str(path))
    driver.find_element(By.ID, "send").click()
    WebDriverWait(driver, 180, poll_frequency=0.5).until(lambda d: d.find_element(By.ID, "outcome").text.strip())
    driver.save_screenshot(str(SCREENSHOTS / f"{shot}.png"))
    return str(driver.find_element(By.ID, "outcome").text)


def test_a_small_file_goes_through_the_page(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline, tmp_path: Path
) -> None:
    path = tmp_path / "page-small.fa"
    path.write_text(">a first\nACGTACGT\n>b\nGGCC\n")
    outcome = send_through_the_page(browser, pages["put"], pipeline.api_key, path, "small-file-done")
    assert outcome.startswith("Done: 2 records"), outcome
    link = browser.find_element(By.ID, "download").get_attribute("href")
    assert link and "generation-1.json" in link


def test_a_file_above_the_threshold_goes_in_parts(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline, tmp_path: Path
) -> None:
    path = tmp_path / "page-large.fa"
    rng = random.Random(9)
    with path.open("w") as out:
        for i in range(6):  # ~12 MiB: 3 parts of 5 MiB
            seq = "".join(rng.choices("ACGT", k=2_000_000))
            out.write(f">big{i}\n" + "\n".join(seq[j : j + 80] for j in range(0, len(seq), 80)) + "\n")
    outcome = send_through_the_page(browser, pages["multipart"], pipeline.api_key, path, "multipart-done")
    assert outcome.startswith("Done: 6 records"), outcome


def test_an_invalid_file_shows_its_line_and_column(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline, tmp_path: Path
) -> None:
    path = tmp_path / "page-bad.fa"
    path.write_text(">ok\nACGT\n>bad\nACGT\nAC!GT\n")
    outcome = send_through_the_page(browser, pages["put"], pipeline.api_key, path, "invalid-file")
    assert outcome.startswith("Failed: invalid_character at line 5, column 3"), outcome
