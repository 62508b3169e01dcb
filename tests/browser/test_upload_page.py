"""The upload page (intake, ``GET /``) in headless Chromium (Debian's, driven by Selenium; nothing
downloads a browser), against the running stack: one file, two at once, the list and its delete,
a file in parts, a reload mid-upload then the resume, a cancel, a part that keeps failing, an
invalid file and its retry; axe-core (``tests/browser/vendor/``) on the page idle and busy.

Slow networks are Chrome's own DevTools throttling (``Network.emulateNetworkConditions``) and a
failing part is a blocked URL (``Network.setBlockedURLs``): the page and the store are unchanged.
Screenshots (test artifacts) go to ``$GENOBASE_SCREENSHOTS`` if set, else to
``tests/browser/screenshots/`` (ignored by git); the path is printed.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from genobase import stack
from shared.domain.multipart import plan as multipart_plan
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from tests.conftest import MIB, Pipeline

pytestmark = pytest.mark.e2e
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
PART_BYTES = 5 * MIB  # the multipart intake's parts (tests/conftest.py: multipart_intake)


@pytest.fixture(scope="module")
def screenshots() -> Path:
    configured = os.environ.get("GENOBASE_SCREENSHOTS")
    where = Path(configured) if configured else Path(__file__).parent / "screenshots"
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nupload page screenshots: {where}", file=sys.stderr)
    return where


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
        "--window-size=1100,1300", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(120)
    driver.execute_cdp_cmd("Network.enable", {})
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def full_speed(browser: webdriver.Chrome) -> Iterator[None]:
    """Each test starts and ends with the network unthrottled and nothing blocked."""
    throttle(browser, None)
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    yield
    throttle(browser, None)
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})


@pytest.fixture(scope="module")
def pages(pipeline: Pipeline, settings: Settings, multipart_intake: str) -> dict[str, str]:
    """Both intakes' pages may send to the uploads bucket from the browser (CORS)."""
    base = pipeline.settings.status_base_url
    origins = [*stack.browser_origins(base), *stack.browser_origins(multipart_intake)]
    ObjectStore(settings).allow_browser_uploads(settings.uploads_bucket, origins)
    return {"put": base, "multipart": multipart_intake}


@pytest.fixture(scope="module")
def store(settings: Settings) -> ObjectStore:
    return ObjectStore(settings)  # the stack's admin S3 user: it sees every multipart upload


def shoot(driver: webdriver.Chrome, where: Path, name: str) -> None:
    """A screenshot of the whole page (the window made as tall as the page, then put back)."""
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    page_height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(width, max(height, page_height + 200))
    driver.save_screenshot(str(where / f"{name}.png"))
    driver.set_window_size(width, height)


def throttle(driver: webdriver.Chrome, upload_bytes_per_second: int | None) -> None:
    """Chrome's DevTools throttling of what the page sends (None: full speed)."""
    conditions = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    if upload_bytes_per_second is not None:
        conditions["uploadThroughput"] = upload_bytes_per_second
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", conditions)


def fasta(path: Path, megabytes: int) -> int:
    """A FASTA file of about ``megabytes`` MiB of random bases (records of 1 Mbp); returns its record count."""
    rng = random.Random(megabytes)
    records = written = 0
    with path.open("w") as out:
        while written < megabytes * MIB:
            seq = "".join(rng.choices("ACGT", k=1_000_000))
            text = f">r{records}\n" + "\n".join(seq[j : j + 80] for j in range(0, len(seq), 80)) + "\n"
            out.write(text)
            written += len(text)
            records += 1
    return records


def open_page(driver: webdriver.Chrome, page: str, key: str) -> None:
    driver.get(f"{page}/")
    field = driver.find_element(By.ID, "key")
    field.clear()
    field.send_keys(key, Keys.TAB)  # the change event: the key is kept and the list is read


def send_files(driver: webdriver.Chrome, *paths: Path) -> None:
    driver.find_element(By.ID, "file").send_keys("\n".join(str(p) for p in paths))
    driver.find_element(By.ID, "send").click()


def transfer(driver: webdriver.Chrome, name: str) -> WebElement:
    """The newest progress item of file ``name``."""
    return driver.find_element(By.CSS_SELECTOR, f'li.transfer[data-file="{name}"]')


def outcome(driver: webdriver.Chrome, name: str, timeout: float = 240) -> str:
    """The outcome line of file ``name`` once it has one."""
    found: list[str] = []

    def shown(d: webdriver.Chrome) -> bool:
        found[:] = [transfer(d, name).find_element(By.CLASS_NAME, "outcome").text.strip()]
        return bool(found[0])

    WebDriverWait(driver, timeout, poll_frequency=0.5).until(shown)
    return found[0]


