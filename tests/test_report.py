"""`ami-bridge report --html` (report.py), opened in headless Chromium through Selenium as a
person would see it: every definition drawn, a revoked one coloured and labelled, the state
filter, the manifest links, no console errors and no request leaving the page."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from testing.bridge import run_bridge


@pytest.fixture
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, (
        "Chromium and its driver are not on PATH: `make setup` installs Debian's chromium and "
        "chromium-driver packages."
    )
    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def with_tools(repo) -> None:
    template = json.loads(repo.path.joinpath("snowflake/snowflake.json").read_text())
    repo.write("tools/tools.json", json.dumps(template, indent=2).replace("snowflake", "tools"))
    data = repo.catalog()
    data["definitions"]["tools"] = {"template": "tools/tools.json", "parent": "base"}
    repo.set_catalog(data)
    repo.commit("a child not built yet")


def test_the_report_shows_the_catalog_as_it_is(sandbox_env, repo, packer, tmp_path, browser):
    with_tools(repo)
    built = run_bridge(
        ["build", "base", "snowflake", "--repo", str(repo.path), "--json"], sandbox_env
    )
    assert built.code == 0, built.stderr
    results = json.loads(built.stdout)
    revoked = run_bridge(
        ["revoke", "snowflake", "--reason", "leaked key", "--repo", str(repo.path)], sandbox_env
    )
    assert revoked.code == 0, revoked.stderr
    promoted = run_bridge(["promote", "base", "prod", "--repo", str(repo.path)], sandbox_env)
    assert promoted.code == 0, promoted.stderr
    proc = run_bridge(
        ["report", "--html", str(tmp_path / "site"), "--repo", str(repo.path)], sandbox_env
    )
    assert proc.code == 0, proc.stderr
    page = Path(proc.stdout.strip())
    assert page == tmp_path / "site" / "index.html"

    browser.get(page.as_uri())
    titles = {
        t.get_attribute("textContent")
        for t in browser.find_elements(By.CSS_SELECTOR, "svg g.node title")
    }
    assert titles == {"base", "snowflake", "tools"}  # every definition drawn
    node = browser.find_element(By.CSS_SELECTOR, "svg g.node.state-revoked")
    assert node.find_element(By.TAG_NAME, "title").get_attribute("textContent") == "snowflake"
    assert "REVOKED: leaked key" in node.text
    row = {
        r.get_attribute("data-name"): r
        for r in browser.find_elements(By.CSS_SELECTOR, "#definitions tbody tr")
    }
    assert set(row) == {"base", "snowflake", "tools"}
    assert "revoked" in row["snowflake"].text and "leaked key" in row["snowflake"].text
    badge = row["snowflake"].find_element(By.CLASS_NAME, "badge")
    assert badge.value_of_css_property("background-color") == "rgba(207, 34, 46, 1)"  # red
    assert "missing" in row["tools"].text and "found" in row["base"].text
    assert f"prod: {results['base']['ami_id']}" in row["base"].text  # its channel

    Select(browser.find_element(By.ID, "filter-state")).select_by_value("revoked")
    assert [n for n, r in row.items() if r.is_displayed()] == ["snowflake"]
    assert browser.find_element(By.ID, "shown").text == "1 shown"
    Select(browser.find_element(By.ID, "filter-state")).select_by_value("")
    browser.find_element(By.ID, "filter-name").send_keys("too")
    assert [n for n, r in row.items() if r.is_displayed()] == ["tools"]
    browser.find_element(By.ID, "filter-name").clear()
    browser.find_element(By.ID, "filter-name").send_keys(" ")  # the filter sees the input

    link = row["base"].find_element(By.LINK_TEXT, "manifest")
    uri = results["base"]["manifest_uri"]
    bucket, key = uri[5:].split("/", 1)
    assert link.get_attribute("href") == (
        f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={key}"
    )

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    requested = [
        json.loads(e["message"])["message"]["params"]["request"]["url"]
        for e in browser.get_log("performance")
        if json.loads(e["message"])["message"]["method"] == "Network.requestWillBeSent"
    ]
    assert requested and all(u.startswith(("file:", "data:")) for u in requested), requested

    shot = os.environ.get("AMI_BRIDGE_REPORT_SCREENSHOT")
    if shot:  # the README's picture, taken by this test
        browser.save_screenshot(shot)
