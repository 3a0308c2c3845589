"""The review page: a real server on a real index, driven over HTTP and in headless Chromium.

The browser tests need Debian's chromium and chromium-driver (CI installs them; see
.ci/run). Without them they are skipped, unless IMGINDEX_REQUIRE_BROWSER=1 (as in CI),
when their absence is a failure.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgindex.report import ReportOptions, build_report
from imgindex.review import static
from imgindex.review.app import create_app, new_token
from imgindex.review.groups import View
from imgindex.review.pictures import Pictures
from imgindex.review.server import address, bind, serving
from imgindex.review.session import Review, action_rows
from imgindex.storage import Index, open_index

from .conftest import default_sigint, encode, picture, run_scan, write

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
HOSTILE = {
    "script": "<script>window.__pwned=1</script>.png",
    "img": '"><img src=x onerror="window.__pwned=2">.png',
    "ansi": "\x1b[31mred\x1b[0m\nline.png",
}


@dataclass
class Served:
    base: str
    token: str
    db: Path
    review: Review

    def url(self, path: str = "/", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {**params, "token": self.token}.items())
        return f"{self.base}{path}?{query}"


@pytest.fixture
def reviewed(tmp_path: Path, tree: Path, corpus: dict[str, Path], index: Index, db_path: Path) -> Path:
    """The report corpus plus near copies under hostile names (and one not UTF-8), and a group
    of byte-identical copies only."""
    base = picture(11, (160, 120))
    write(tree / "88" / "ok" / "plain.jpg", encode(base, "JPEG", quality=92))
    for i, name in enumerate(HOSTILE.values()):
        write(tree / "88" / f"h{i}" / name, encode(base, "JPEG", quality=70 - 10 * i))
    raw = os.fsencode(tree / "88" / "bytes") + b"/caf\xe9-\xff.jpg"
    os.makedirs(os.path.dirname(raw))
    with open(raw, "wb") as f:
        f.write(encode(base.resize((120, 90)), "JPEG", quality=80))
    twin = encode(picture(12, (140, 100)), "PNG")
    write(tree / "99" / "a" / "twin.png", twin)
    write(tree / "99" / "b" / "twin-copy.png", twin)
    run_scan(index, tree)
    return db_path


@pytest.fixture
def served(reviewed: Path, tmp_path: Path) -> Iterator[Served]:
    review = Review(reviewed, ReportOptions(mode="near"))
    token = new_token()
    sock = bind("127.0.0.1", 0)
    with serving(create_app(review, Pictures(tmp_path / "cache"), token), sock):
        yield Served(f"http://127.0.0.1:{address(sock)[1]}", token, reviewed, review)
    review.close()


def fetch(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def post(s: Served, path: str, body: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "X-Imgindex-Token": s.token if token is None else token}
    status, data, _ = fetch(s.base + path, data=json.dumps(body).encode(), headers=headers)
    return status, json.loads(data) if data.startswith(b"{") else data


def near_groups(db: Path) -> list[set[bytes]]:
    with open_index(db, create=False) as index:
        report = build_report(index, ReportOptions(mode="near"))
        return [{g.kept.path, *(d.path for d, _ in g.duplicates)} for g in report.groups() if g.duplicates]


# -- over HTTP ---------------------------------------------------------------------------------


def test_every_request_needs_the_token(served: Served) -> None:
    assert fetch(served.url())[0] == 200
    assert fetch(served.base + "/")[0] == 403
    assert fetch(f"{served.base}/?token=wrong")[0] == 403
    assert fetch(f"{served.base}/assets/review.js")[0] == 403
    group = served.review.current().groups[0].id
    assert fetch(f"{served.base}/picture/{group}/s")[0] == 403
    # A POST needs the token in its header: in the address (as a page elsewhere could put it) is not enough.
    status, _, _ = fetch(served.url("/api/undo"), data=b"{}", headers={"Content-Type": "application/json"})
    assert status == 403
    assert post(served, "/api/decide", {"action": "accept", "group": group}, token="wrong")[0] == 403
    # Another name for this machine (DNS rebinding) is refused whatever the token.
    assert fetch(served.url(), headers={"Host": "evil.example:80"})[0] == 400


def test_odd_query_values_give_a_page_not_an_error(served: Served) -> None:
    for query in ("page=%C2%B2", "max_distance=%D9%A3", "sort=nonsense", "page=99999999999", "q=%00%ff"):
        assert fetch(f"{served.base}/?{query}&token={served.token}")[0] == 200, query


def test_pages_carry_a_strict_content_security_policy(served: Served) -> None:
    status, body, headers = fetch(served.url())
    assert status == 200
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
    assert b"<script>" not in body  # the page's only script is its own file


def test_pictures_only_of_reviewed_images_by_id_made_here(served: Served, reviewed: Path) -> None:
    snap = served.review.current()
    member = snap.groups[0].members[1]
    status, body, headers = fetch(served.url(f"/picture/{member.file_id}/s"))
    assert status == 200 and body[:2] == b"\xff\xd8" and "immutable" in headers["cache-control"]
    with Image.open(io.BytesIO(body)) as im:
        assert max(im.size) <= 192
    with open_index(reviewed, create=False) as index:
        listed = ",".join(map(str, snap.file_ids()))
        alone = index.db.execute(f"SELECT id FROM files WHERE id NOT IN ({listed})").fetchall()
    assert alone  # indexed files that are in no group are not served
    assert fetch(served.url(f"/picture/{alone[0][0]}/s"))[0] == 404
    assert fetch(served.url(f"/picture/{member.file_id}/../../etc/passwd"))[0] == 404
    assert fetch(served.url(f"/picture/{member.file_id}/xl"))[0] == 404
    assert fetch(served.url("/assets/..%2Fgroups.py"))[0] == 404
    # Changed since indexed: not shown as if it were the indexed picture.
    changed = next(m for g in snap.groups for m in g.members if m.sha256 != member.sha256)
    Path(os.fsdecode(changed.path)).write_bytes(encode(picture(99), "JPEG"))
    assert fetch(served.url(f"/picture/{changed.file_id}/m"))[0] == 410


def test_decide_over_http_changes_the_next_report(served: Served, corpus: dict[str, Path]) -> None:
    b, b_meta = bytes(corpus["b"]), bytes(corpus["b_meta"])
    assert any({b, b_meta} <= g for g in near_groups(served.db))
    snap = served.review.current()
    group = next(g for g in snap.groups if {m.path for m in g.members} >= {b, b_meta})
    dup = group.duplicates[0]
    status, answer = post(served, "/api/decide", {"action": "apart", "group": group.id, "image": dup.file_id})
    assert status == 200 and answer["summary"].startswith("not a duplicate")
    assert not any({b, b_meta} <= g for g in near_groups(served.db))
    # The group is gone from the review too (its other member was decided apart).
    assert served.review.current().group_by_id(group.id) is None
    assert fetch(served.url(f"/group/{group.id}"))[0] == 200  # redirected to the overview
    status, answer = post(served, "/api/undo", {})
    assert status == 200 and any({b, b_meta} <= g for g in near_groups(served.db))
    assert post(served, "/api/decide", {"action": "nonsense", "group": group.id})[0] == 400
    assert post(served, "/api/decide", {"action": "accept", "group": 10**9})[0] == 409


def test_urls_are_shown_as_text_and_only_web_addresses_are_links(served: Served, corpus: dict[str, Path]) -> None:
    with open_index(served.db) as other:
        for key, url in (("b", "javascript:alert(document.cookie)"), ("b_meta", "https://example.org/a?b=<i>&c")):
            other.db.execute("UPDATE files SET url = ? WHERE name = ?", (url, corpus[key].name.encode()))
    group = next(g for g in served.review.current().groups if any(m.url for m in g.members))
    status, body, _ = fetch(served.url(f"/group/{group.id}"))
    page = body.decode()
    assert status == 200
    assert "javascript:alert(document.cookie)" in page and 'href="javascript:' not in page
    assert 'href="https://example.org/a?b=&lt;i&gt;&amp;c"' in page and "<i>" not in page


def test_a_scan_meanwhile_shows_on_the_next_page(served: Served, tree: Path) -> None:
    before = len(served.review.current())
    pair = encode(picture(21, (150, 110)), "PNG")
    write(tree / "new" / "one.png", pair)
    write(tree / "new" / "two.png", pair)
    with open_index(served.db) as other:  # another connection: as a scan in another process writes
        run_scan(other, tree)
    status, body, _ = fetch(served.url())
    assert status == 200 and len(served.review.current()) == before + 1
    assert str(tree / "new").encode() in body


def test_bulk_counts_first_then_decides_and_undoes_as_one(served: Served) -> None:
    view = "?identical=1"
    identical = [g for g in served.review.current().groups if g.identical]
    assert identical and len(identical) < len(served.review.current().groups)
    status, preview = post(served, "/api/bulk", {"action": "accept", "view": view})
    images = sum(g.count for g in identical)
    assert status == 200 and preview == {"groups": len(identical), "images": images, "batch": None}
    assert served.review.current().stats().decided == 0  # counting decided nothing
    status, done = post(served, "/api/bulk", {"action": "accept", "view": view, "commit": True})
    assert status == 200 and done["batch"] is not None
    snap = served.review.current()
    assert {g.id for g in snap.groups if g.decided} == {g.id for g in identical}
    assert {g.id for g in snap.view(View(undecided=True))} == {g.id for g in snap.groups if not g.identical}
    assert post(served, "/api/undo", {"batch": done["batch"]})[0] == 200
    assert served.review.current().stats().decided == 0
    assert post(served, "/api/bulk", {"action": "keep", "view": ""})[0] == 400
    assert post(served, "/api/bulk", {"action": "accept", "view": "sort=nonsense&page=%C2%B2"})[0] == 200


def test_static_page_is_self_contained_and_escaped(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "share" / "review.html"
    out.parent.mkdir()
    summary = static.write_static(served.review.current(), out, Pictures(tmp_path / "cache"))
    page = out.read_text()
    assert summary.folder is None and summary.groups == len(served.review.current().groups)
    assert page.count("data:image/jpeg;base64,") == summary.images
    assert "<script" not in page and "onerror=" not in page.replace("onerror=&#34;", "")
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page
    assert "\\x1b[31mred\\x1b[0m\\x0aline.png" in page and "caf\\xe9-\\xff.jpg" in page


def test_static_page_puts_many_thumbnails_beside_it(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(static, "INLINE_LIMIT", 3)
    out = tmp_path / "review.html"
    summary = static.write_static(served.review.current(), out, Pictures(tmp_path / "cache"))
    assert summary.folder == tmp_path / "review_files"
    names = re.findall(r'src="review_files/([0-9a-f]{64}\.jpg)"', out.read_text())
    assert len(names) == summary.images and all((summary.folder / n).is_file() for n in names)
    assert "data:image" not in out.read_text()


def test_review_command_serves_until_interrupted(reviewed: Path, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "imgindex", "review", "--no-browser"),
            *("--db", str(reviewed), "--cache-dir", str(tmp_path / "cache")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", line)
        assert url, line
        status, body, _ = fetch(url.group())
        assert status == 200 and b"groups decided" in body
        assert fetch(url.group().split("?")[0])[0] == 403
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(60)
    assert code == 130  # stopped by Ctrl-C, as every command is
    assert process.stderr is not None and "Traceback" not in process.stderr.read()


# -- in a browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        if os.environ.get("IMGINDEX_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium and chromium-driver are needed (apt-get install chromium chromium-driver)")
        pytest.skip("no chromium here (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Any, seconds: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(condition)


def loaded(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    def images_done(d: Any) -> Any:
        found = d.find_elements(By.CSS_SELECTOR, selector)
        done = d.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0])).every(i => i.complete)", selector
        )
        return found if found and done else False

    return wait_for(driver, images_done)


def test_overview_lists_groups_kept_marked_names_inert(browser: Any, served: Served, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(served.url())
    groups = browser.find_elements(By.CSS_SELECTOR, "li.group")
    assert len(groups) == len(served.review.current().groups) >= 3
    for g in groups:
        strip = g.find_elements(By.CSS_SELECTOR, ".strip img")
        assert "kept" in strip[0].get_attribute("class") and all("dup" in i.get_attribute("class") for i in strip[1:])
    images = loaded(browser, ".strip img")
    assert all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    assert browser.execute_script("return window.__pwned") is None
    browser.save_screenshot(str(tmp_path / "overview.png"))
    # The hostile names, as text, on the page of their group.
    browser.get(served.url("/", q="pwned"))
    browser.find_element(By.CSS_SELECTOR, "li.group a.open").click()
    paths = [p.text for p in browser.find_elements(By.CSS_SELECTOR, ".member .path")]
    assert any(p.endswith("<script>window.__pwned=1</script>.png") for p in paths)
    assert any(p.endswith('"><img src=x onerror="window.__pwned=2">.png') for p in paths)
    assert any(p.endswith("\\x1b[31mred\\x1b[0m\\x0aline.png") for p in paths)
    assert browser.execute_script("return window.__pwned") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "main img[src='x']")


def test_not_a_duplicate_in_the_browser_changes_the_next_report(
    browser: Any, served: Served, corpus: dict[str, Path], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    b, b_meta = bytes(corpus["b"]), bytes(corpus["b_meta"])
    group = next(g for g in served.review.current().groups if {m.path for m in g.members} >= {b, b_meta})
    browser.get(served.url(f"/group/{group.id}"))
    kept = browser.find_element(By.CSS_SELECTOR, "article.member.kept")
    assert kept.find_element(By.TAG_NAME, "h2").text.startswith("kept")
    loaded(browser, "img.view")
    # Compare mode: the difference of the two is a picture made by the server.
    browser.find_element(By.CSS_SELECTOR, "article.member:not(.kept) .compare-with").click()
    browser.find_element(By.CSS_SELECTOR, "[data-compare='difference']").click()
    wait_for(browser, lambda d: d.execute_script("return document.querySelector('.layer.top').naturalWidth > 0"))
    browser.save_screenshot(str(tmp_path / "group.png"))
    browser.find_element(By.CSS_SELECTOR, "article.member:not(.kept) .decide[data-action='apart']").click()
    wait_for(browser, lambda d: not any({b, b_meta} <= g for g in near_groups(served.db)))
    wait_for(browser, lambda d: d.execute_script("return document.body.dataset.page") == "overview")
    # The undo button in the bar brings it back.
    browser.find_element(By.CSS_SELECTOR, "button.undo").click()
    wait_for(browser, lambda d: any({b, b_meta} <= g for g in near_groups(served.db)))


def test_bulk_accept_in_the_browser_counts_first(browser: Any, served: Served) -> None:
    from selenium.webdriver.common.by import By

    identical = sum(g.identical for g in served.review.current().groups)
    browser.get(served.url("/", identical="1"))
    browser.find_element(By.CSS_SELECTOR, ".bulk-action[data-action='accept']").click()
    text = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".bulk-text").text)
    assert f"accept as duplicates {identical} groups" in text
    assert served.review.current().stats().decided == 0
    browser.find_element(By.CSS_SELECTOR, ".bulk-do").click()
    wait_for(browser, lambda d: served.review.current().stats().decided == identical)
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "li.group.decided")) == identical)
    # Keys: j selects the first group, Enter opens it.
    browser.get(served.url())
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("j")
    body.send_keys("\ue007")  # Enter
    wait_for(browser, lambda d: d.execute_script("return document.body.dataset.page") == "group")


def test_views_filter_and_order_as_their_rules_say(reviewed: Path, tree: Path) -> None:
    review = Review(reviewed, ReportOptions(mode="near"))
    try:
        snap = review.current()
        every = snap.groups
        assert len(every) == len(snap) >= 4

        def ids(view: View) -> list[int]:
            return [g.id for g in snap.view(view)]

        by_bytes = sorted(every, key=lambda g: (-g.bytes_freed, -g.count))
        assert ids(View()) == [g.id for g in by_bytes]
        assert ids(View(sort="count", ascending=True)) == [
            g.id for g in sorted(every, key=lambda g: (g.count, g.bytes_freed))
        ]
        assert ids(View(sort="path")) == [g.id for g in sorted(every, key=lambda g: g.kept.path)]
        assert set(ids(View(identical=True))) == {g.id for g in every if g.identical}
        assert set(ids(View(max_distance=0))) == {g.id for g in every if g.max_distance == 0}
        assert set(ids(View(format="png"))) == {g.id for g in every if any(m.format == "PNG" for m in g.members)}
        folder = str(tree / "88")
        assert set(ids(View(folder=folder))) == {
            g.id for g in every if any(m.path.startswith(folder.encode()) for m in g.members)
        }
        assert set(ids(View(text="PWNED"))) == {g.id for g in every if any(b"pwned" in m.path for m in g.members)}
        assert ids(View(text="PWNED"))  # the hostile names' group is found by their text
        for position in range(len(snap)):
            assert snap.accept_rows([position]) == action_rows("accept", snap.group(position))[1]
        big = max(every, key=lambda g: g.count)
        part = snap.group_by_id(big.id, 2)
        assert part is not None and part.members == big.members[:2] and not part.complete
        assert (part.count, part.bytes_freed, part.identical) == (big.count, big.bytes_freed, big.identical)
        pages = snap.page(View(page=99))
        assert pages.page == pages.pages == 1 and len(pages.groups) == len(every)
        assert all(snap.member(m.file_id) == m for g in every for m in g.members)
        assert snap.member(10**9) is None and snap.group_by_id(10**9) is None
    finally:
        review.close()


def test_exact_review_offers_no_split_of_identical_bytes(reviewed: Path, tmp_path: Path) -> None:
    review = Review(reviewed, ReportOptions(mode="exact"))
    token = new_token()
    sock = bind("127.0.0.1", 0)
    try:
        with serving(create_app(review, Pictures(tmp_path / "cache"), token), sock):
            base = f"http://127.0.0.1:{address(sock)[1]}"
            groups = review.current().groups
            assert groups and all(g.identical for g in groups)
            status, body, _ = fetch(f"{base}/group/{groups[0].id}?token={token}")
            assert status == 200 and b"exact duplicates" in body
            assert b'data-action="apart"' not in body and b'data-action="apart-group"' not in body
            assert b'data-action="keep"' in body and b'data-action="accept"' in body
    finally:
        review.close()


def test_pictures_do_not_wait_for_a_build_in_progress(reviewed: Path) -> None:
    import threading

    review = Review(reviewed, ReportOptions(mode="near"))
    try:
        built = review.current()
        with review._lock:  # as while the groups are built again after another process's commit
            got: list[object] = []
            reader = threading.Thread(target=lambda: got.append(review.latest()))
            reader.start()
            reader.join(30)
            assert got == [built]
    finally:
        review.close()