def remembered_entry(driver: webdriver.Chrome, name: str) -> dict[str, Any] | None:
    """What the page keeps in localStorage for file ``name`` (to resume): its registration's
    Idempotency-Key, body and upload id."""
    text = driver.execute_script(
        "const key = Object.keys(localStorage).find((k) => k.startsWith(`genobase-transfer:${arguments[0]}:`));"
        "return key ? localStorage.getItem(key) : null;",
        name,
    )
    entry: dict[str, Any] | None = json.loads(text) if text else None
    return entry


def wait_for_entry(driver: webdriver.Chrome, name: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []

    def kept(d: webdriver.Chrome) -> bool:
        entry = remembered_entry(d, name)
        entries[:] = [entry] if entry else []
        return bool(entries)

    WebDriverWait(driver, 60, poll_frequency=0.2).until(kept)
    entry = entries[0]
    assert set(entry) == {"idempotencyKey", "body", "uploadId"}, entry  # no URL, no key
    no_url_in_local_storage(driver)
    return entry


def replayed_ticket(page: str, api_key: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The ticket of a remembered upload, as the page gets it on a resume: its body registered
    again with its Idempotency-Key (200, the same upload, its links signed afresh)."""
    response = httpx.post(
        f"{page}/uploads",
        json=entry["body"],
        headers={"Authorization": f"Bearer {api_key}", "Idempotency-Key": entry["idempotencyKey"]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    ticket: dict[str, Any] = response.json()
    assert ticket["id"] == entry["uploadId"]
    return ticket


def no_url_in_local_storage(driver: webdriver.Chrome) -> None:
    """Nothing in localStorage (keys and values) is a URL the page could be sent to."""
    stored = driver.execute_script(
        "return Object.keys(localStorage).map((k) => k + '=' + localStorage.getItem(k)).join('\\n');"
    )
    assert "http" not in stored.lower(), stored


def record_the_page(driver: webdriver.Chrome) -> None:
    """From now until the page is left: each fetch the page makes (method, path, Idempotency-Key,
    body) in ``window.fetched``, each value written to localStorage in ``window.stored``."""
    driver.execute_script(
        "window.fetched = []; window.stored = [];"
        "const realFetch = window.fetch;"
        "window.fetch = (input, init = {}) => {"
        "  const headers = init.headers || {};"
        "  window.fetched.push({method: init.method || 'GET', path: new URL(input, location.href).pathname,"
        "    idempotencyKey: headers['Idempotency-Key'] || null, body: init.body === undefined ? null : init.body});"
        "  return realFetch(input, init);"
        "};"
        "const realSet = Storage.prototype.setItem;"
        "Storage.prototype.setItem = function (key, value) {"
        "  if (this === localStorage) window.stored.push(String(key) + '=' + String(value));"
        "  return realSet.call(this, key, value);"
        "};"
    )


def part_puts(driver: webdriver.Chrome) -> list[str]:
    """The part PUTs this page has made since it loaded (Resource Timing keeps each request's URL)."""
    entries: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter((e) => e.initiatorType === 'xmlhttprequest' && e.name.includes('partNumber='))"
        ".map((e) => e.name);"
    )
    return entries


def no_serious_violations(driver: webdriver.Chrome, state: str) -> None:
    """axe-core on the page as it is now: no violation of serious or critical impact."""
    if not driver.execute_script("return typeof axe !== 'undefined';"):
        driver.execute_script(AXE.read_text())  # WebDriver's scripts are not held to the page's CSP
    violations: Any = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then((r) => done(r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map((n) => n.target.join(' '))})))).catch((e) => done(String(e)));"
    )
    assert isinstance(violations, list), violations
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert serious == [], f"axe-core on the {state} page: {serious}"


def test_a_small_file_goes_through_the_page(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline, tmp_path: Path, screenshots: Path
) -> None:
    """Also: a remembered entry for this file of another shape (an older page's: a ticket with a
    completion URL) is dropped, and the file registered anew."""
    open_page(browser, pages["put"], pipeline.api_key)
    no_serious_violations(browser, "idle")
    shoot(browser, screenshots, "idle")
    path = tmp_path / "page-small.fa"
    path.write_text(">a first\nACGTACGT\n>b\nGGCC\n")
    os.utime(path, (1_700_000_000, 1_700_000_000))  # File.lastModified: 1700000000000
    remembered_key = f"genobase-transfer:{path.name}:{path.stat().st_size}:1700000000000"
    forged = {"ticket": {"id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "upload_method": "multipart",
              "multipart": {"complete_url": "https://attacker.example/complete"}}}  # fmt: skip
    browser.execute_script("localStorage.setItem(arguments[0], arguments[1]);", remembered_key, json.dumps(forged))
    send_files(browser, path)
    shown = outcome(browser, path.name)
    shoot(browser, screenshots, "small-file-done")
    assert shown.startswith("Done: 2 records"), shown
    link = transfer(browser, path.name).find_element(By.CLASS_NAME, "download").get_attribute("href")
    assert link and "generation-1.json" in link
    assert browser.execute_script("return localStorage.getItem(arguments[0]);", remembered_key) is None


