"""A real browser signs in with a second factor: Debian's headless Chromium, driven by Selenium
through Debian's chromedriver, types into the server's own forms (password, TOTP set-up with a
pyotp code, backup codes, Continue) and ends at demo-web's redirect URI with a code; then a second
sign-in, in a new browser profile, gives a code on the second-factor page.

Chromium runs headless, without a sandbox (we are root), with a fresh profile and with background
networking off: it only ever talks to the test server on 127.0.0.1. Nothing listens at the
client's redirect URI (http://localhost:3000/callback), so the browser shows its error page
there; the test reads the URL, not the page. Assertions are on page text and URLs only.

scripts/test.sh installs the packages chromium and chromium-driver when they are missing.
"""

from __future__ import annotations

import contextlib
import os
import re
from urllib.parse import urlsplit

import pyotp
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from zarish_testkit import (
    Factor,
    new_code_verifier,
    new_nonce,
    oauth_session,
    query_of,
    verify_access_token,
    verify_id_token,
)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",
]
STEP_TIMEOUT_S = 10  # each page and each wait; the server answers in milliseconds
CLIENT = "demo-web"
USER = "provider"  # healthcare_provider: must use a second factor
SCOPE = "openid profile"
CALLBACK = "http://localhost:3000/callback?"
KEY_IN_TEXT = re.compile(r"Key:\s*([A-Z2-7]{32})\b")
BACKUP_CODE_IN_TEXT = re.compile(r"\b[a-z2-7]{5}-[a-z2-7]{5}\b")


def require_chromium():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        message = (
            f"{', '.join(missing)} not installed: scripts/test.sh installs Debian's "
            "chromium and chromium-driver"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def chromium(profile_dir, log_path):
    """Headless Chromium with a fresh profile; always quit, even when a step fails."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    # Both paths given: Selenium Manager (which would look for drivers online) is never run.
    service = Service(executable_path=CHROMEDRIVER, log_output=str(log_path))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(STEP_TIMEOUT_S)
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, what):
    try:
        return WebDriverWait(driver, STEP_TIMEOUT_S, poll_frequency=0.1).until(condition)
    except TimeoutException:
        raise AssertionError(
            f"waited {STEP_TIMEOUT_S}s for {what}; at {driver.current_url}:\n{page_text(driver)}"
        ) from None


def page_text(driver) -> str:
    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except Exception:  # an error page without a body, say
        return ""


def at_path(server, path):
    def check(driver):
        url = urlsplit(driver.current_url)
        return f"{url.scheme}://{url.netloc}" == server.issuer and url.path == path

    return check


def at_callback(driver):
    return driver.current_url.startswith(CALLBACK)


def authorization_url(server):
    oauth = oauth_session(server, CLIENT, scope=SCOPE)
    verifier = new_code_verifier()
    url, state = oauth.create_authorization_url(
        server.url("/authorize"), code_verifier=verifier, nonce=new_nonce()
    )
    return oauth, url, state, verifier


def type_into(driver, element_id, text):
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def submit(driver):
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def sign_in_with_password(driver, server, url):
    driver.get(url)
    wait_for(driver, at_path(server, "/login"), "the sign-in page")
    assert "Sign in" in page_text(driver)
    type_into(driver, "username", USER)
    type_into(driver, "password", server.user(USER)["password"])
    submit(driver)


def finish_at_client(driver, server, oauth, state, verifier):
    wait_for(driver, at_callback, "the redirect to demo-web")
    callback = driver.current_url
    params = query_of(callback)
    assert params["code"]
    assert params["state"] == state
    assert params["iss"] == server.issuer
    token = oauth.fetch_token(
        server.url("/token"), authorization_response=callback, state=state, code_verifier=verifier
    )
    for claims in (
        verify_access_token(server, token["access_token"]),
        verify_id_token(server, token["id_token"], CLIENT),
    ):
        assert claims["amr"] == ["pwd", "otp"]
        assert claims["acr"] == "urn:zarish:acr:mfa"
    return callback


@pytest.fixture(scope="module")
def browser_server(fresh_server):
    """A server of its own, so that provider has no factor yet when the browser signs in."""
    require_chromium()
    with fresh_server("browser") as server:
        yield server


def test_chromium_enrols_then_signs_in_with_a_code(browser_server, tmp_path):
    server = browser_server

    # First sign-in: password, then set up TOTP from the key on the page.
    oauth, url, state, verifier = authorization_url(server)
    with chromium(tmp_path / "profile-1", tmp_path / "chromedriver-1.log") as driver:
        sign_in_with_password(driver, server, url)
        wait_for(driver, at_path(server, "/login/enroll"), "the enrolment page")
        text = page_text(driver)
        assert "Set up two-step sign-in" in text
        key = KEY_IN_TEXT.search(text)
        assert key, text
        link = driver.find_element(By.PARTIAL_LINK_TEXT, "authenticator app")
        uri = link.get_attribute("href")
        assert uri.startswith("otpauth://totp/ZARISH%20SPHERE:provider?")
        assert driver.find_elements(By.CSS_SELECTOR, "svg")  # the QR code
        factor = Factor(secret=key.group(1), uri=uri)
        assert pyotp.parse_uri(uri).secret == factor.secret
        server.factors[USER] = factor

        step = factor.fresh_step()
        code = factor.code_for_step(step)
        type_into(driver, "code", code)
        submit(driver)
        wait_for(
            driver, lambda d: "Your backup codes" in page_text(d), "the backup codes page"
        )
        codes = BACKUP_CODE_IN_TEXT.findall(page_text(driver))
        assert len(codes) == 10 and len(set(codes)) == 10, codes
        factor.accepted(code, step)
        factor.backup_codes = codes

        driver.find_element(By.LINK_TEXT, "Continue").click()
        finish_at_client(driver, server, oauth, state, verifier)

    # Second sign-in, new profile (no session): password, then a code on the second-factor page.
    oauth, url, state, verifier = authorization_url(server)
    with chromium(tmp_path / "profile-2", tmp_path / "chromedriver-2.log") as driver:
        sign_in_with_password(driver, server, url)
        wait_for(driver, at_path(server, "/login/otp"), "the second-factor page")
        text = page_text(driver)
        assert "Verify it is you" in text
        assert not KEY_IN_TEXT.search(text)  # no new key for an enrolled user
        step = factor.fresh_step()
        assert step is not None
        code = factor.code_for_step(step)
        type_into(driver, "code", code)
        submit(driver)
        finish_at_client(driver, server, oauth, state, verifier)
        factor.accepted(code, step)
