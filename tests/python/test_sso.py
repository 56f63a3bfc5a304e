"""Single sign-on: one password prompt per browser session, shared across clients."""

import pytest

from zarish_testkit import (
    Browser,
    query_of,
    run_code_flow,
    start_authorization,
    verify_access_token,
    verify_id_token,
)

USER = "provider"  # no other module takes this user to demo-spa, so consent is asked here;
# healthcare_provider must use a second factor, so SSO here carries a session with two factors
PLAIN_USER = "clinician"  # password only


@pytest.fixture(scope="module")
def first_sign_in(server):
    """provider signs in once, for demo-web."""
    return run_code_flow(server, "demo-web", USER, "openid profile")


def test_first_request_prompts_for_password(first_sign_in):
    assert first_sign_in.browser.visited.count("POST /login") == 1
    second_factor = {"POST /login/enroll", "POST /login/otp"} & set(first_sign_in.browser.visited)
    assert len(second_factor) == 1, first_sign_in.browser.visited


@pytest.fixture(scope="module")
def second_client(server, first_sign_in):
    """The same browser then authorizes demo-spa (third-party: it shows the consent page)."""
    browser = first_sign_in.browser
    before = len(browser.visited)
    flow = run_code_flow(
        server, "demo-spa", USER, "openid profile", browser=browser, consent="allow"
    )
    return flow, browser.visited[before:]


def test_second_client_needs_no_second_sign_in(second_client):
    _, steps = second_client
    assert "GET /login" not in steps and "POST /login" not in steps, steps
    assert not [s for s in steps if s.startswith(("GET /login/", "POST /login/"))], steps
    assert "GET /consent" in steps and "POST /consent" in steps, steps


def test_second_client_tokens_come_from_the_same_sign_in(server, first_sign_in, second_client):
    second, _ = second_client
    first_id = verify_id_token(server, first_sign_in.token["id_token"], "demo-web")
    second_id = verify_id_token(server, second.token["id_token"], "demo-spa")
    assert second_id["sub"] == first_id["sub"]
    assert second_id["auth_time"] == first_id["auth_time"]  # the same sign-in
    assert second_id["sid"] == first_id["sid"]


def test_consented_client_gets_code_directly(server, first_sign_in, second_client):
    # After the consent above, demo-spa gets a code at once: no sign-in, no consent page.
    browser = first_sign_in.browser
    _, response, secrets = start_authorization(server, browser, "demo-spa", "openid profile")
    assert response.status_code == 303
    params = query_of(response.headers["Location"])
    assert params["code"]
    assert params["state"] == secrets["state"]


def test_prompt_login_forces_a_new_sign_in(server, first_sign_in):
    browser = first_sign_in.browser
    _, response, _ = start_authorization(
        server, browser, "demo-web", "openid profile", prompt="login"
    )
    assert response.status_code == 200
    assert response.url.startswith(server.url("/login?"))


def test_other_browser_is_not_signed_in(server, browser: Browser):
    _, response, _ = start_authorization(server, browser, "demo-web", "openid profile")
    assert response.status_code == 200
    assert response.url.startswith(server.url("/login?"))


def test_prompt_none_without_session_is_login_required(server, browser: Browser):
    _, response, secrets = start_authorization(
        server, browser, "demo-web", "openid profile", prompt="none"
    )
    assert response.status_code == 303
    params = query_of(response.headers["Location"])
    assert params["error"] == "login_required"
    assert params["state"] == secrets["state"]


def test_sso_tokens_carry_the_same_user(server, first_sign_in):
    browser = first_sign_in.browser
    before = len(browser.visited)
    second = run_code_flow(server, "demo-web", USER, "openid profile", browser=browser)
    assert "POST /login" not in browser.visited[before:]
    a = verify_access_token(server, first_sign_in.token["access_token"])
    b = verify_access_token(server, second.token["access_token"])
    assert a["sub"] == b["sub"]
    assert a["user_type"] == b["user_type"] == server.user(USER)["role"]


def test_max_age_zero_forces_a_new_sign_in(server):
    # OIDC Core §3.1.2.1: "Note that max_age=0 is equivalent to prompt=login."
    flow = run_code_flow(server, "demo-web", PLAIN_USER, "openid profile")
    _, response, _ = start_authorization(
        server, flow.browser, "demo-web", "openid profile", max_age="0"
    )
    assert response.status_code == 200, response.headers.get("Location")
    assert response.url.startswith(server.url("/login?"))