def test_server_strings_are_shown_safely(browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline) -> None:
    """The page's own functions, in the page: a result URL of another scheme than http(s) gets no
    link, an ETag cannot change the completion document, a file name with a right-to-left override
    is isolated in a <bdi> (its item, the alert)."""
    open_page(browser, pages["put"], pipeline.api_key)
    checked: dict[str, Any] = browser.execute_script(
        """
        const name = "report\u202eaf.exe";
        const outcomeOf = (url) => {
          const ui = transferItem({ name, size: 1 });
          showOutcome({ ui, file: { name } }, { state: "done", mode: "store", result: { url, records: 1 } });
          const link = ui.outcome.querySelector("a");
          return { text: ui.outcome.textContent, href: link ? link.getAttribute("href") : null };
        };
        const etag = '"abc"</ETag></Part><Part><PartNumber>9</PartNumber><ETag>x';
        const xml = new DOMParser().parseFromString(completionXml([{ number: 1, etag }]), "application/xml");
        const item = transferItem({ name, size: 1 });
        const nameBox = item.item.querySelector(".name").firstChild;
        alertError(": failed", name);
        const alerted = document.getElementById("alert").firstChild;
        return {
          scripted: outcomeOf("javascript:alert(document.domain)"),
          data: outcomeOf("data:text/html,<script>alert(1)</script>"),
          https: outcomeOf("https://store.example/r.json?X-Amz-Signature=1"),
          parts: xml.getElementsByTagName("Part").length,
          etag: xml.getElementsByTagName("ETag")[0].textContent,
          errors: xml.getElementsByTagName("parsererror").length,
          nameTag: nameBox.tagName, nameText: nameBox.textContent,
          alertTag: alerted.tagName, alertText: document.getElementById("alert").textContent,
        };
        """
    )
    assert checked["scripted"] == {"text": "Done: 1 record.", "href": None}
    assert checked["data"] == {"text": "Done: 1 record.", "href": None}
    assert checked["https"]["href"] == "https://store.example/r.json?X-Amz-Signature=1"
    assert (checked["parts"], checked["errors"]) == (1, 0)
    assert checked["etag"] == '"abc"</ETag></Part><Part><PartNumber>9</PartNumber><ETag>x'
    assert (checked["nameTag"], checked["nameText"]) == ("BDI", "report\u202eaf.exe")
    assert (checked["alertTag"], checked["alertText"]) == ("BDI", "report\u202eaf.exe: failed")


def test_an_md5_worker_that_fails_ends_the_upload(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline, tmp_path: Path
) -> None:
    """The worker's script cannot load (the page's Worker pointed at a missing script): the hashes
    fail instead of waiting for ever, the error is shown, and the upload is ended as for a part."""
    path = tmp_path / "page-no-worker.fa"
    with path.open("wb") as out:
        out.truncate(9 * MIB)  # above the 8 MiB threshold: parts, each hashed
    open_page(browser, pages["multipart"], pipeline.api_key)
    browser.execute_script(
        "const Real = window.Worker;"
        "window.Worker = class extends Real { constructor() { super('/static/no-such-worker.js'); } };"
    )
    send_files(browser, path)
    shown = outcome(browser, path.name, timeout=60)
    assert shown.startswith("Failed: the MD5 worker failed"), shown
    assert shown.endswith("The upload was ended; nothing is kept."), shown
    assert browser.find_element(By.ID, "alert").text == f"{path.name}: {shown}"
    upload_id = str(transfer(browser, path.name).get_attribute("data-id"))
    assert pipeline.status(upload_id)["state"] == "deleted"


def test_the_drop_zone_opens_the_chooser_from_the_keyboard(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline
) -> None:
    open_page(browser, pages["put"], pipeline.api_key)
    browser.execute_script(
        "window.chooserOpened = 0; document.getElementById('file')"
        ".addEventListener('click', (e) => { e.preventDefault(); window.chooserOpened++; });"
    )
    drop = browser.find_element(By.ID, "drop")
    assert drop.get_attribute("tabindex") == "0" and drop.get_attribute("role") == "button"
    drop.send_keys(Keys.ENTER)
    drop.send_keys(Keys.SPACE)
    assert browser.execute_script("return window.chooserOpened;") == 2


