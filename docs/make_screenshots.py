"""Make the README's pictures of the review page: the sample dump indexed, the page served, and
headless Chromium (Debian's chromium and chromium-driver) saving the overview and a group.

    python docs/make_screenshots.py [OUT_DIR]   (default: docs/)
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from imgindex.report import ReportOptions
from imgindex.review.app import create_app, new_token
from imgindex.review.pictures import Pictures
from imgindex.review.server import address, bind, serving
from imgindex.review.session import Review
from imgindex.scan import ScanOptions, scan
from imgindex.storage import open_index

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    work = Path(tempfile.mkdtemp())
    dump = work / "crawl" / "dump"
    shutil.copytree(ROOT / "examples" / "sample-dump", dump)
    db = work / "imgindex.db"
    with open_index(db) as index:
        scan(index, [bytes(dump)], ScanOptions(jobs=1))
    review = Review(db, ReportOptions(mode="near"))
    token = new_token()
    sock = bind("127.0.0.1", 0)
    base = f"http://127.0.0.1:{address(sock)[1]}"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    wait = WebDriverWait(driver, 60)
    try:
        with serving(create_app(review, Pictures(work / "cache"), token), sock):
            driver.get(f"{base}/?token={token}")
            wait.until(lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)"))
            driver.save_screenshot(str(out / "review-overview.png"))
            near = max(review.current().groups, key=lambda g: (g.count, g.max_distance))
            driver.get(f"{base}/group/{near.id}?token={token}")
            wait.until(lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)"))
            driver.save_screenshot(str(out / "review-group.png"))
    finally:
        driver.quit()
        review.close()
    print(f"wrote {out / 'review-overview.png'} and {out / 'review-group.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
