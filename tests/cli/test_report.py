"""`ami-bridge report --html` (report.py), opened in headless Chromium through Selenium as a
person would see it: every definition drawn, a revoked one coloured and labelled, the state
filter, the manifest links, no console errors and no request leaving the page; the tests an
image passed, its signed provenance and a channel's history; and a catalog of a thousand
definitions narrowed by collapsing subtrees from the keyboard."""

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
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from testing.bridge import run_bridge
from tests.lifecycle.test_channels import change_base
from tests.pipeline.test_provenance import ALIAS, kms_key


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
    assert list(row) == ["base", "snowflake", "tools"]  # the tree: children under the parent
    assert "revoked" in row["snowflake"].text and "leaked key" in row["snowflake"].text
    badge = row["snowflake"].find_element(By.CLASS_NAME, "badge")
    assert badge.value_of_css_property("background-color") == "rgba(207, 34, 46, 1)"  # red
    assert "missing" in row["tools"].text and "found" in row["base"].text
    assert "none defined" in row["base"].text  # the catalog gives base no tests
    assert f"prod: {results['base']['ami_id']}" in row["base"].text  # its channel

    Select(browser.find_element(By.ID, "filter-state")).select_by_value("revoked")
    assert [n for n, r in row.items() if r.is_displayed()] == ["snowflake"]
    assert browser.find_element(By.ID, "shown").text == "1 of 3 shown"
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


def report(repo, env, site: Path) -> Path:
    proc = run_bridge(["report", "--html", str(site), "--repo", str(repo.path)], env)
    assert proc.code == 0, proc.stderr
    return Path(proc.stdout.strip())


def test_the_report_shows_tests_passed_signed_provenance_and_channel_history(
    sandbox_env, repo, packer, tmp_path, browser
):
    kms_key()
    repo.write("tests/smoke.sh", '#!/bin/sh\necho "checking $AMI_BRIDGE_AMI"\n').chmod(0o755)
    data = repo.catalog()
    data["provenance"] = {"key": ALIAS}
    data["definitions"]["base"]["tests"] = [{"name": "smoke", "command": ["tests/smoke.sh"]}]
    repo.set_catalog(data)
    repo.commit("base is tested and signed")
    built = []
    for patch in ("", "patched"):  # two builds of base, each promoted to prod: its history
        if patch:
            change_base(repo, patch)
        proc = run_bridge(["build", "base", "--repo", str(repo.path), "--json"], sandbox_env)
        assert proc.code == 0, proc.stderr
        built.append(json.loads(proc.stdout)["base"])
        promoted = run_bridge(["promote", "base", "prod", "--repo", str(repo.path)], sandbox_env)
        assert promoted.code == 0, promoted.stderr

    browser.get(report(repo, sandbox_env, tmp_path / "site").as_uri())
    base = browser.find_element(By.CSS_SELECTOR, '#definitions tr[data-name="base"]')
    cells = base.find_elements(By.TAG_NAME, "td")
    heads = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#definitions thead th")][1:]
    cell = dict(zip(heads, cells))
    assert cell["Tests passed"].text == "smoke"
    signed = cell["Provenance"].find_element(By.LINK_TEXT, "signed")
    statement = f"images/base/{built[1]['fingerprint']}/{built[1]['build_id']}.intoto.json"
    assert signed.get_attribute("href").endswith(f"?prefix={statement}")
    snowflake = browser.find_element(By.CSS_SELECTOR, '#definitions tr[data-name="snowflake"]')
    assert [td.text for td in snowflake.find_elements(By.TAG_NAME, "td")][6:8] == ["-", "-"]

    channel = cell["Channels (us-east-1)"]
    assert channel.text.startswith(f"prod: {built[1]['ami_id']}")
    summary = channel.find_element(By.TAG_NAME, "summary")
    assert summary.text == "history: 2 versions"
    versions = channel.find_elements(By.CSS_SELECTOR, "details li")
    assert not versions[0].is_displayed()  # folded until asked
    summary.click()
    assert [v.text.split(": ", 1)[1] for v in versions] == [
        f"{built[1]['ami_id']} build {built[1]['build_id']}",  # the newest first
        f"{built[0]['ami_id']} build {built[0]['build_id']}",
    ]
    assert [v.text.split(" ", 1)[0] for v in versions] == ["v2", "v1"]


def a_thousand(repo) -> dict[str, str | None]:
    """The catalog grown to 1,000 definitions: ten roots, each with nine children, each with ten
    children of its own (name -> parent)."""
    child = repo.path.joinpath("snowflake/snowflake.json").read_text()
    root = repo.path.joinpath("base/base.json").read_text()
    parents: dict[str, str | None] = {}
    for r in range(10):
        parents[f"r{r}"] = "base" if r == 0 else None
        for c in range(9):
            parents[f"r{r}-c{c}"] = f"r{r}"
            for g in range(10):
                parents[f"r{r}-c{c}-g{g}"] = f"r{r}-c{c}"
    data = repo.catalog()
    del data["definitions"]["snowflake"]
    for name, parent in parents.items():
        text, was = (child, "snowflake") if parent else (root, "base")
        repo.write(
            f"images/{name}.json", text.replace(f'"ami_name": "{was}"', f'"ami_name": "{name}"')
        )
        data["definitions"][name] = {"template": f"images/{name}.json"}
        if parent:
            data["definitions"][name]["parent"] = parent
    repo.set_catalog(data)
    repo.commit("a thousand definitions")
    return parents