def test_two_files_at_once_then_the_list_and_a_delete(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline, tmp_path: Path, screenshots: Path
) -> None:
    first, second = tmp_path / "page-two-a.fa", tmp_path / "page-two-b.fq"
    first.write_text(">x\nACGT\n>y\nGG\n>z\nTTTA\n")
    second.write_text("@read1\nACGT\n+\nIIII\n")
    open_page(browser, pages["put"], pipeline.api_key)
    browser.find_element(By.ID, "labels").send_keys("sample=NA12878\nrun=7")
    send_files(browser, first, second)
    assert outcome(browser, first.name).startswith("Done: 3 records")
    assert outcome(browser, second.name).startswith("Done: 1 record.")

    def row(name: str) -> WebElement | None:
        rows = browser.find_elements(By.CSS_SELECTOR, f'#recent-rows tr[data-file="{name}"]')
        return rows[0] if rows else None

    def listed_done(d: webdriver.Chrome) -> bool:
        found = [row(first.name), row(second.name)]
        return all(r is not None and r.find_element(By.CLASS_NAME, "state").text == "done" for r in found)

    WebDriverWait(browser, 30, poll_frequency=0.3).until(listed_done)
    WebDriverWait(browser, 30, poll_frequency=0.3).until(
        lambda d: row(first.name).find_elements(By.CLASS_NAME, "download")  # type: ignore[union-attr]
    )
    first_row = row(first.name)
    assert first_row is not None
    assert first_row.find_element(By.CLASS_NAME, "records").text == "3"
    assert sorted(first_row.find_element(By.CLASS_NAME, "labels").text.split(", ")) == ["run=7", "sample=NA12878"]
    shoot(browser, screenshots, "two-files-and-the-list")
    link = first_row.find_element(By.CLASS_NAME, "download").get_attribute("href")
    assert link
    document = httpx.get(link, timeout=30).json()  # the presigned result URL, no key needed
    assert len(document["records"]) == 3
    assert document["labels"] == {"sample": "NA12878", "run": "7"}

    upload_id = first_row.get_attribute("data-id")
    delete = first_row.find_element(By.CLASS_NAME, "delete")
    delete.click()  # the first press asks again: nothing is deleted yet
    assert pipeline.status(str(upload_id))["state"] == "done"
    delete.click()
    WebDriverWait(browser, 30, poll_frequency=0.3).until(lambda d: row(first.name) is None)
    assert row(second.name) is not None
    assert pipeline.status(str(upload_id))["state"] == "deleted"


def test_a_file_above_the_threshold_goes_in_parts(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline, tmp_path: Path, screenshots: Path
) -> None:
    path = tmp_path / "page-large.fa"
    records = fasta(path, 12)  # 3 parts of 5 MiB
    open_page(browser, pages["multipart"], pipeline.api_key)
    send_files(browser, path)
    shown = outcome(browser, path.name)
    shoot(browser, screenshots, "multipart-done")
    assert shown.startswith(f"Done: {records} records"), shown
    assert len(part_puts(browser)) == multipart_plan(path.stat().st_size, PART_BYTES).count
    worker = "return performance.getEntriesByType('resource').some((e) => e.name.endsWith('/static/md5-worker.js'));"
    assert browser.execute_script(worker)  # the parts' MD5 is computed off the page's thread
    assert remembered_entry(browser, path.name) is None  # forgotten once sent


def test_a_reload_mid_upload_resumes_with_the_missing_parts_only(
    browser: webdriver.Chrome,
    pages: dict[str, str],
    pipeline: Pipeline,
    store: ObjectStore,
    tmp_path: Path,
    screenshots: Path,
) -> None:
    """The resume registers the remembered body again with the remembered Idempotency-Key (the same
    upload, its links signed afresh): nothing kept in localStorage is a URL, before the reload,
    after it, or at the end."""
    path = tmp_path / "page-resume.fa"
    records = fasta(path, 21)
    count = multipart_plan(path.stat().st_size, PART_BYTES).count
    open_page(browser, pages["multipart"], pipeline.api_key)
    record_the_page(browser)
    throttle(browser, 2 * MIB)
    send_files(browser, path)
    entry = wait_for_entry(browser, path.name)
    assert entry["body"] == {"filename": path.name, "size": path.stat().st_size, "mode": "store"}
    first: list[dict[str, Any]] = browser.execute_script("return window.fetched;")
    assert [c["idempotencyKey"] for c in first if (c["method"], c["path"]) == ("POST", "/uploads")] == [
        entry["idempotencyKey"]
    ]
    ticket = replayed_ticket(pages["multipart"], pipeline.api_key, entry)
    bucket, key, store_upload = ticket["bucket"], ticket["key"], ticket["multipart"]["upload_id"]
    poll_until(lambda: len(store.parts(bucket, key, store_upload)) >= 1, timeout=90, interval=0.2, what="a part stored")
    written_before: list[str] = browser.execute_script("return window.stored;")
    browser.refresh()  # mid-upload: the parts in flight are lost
    throttle(browser, None)
    time.sleep(1)
    stored_before = len(store.parts(bucket, key, store_upload))
    assert 1 <= stored_before < count, (stored_before, count)
    # nothing to forge: the entry holds no URL (no parts_url, complete_url, abort_url, list_parts_url)
    assert remembered_entry(browser, path.name) == entry
    no_url_in_local_storage(browser)

    open_page(browser, pages["multipart"], pipeline.api_key)
    record_the_page(browser)
    send_files(browser, path)
    WebDriverWait(browser, 30, poll_frequency=0.2).until(
        lambda d: f"{stored_before} of {count} parts already stored" in d.find_element(By.ID, "status").text
    )
    shown = outcome(browser, path.name)
    shoot(browser, screenshots, "resumed-done")
    assert shown.startswith(f"Done: {records} records"), shown
    sent = part_puts(browser)
    assert len(sent) == count - stored_before, sent  # only the missing parts
    assert transfer(browser, path.name).get_attribute("data-id") == entry["uploadId"]  # the same upload
    fetched: list[dict[str, Any]] = browser.execute_script("return window.fetched;")
    registrations = [c for c in fetched if (c["method"], c["path"]) == ("POST", "/uploads")]
    assert len(registrations) == 1, registrations  # registered again, with the same key and body
    assert registrations[0]["idempotencyKey"] == entry["idempotencyKey"]
    assert json.loads(registrations[0]["body"]) == entry["body"]
    asked = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname)"
        ".filter((p) => p.endsWith('/parts'));"
    )
    assert asked and set(asked) == {f"/uploads/{entry['uploadId']}/parts"}, asked
    assert store.multipart_uploads(bucket, key) == []
    assert remembered_entry(browser, path.name) is None
    no_url_in_local_storage(browser)
    written: list[str] = written_before + browser.execute_script("return window.stored;")
    assert written and not [w for w in written if "http" in w.lower()], written