def test_a_thousand_definitions_are_narrowed_by_collapsing_subtrees_from_the_keyboard(
    sandbox_env, repo, tmp_path, browser
):
    parents = a_thousand(repo)
    browser.get(report(repo, sandbox_env, tmp_path / "site").as_uri())

    def shown() -> list[str]:  # the rows and graph nodes a person sees, in one round trip
        return browser.execute_script(
            "return Array.from(document.querySelectorAll('#definitions tbody tr'))"
            ".filter(r => !r.hidden).map(r => r.dataset.name)"
        )

    def drawn() -> set[str]:
        return set(
            browser.execute_script(
                "return Array.from(document.querySelectorAll('svg g.node'))"
                ".filter(g => getComputedStyle(g).display !== 'none')"
                ".map(g => g.querySelector('title').textContent)"
            )
        )

    everything = ["base", *parents]
    assert len(shown()) == 1001 and drawn() == set(everything)
    assert shown()[:3] == ["base", "r0", "r0-c0"]  # each child under its parent
    assert browser.find_element(By.ID, "shown").text == "1001 of 1001 shown"

    def toggle(name: str):
        return browser.find_element(By.CSS_SELECTOR, f'tr[data-name="{name}"] button.toggle')

    assert toggle("r3").get_attribute("aria-label") == "subtree of r3: 99 definitions"
    # Tab from the filter reaches the first toggle: the buttons are in the keyboard order.
    browser.find_element(By.ID, "filter-name").click()
    active = browser.switch_to.active_element
    for _ in range(2):  # past the state filter
        active.send_keys(Keys.TAB)
        active = browser.switch_to.active_element
    assert active.get_attribute("aria-label") == "subtree of base: 100 definitions"

    toggle("r3-c4").send_keys(Keys.ENTER)  # a child's subtree, then its root's
    toggle("r3").send_keys(Keys.SPACE)
    below_r3 = {n for n in parents if n.startswith("r3-")}
    assert toggle("r3").get_attribute("aria-expanded") == "false"
    assert set(shown()) == set(everything) - below_r3
    assert drawn() == set(everything) - below_r3  # the graph folds the same subtree
    assert browser.find_element(By.ID, "shown").text == "902 of 1001 shown"

    toggle("r3").send_keys(Keys.ENTER)  # open again: the child folded inside stays folded
    assert set(shown()) == set(everything) - {f"r3-c4-g{g}" for g in range(10)}

    browser.find_element(By.ID, "filter-name").send_keys("r7-c2")
    assert shown() == ["r7-c2", *(f"r7-c2-g{g}" for g in range(10))]
    dim = browser.execute_script("return document.querySelectorAll('svg g.node.dim').length")
    assert dim == 1001 - 11  # the graph keeps every node, the others dimmed
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_a_broken_definition_is_shown_with_its_error_and_hides_nothing(
    sandbox_env, repo, tmp_path, browser
):
    with_tools(repo)
    data = repo.catalog()
    data["definitions"]["tools"]["only"] = "amazon-ebs.nowhere"  # names no build
    repo.set_catalog(data)
    repo.commit("a definition whose only names no build")
    proc = run_bridge(
        ["report", "--html", str(tmp_path / "site"), "--repo", str(repo.path)], sandbox_env
    )
    assert proc.code == 1 and "Traceback" not in proc.stderr  # said, and written all the same
    assert "tools: The `only` of definition 'tools'" in " ".join(proc.stderr.split())
    browser.get(Path(proc.stdout.strip()).as_uri())
    row = {
        r.get_attribute("data-name"): r
        for r in browser.find_elements(By.CSS_SELECTOR, "#definitions tbody tr")
    }
    assert list(row) == ["base", "snowflake", "tools"]
    assert row["tools"].get_attribute("data-state") == "error"
    assert "names no build of its template" in row["tools"].text
    assert "missing" in row["base"].text and "missing" in row["snowflake"].text
    node = browser.find_element(By.CSS_SELECTOR, "svg g.node.state-error")
    assert node.find_element(By.TAG_NAME, "title").get_attribute("textContent") == "tools"

    graph = run_bridge(["graph", "--status", "--repo", str(repo.path)], sandbox_env)
    assert graph.code == 1 and "names no build" in graph.stderr  # and the graph still printed:
    assert '"base" [label="base\\nbase/base.json\\nmissing"' in graph.stdout
    assert '"tools" [label="tools\\ntools/tools.json\\nerror"' in graph.stdout