def test_a_remembered_entry_resumes_only_its_own_upload(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline
) -> None:
    """The page's own resume, in the page, on entries that must not resume: a key the intake does
    not know (the upload that request registers is deleted at once), a key used with another body
    (409), an ended upload's key, and entries of another shape (a URL member, another size, a key
    that is no UUID) are each dropped, and the file would be registered anew."""
    page = pages["put"]
    open_page(browser, page, pipeline.api_key)
    auth = {"Authorization": f"Bearer {pipeline.api_key}"}
    body = {"filename": "page-entry.fa", "size": 4, "mode": "store"}

    def registered(key: str, sent: dict[str, Any]) -> str:
        response = httpx.post(f"{page}/uploads", json=sent, headers={**auth, "Idempotency-Key": key}, timeout=30)
        assert response.status_code == 201, response.text
        upload_id: str = response.json()["id"]
        return upload_id

    reused, ended = str(uuid.uuid4()), str(uuid.uuid4())
    reused_id = registered(reused, {**body, "labels": {"run": "1"}})
    ended_id = registered(ended, body)
    assert httpx.delete(f"{page}/uploads/{ended_id}", headers=auth, timeout=30).status_code == 202
    unknown = {"idempotencyKey": str(uuid.uuid4()), "body": body, "uploadId": str(uuid.uuid4())}
    entries = {
        "unknown": unknown,
        "reused": {"idempotencyKey": reused, "body": body, "uploadId": reused_id},
        "ended": {"idempotencyKey": ended, "body": body, "uploadId": ended_id},
    }
    checked: dict[str, Any] = browser.execute_async_script(
        """
        const [entries, body, done] = arguments;
        const file = new File(["ACGT"], body.filename, { lastModified: 1 });
        const name = rememberedName(file);
        const fetched = [];
        const realFetch = window.fetch;
        window.fetch = (input, init = {}) => realFetch(input, init).then((r) => {
          const path = new URL(input, location.href).pathname;
          fetched.push({ method: init.method || "GET", path, status: r.status });
          return r;
        });
        const run = async () => {
          const outcomes = {};
          for (const [label, entry] of Object.entries(entries)) {
            localStorage.setItem(name, JSON.stringify(entry));
            const saved = remembered(file);
            const resumed = saved ? await resume(file, saved) : "invalid";
            outcomes[label] = { resumed, kept: localStorage.getItem(name) };
          }
          const malformed = {
            url: { ...entries.unknown, complete_url: "https://attacker.example/complete" },
            size: { ...entries.unknown, body: { ...body, size: 5 } },
            key: { ...entries.unknown, idempotencyKey: "not a uuid" },
            old: { ticket: { id: entries.unknown.uploadId } },
          };
          for (const [label, entry] of Object.entries(malformed)) {
            localStorage.setItem(name, JSON.stringify(entry));
            outcomes[label] = { valid: remembered(file) !== null, kept: localStorage.getItem(name) };
          }
          window.fetch = realFetch;
          return { outcomes, fetched };
        };
        run().then(done, (err) => done({ error: String(err) }));
        """,
        entries,
        body,
    )
    assert "error" not in checked, checked
    outcomes = checked["outcomes"]
    for label in ("unknown", "reused", "ended"):
        assert outcomes[label] == {"resumed": None, "kept": None}, (label, outcomes[label])
    for label in ("url", "size", "key", "old"):
        assert outcomes[label] == {"valid": False, "kept": None}, (label, outcomes[label])
    answers = [(c["method"], c["path"], c["status"]) for c in checked["fetched"]]
    made = [c for c in answers if c[:2] == ("POST", "/uploads") and c[2] == 201]
    assert len(made) == 1, answers  # the unknown key registered one upload, and it was deleted
    assert ("POST", "/uploads", 409) in answers and ("POST", "/uploads", 200) in answers, answers
    assert ("GET", f"/uploads/{ended_id}", 200) in answers, answers
    deletes = [c for c in answers if c[0] == "DELETE"]
    assert len(deletes) == 1 and deletes[0][2] == 202, answers
    assert pipeline.status(deletes[0][1].rsplit("/", 1)[1])["state"] == "deleted"
    assert pipeline.status(reused_id)["state"] == "awaiting_upload"  # another body's upload: untouched


def test_a_lost_connection_ends_nothing_and_the_same_file_resumes(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline, store: ObjectStore, tmp_path: Path
) -> None:
    """Offline mid-upload: the parts fail, and so does the delete that would end the upload, so the
    ticket is kept; back online, the same file chosen again continues the same upload."""
    path = tmp_path / "page-offline.fa"
    records = fasta(path, 26)
    count = multipart_plan(path.stat().st_size, PART_BYTES).count
    open_page(browser, pages["multipart"], pipeline.api_key)
    # 1 MiB/s: after the first parts are stored, the rest take ten seconds more, time enough to
    # see them stored and go offline on a busy machine.
    throttle(browser, MIB)
    send_files(browser, path)
    entry = wait_for_entry(browser, path.name)
    ticket = replayed_ticket(pages["multipart"], pipeline.api_key, entry)
    bucket, key, store_upload = ticket["bucket"], ticket["key"], ticket["multipart"]["upload_id"]
    poll_until(lambda: len(store.parts(bucket, key, store_upload)) >= 1, timeout=90, interval=0.2, what="a part stored")
    browser.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    shown = outcome(browser, path.name, timeout=90)
    # Offline while parts were in flight: they fail and so does the delete; or, when the last part
    # had gone as the connection did (the page's view of a throttled upload runs ahead of the
    # store's), the completion fails. Either way the upload is not ended and stays remembered.
    assert "The intake could not be reached: choose the file again to resume." in shown or shown.startswith(
        "Not finished: completing the upload failed"
    ), shown
    assert remembered_entry(browser, path.name) == entry
    throttle(browser, None)
    time.sleep(1)  # a part whose body had gone before the connection did may still be stored
    assert len(store.parts(bucket, key, store_upload)) >= 1
    assert pipeline.status(ticket["id"])["state"] == "awaiting_upload"

    send_files(browser, path)
    announced = re.compile(rf"(\d+) of {count} parts already stored")
    WebDriverWait(browser, 30, poll_frequency=0.2).until(
        lambda d: announced.search(d.find_element(By.ID, "status").text)
    )
    shown = outcome(browser, path.name)
    assert shown.startswith(f"Done: {records} records"), shown
    assert transfer(browser, path.name).get_attribute("data-id") == ticket["id"]
    assert store.multipart_uploads(bucket, key) == []


def test_the_same_file_sent_twice_at_once_is_never_ended_by_the_slower_one(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline, store: ObjectStore, tmp_path: Path
) -> None:
    """Chosen again while it is still sending, a file's second transfer goes on with the same upload;
    when one of the two completes it, the other finds the upload taking no more parts and stops
    there: it never deletes an upload that may be complete."""
    path = tmp_path / "page-twice.fa"
    records = fasta(path, 26)
    open_page(browser, pages["multipart"], pipeline.api_key)
    throttle(browser, 4 * MIB)
    send_files(browser, path)
    entry = wait_for_entry(browser, path.name)
    ticket = replayed_ticket(pages["multipart"], pipeline.api_key, entry)
    poll_until(
        lambda: len(store.parts(ticket["bucket"], ticket["key"], ticket["multipart"]["upload_id"])) >= 1,
        timeout=90,
        interval=0.2,
        what="a part stored",
    )
    send_files(browser, path)
    items = f'li.transfer[data-file="{path.name}"]'
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, items)) == 2)
    throttle(browser, None)

    def both_ended(d: webdriver.Chrome) -> list[str] | None:
        found = d.find_elements(By.CSS_SELECTOR, items)
        shown = [item.find_element(By.CLASS_NAME, "outcome").text.strip() for item in found]
        return shown if all(shown) else None

    shown = WebDriverWait(browser, 240, poll_frequency=0.5).until(both_ended)
    assert any(line.startswith(f"Done: {records} records") for line in shown), shown
    assert not any("was ended" in line or "deleted" in line for line in shown), shown
    assert {item.get_attribute("data-id") for item in browser.find_elements(By.CSS_SELECTOR, items)} == {ticket["id"]}
    assert pipeline.status(ticket["id"])["state"] == "done"
    assert store.multipart_uploads(ticket["bucket"], ticket["key"]) == []


def test_a_failed_completion_keeps_the_upload_and_the_same_file_completes_it(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline, store: ObjectStore, tmp_path: Path
) -> None:
    """Every part sent but the completion refused (its URL blocked: the store may have completed it
    and the answer been lost): the page ends nothing; chosen again, the file completes, no part sent."""
    path = tmp_path / "page-completion.fa"
    records = fasta(path, 12)
    count = multipart_plan(path.stat().st_size, PART_BYTES).count
    open_page(browser, pages["multipart"], pipeline.api_key)
    throttle(browser, 4 * MIB)  # the parts take seconds: time to block the completion once its URL is known
    send_files(browser, path)
    entry = wait_for_entry(browser, path.name)
    ticket = replayed_ticket(pages["multipart"], pipeline.api_key, entry)
    # ?uploadId=…&X-Amz-Algorithm=… (completion) but not ?uploadId=…&partNumber=… (parts)
    upload_param, signature_param = ticket["multipart"]["complete_url"].split("?", 1)[1].split("&")[:2]
    completion = f"*?{upload_param}&{signature_param.split('=')[0]}=*"
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [completion]})
    throttle(browser, None)
    shown = outcome(browser, path.name, timeout=90)
    assert shown.startswith("Not finished: completing the upload failed"), shown
    assert remembered_entry(browser, path.name) == entry
    assert pipeline.status(ticket["id"])["state"] == "awaiting_upload"
    assert len(store.parts(ticket["bucket"], ticket["key"], ticket["multipart"]["upload_id"])) == count
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})

    sent_before = len(part_puts(browser))
    send_files(browser, path)
    shown = outcome(browser, path.name)
    assert shown.startswith(f"Done: {records} records"), shown
    assert len(part_puts(browser)) == sent_before  # every part was kept
    assert transfer(browser, path.name).get_attribute("data-id") == ticket["id"]


def test_cancel_leaves_no_multipart_upload(
    browser: webdriver.Chrome,
    pages: dict[str, str],
    pipeline: Pipeline,
    store: ObjectStore,
    tmp_path: Path,
    screenshots: Path,
) -> None:
    path = tmp_path / "page-cancel.fa"
    fasta(path, 16)
    open_page(browser, pages["multipart"], pipeline.api_key)
    throttle(browser, MIB // 2)
    send_files(browser, path)
    ticket = replayed_ticket(pages["multipart"], pipeline.api_key, wait_for_entry(browser, path.name))
    bucket, key = ticket["bucket"], ticket["key"]
    assert store.multipart_uploads(bucket, key) != []
    no_serious_violations(browser, "busy")
    shoot(browser, screenshots, "busy")
    transfer(browser, path.name).find_element(By.CLASS_NAME, "cancel").click()
    shown = outcome(browser, path.name, timeout=60)
    assert shown.startswith("Cancelled: the upload was ended"), shown
    poll_until(lambda: store.multipart_uploads(bucket, key) == [], timeout=60, what="the multipart upload aborted")
    assert pipeline.status(ticket["id"])["state"] == "deleted"
    assert remembered_entry(browser, path.name) is None


def test_a_part_that_keeps_failing_ends_the_upload(
    browser: webdriver.Chrome,
    pages: dict[str, str],
    pipeline: Pipeline,
    store: ObjectStore,
    tmp_path: Path,
    screenshots: Path,
) -> None:
    path = tmp_path / "page-failing-part.fa"
    fasta(path, 12)
    open_page(browser, pages["multipart"], pipeline.api_key)
    blocked = ["*?partNumber=2&*", "*&partNumber=2&*", "*&partNumber=2"]
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": blocked})
    send_files(browser, path)
    ticket = replayed_ticket(pages["multipart"], pipeline.api_key, wait_for_entry(browser, path.name))
    shown = outcome(browser, path.name, timeout=90)
    shoot(browser, screenshots, "failing-part")
    assert shown.startswith("Failed: part 2 of 3 failed after 4 attempts"), shown
    assert shown.endswith("The upload was ended; nothing is kept."), shown
    assert browser.find_element(By.ID, "alert").text.startswith(f"{path.name}: Failed: part 2")
    poll_until(
        lambda: store.multipart_uploads(ticket["bucket"], ticket["key"]) == [],
        timeout=60,
        what="the multipart upload aborted",
    )
    assert pipeline.status(ticket["id"])["state"] == "deleted"


def test_an_invalid_file_shows_its_line_and_column_and_can_be_retried(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline, tmp_path: Path, screenshots: Path
) -> None:
    path = tmp_path / "page-bad.fa"
    path.write_text(">ok\nACGT\n>bad\nACGT\nAC!GT\n")
    open_page(browser, pages["put"], pipeline.api_key)
    send_files(browser, path)
    shown = outcome(browser, path.name)
    shoot(browser, screenshots, "invalid-file")
    assert shown.startswith("Failed: invalid_character at line 5, column 3"), shown
    assert browser.find_element(By.ID, "alert").text == f"{path.name}: {shown}"
    item = transfer(browser, path.name)
    upload_id = str(item.get_attribute("data-id"))
    item.find_element(By.CLASS_NAME, "retry").click()  # POST /uploads/{id}/retry: a new generation
    poll_until(lambda: pipeline.status(upload_id)["generation"] == 2, timeout=60, what="the retry's generation")
    assert pipeline.wait_for(upload_id)["state"] == "failed"  # the same file fails the same way


def test_a_2_gb_file_leaves_the_page_responsive(
    browser: webdriver.Chrome, pages: dict[str, str], pipeline: Pipeline, store: ObjectStore, tmp_path: Path
) -> None:
    """A 2 GiB file (sparse: it costs no disk) is registered, hashed and sent part by part while the
    page's thread keeps answering and its heap stays small (the file is never read whole), then
    cancelled, leaving nothing."""
    path = tmp_path / "page-2gb.fa"
    with path.open("wb") as out:
        out.truncate(2 * 1024**3)
    open_page(browser, pages["multipart"], pipeline.api_key)
    browser.execute_script(
        "window.maxLag = 0; let last = performance.now();"
        "setInterval(() => { const now = performance.now(); window.maxLag = Math.max(window.maxLag, now - last - 50);"
        " last = now; }, 50);"
    )
    throttle(browser, 8 * MIB)
    send_files(browser, path)
    ticket = replayed_ticket(pages["multipart"], pipeline.api_key, wait_for_entry(browser, path.name))
    assert ticket["multipart"]["part_count"] == multipart_plan(path.stat().st_size, PART_BYTES).count
    bucket, key, store_upload = ticket["bucket"], ticket["key"], ticket["multipart"]["upload_id"]
    poll_until(lambda: len(store.parts(bucket, key, store_upload)) >= 3, timeout=90, interval=0.2, what="parts stored")
    lag, heap = browser.execute_script("return [window.maxLag, performance.memory.usedJSHeapSize];")
    assert lag < 250, f"the page's thread was blocked {lag:.0f} ms"
    assert heap < 64 * MIB, f"the page's heap holds {heap} bytes"
    transfer(browser, path.name).find_element(By.CLASS_NAME, "cancel").click()
    assert outcome(browser, path.name, timeout=60).startswith("Cancelled: the upload was ended")
    poll_until(lambda: store.multipart_uploads(bucket, key) == [], timeout=60, what="the multipart upload aborted")
