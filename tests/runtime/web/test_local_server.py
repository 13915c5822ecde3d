"""The local studio's sign-in stub and HTTP server: Cognito's JSON API, API Gateway's 401 and event shape, the page."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.web import contract
from runtime.web.local.auth import AuthError, LocalUser, SignInStub, load_users
from runtime.web.local.server import AUTH_PATH, make_server

CLIENT = "client-1"
ISSUER = "http://127.0.0.1/local-auth"
TARGET = "AWSCognitoIdentityProviderService."


def _stub(**kwargs: Any) -> SignInStub:
    users = [
        *load_users(None),
        LocalUser(username="carol", password="temporary-1", sub="s-carol", new_password_required=True),
    ]
    return SignInStub(users=users, client_id=CLIENT, issuer=ISSUER, **kwargs)


def _login(stub: SignInStub, user: str, password: str) -> dict[str, Any]:
    body = {
        "AuthFlow": "USER_PASSWORD_AUTH",
        "ClientId": CLIENT,
        "AuthParameters": {"USERNAME": user, "PASSWORD": password},
    }
    return stub.call(TARGET + "InitiateAuth", body)


def test_password_sign_in_returns_cognito_shaped_tokens_with_the_users_sub() -> None:
    stub = _stub()
    result = _login(stub, "alice", "alice-password-1")["AuthenticationResult"]
    assert set(result) == {"IdToken", "AccessToken", "RefreshToken", "ExpiresIn", "TokenType"}
    claims = stub.verify(result["IdToken"])
    assert claims is not None and claims["aud"] == CLIENT and claims["token_use"] == "id"
    assert claims["sub"] == stub.users["alice"].sub != stub.users["bob"].sub
    assert stub.verify(result["AccessToken"]) is None  # the API takes ID tokens (aud = the app client)


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("mallory", "alice-password-1"), ("alice", "")])
def test_bad_credentials_are_not_authorized_with_one_message(user: str, password: str) -> None:
    with pytest.raises(AuthError) as caught:
        _login(_stub(), user, password)
    assert (caught.value.kind, caught.value.message) == ("NotAuthorizedException", "Incorrect username or password.")


def test_refresh_token_renews_and_unknown_refresh_is_refused() -> None:
    stub = _stub()
    refresh = _login(stub, "bob", "bob-password-1")["AuthenticationResult"]["RefreshToken"]
    body = {"AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": CLIENT, "AuthParameters": {"REFRESH_TOKEN": refresh}}
    result = stub.call(TARGET + "InitiateAuth", body)["AuthenticationResult"]
    assert "RefreshToken" not in result and stub.verify(result["IdToken"])["sub"] == stub.users["bob"].sub  # type: ignore[index]
    body["AuthParameters"] = {"REFRESH_TOKEN": "made-up"}
    with pytest.raises(AuthError, match="Invalid Refresh Token"):
        stub.call(TARGET + "InitiateAuth", body)


def test_new_password_challenge_then_sign_in_with_the_new_password() -> None:
    stub = _stub()
    challenge = _login(stub, "carol", "temporary-1")
    assert challenge["ChallengeName"] == "NEW_PASSWORD_REQUIRED" and challenge["Session"]
    answer = {"ChallengeName": "NEW_PASSWORD_REQUIRED", "ClientId": CLIENT, "Session": challenge["Session"]}
    with pytest.raises(AuthError) as short:
        stub.call(
            TARGET + "RespondToAuthChallenge",
            {**answer, "ChallengeResponses": {"USERNAME": "carol", "NEW_PASSWORD": "x"}},
        )
    assert short.value.kind == "InvalidPasswordException"
    responses = {"USERNAME": "carol", "NEW_PASSWORD": "a-new-password-2"}
    result = stub.call(TARGET + "RespondToAuthChallenge", {**answer, "ChallengeResponses": responses})
    assert stub.verify(result["AuthenticationResult"]["IdToken"])["sub"] == "s-carol"  # type: ignore[index]
    assert "AuthenticationResult" in _login(stub, "carol", "a-new-password-2")
    with pytest.raises(AuthError):
        stub.call(TARGET + "RespondToAuthChallenge", {**answer, "ChallengeResponses": responses})  # session used up


def test_wrong_client_id_is_refused() -> None:
    body = {"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": "other", "AuthParameters": {"USERNAME": "a", "PASSWORD": "b"}}
    with pytest.raises(AuthError) as caught:
        _stub().call(TARGET + "InitiateAuth", body)
    assert caught.value.kind == "ResourceNotFoundException"


def test_expired_forged_and_foreign_tokens_do_not_verify() -> None:
    now = [1_000_000.0]
    stub = _stub(clock=lambda: now[0])
    token = _login(stub, "alice", "alice-password-1")["AuthenticationResult"]["IdToken"]
    assert stub.verify(token) is not None
    header, payload, signature = token.split(".")
    assert stub.verify(f"{header}.{payload}.{signature[:-2]}AA") is None
    other = _stub(clock=lambda: now[0])
    assert other.verify(token) is None  # another key
    claims = stub.verify(token)
    assert claims is not None
    assert stub.verify(stub.sign({**claims, "aud": "another-client"})) is None
    assert stub.verify(stub.sign({**claims, "alg": "none"}).rsplit(".", 1)[0] + ".") is None
    assert stub.verify("not.a.jwt") is None and stub.verify("") is None
    now[0] += 3601
    assert stub.verify(token) is None


def test_users_file(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": [{"username": "dora", "password": "dora-pass-1"}]}))
    [dora] = load_users(path)
    assert dora.username == "dora" and dora.sub and not dora.new_password_required
    path.write_text(json.dumps({"users": [{"username": "dora"}]}))
    with pytest.raises(ValueError, match=r"users\[0\]"):
        load_users(path)


# The HTTP server -------------------------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, SignInStub, list[dict[str, Any]]]]:
    """The server on a free port with an API that records its events and echoes the route."""
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<h1>studio</h1>")
    (static / "app.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("not for the page")
    events: list[dict[str, Any]] = []

    def api(event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        return {"statusCode": 202, "headers": {"Content-Type": "application/json"}, "body": '{"ok": true}'}

    stub = _stub()
    config = {"api_base": "/api", "auth": {"endpoint": AUTH_PATH, "client_id": CLIENT, "local": True}}
    server = make_server(host="127.0.0.1", port=0, static_dir=static, page_config=config, auth=stub, api=api)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", stub, events
    server.shutdown()
    server.server_close()


def test_api_needs_a_valid_id_token_like_the_jwt_authorizer(
    served: tuple[str, SignInStub, list[dict[str, Any]]],
) -> None:
    base, stub, events = served
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Bearer a.b.c"}):
        answer = httpx.get(f"{base}/api/jobs", headers=headers)
        assert (answer.status_code, answer.json()) == (401, {"message": "Unauthorized"})
    expired = stub.sign({"sub": "x", "aud": CLIENT, "iss": ISSUER, "token_use": "id", "exp": time.time() - 1})
    assert httpx.get(f"{base}/api/jobs", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    assert events == []


def test_api_events_carry_the_route_path_parameters_body_and_claims(
    served: tuple[str, SignInStub, list[dict[str, Any]]],
) -> None:
    base, stub, events = served
    token = _login(stub, "alice", "alice-password-1")["AuthenticationResult"]["IdToken"]
    headers = {"Authorization": f"Bearer {token}"}
    answer = httpx.get(f"{base}/api/jobs/j-0123456789abcdef", headers=headers)
    assert (answer.status_code, answer.json()) == (202, {"ok": True})
    assert httpx.post(f"{base}/api/jobs", headers=headers, json={"kind": "generate"}).status_code == 202
    get, post = events
    assert get["routeKey"] == contract.ROUTE_GET_JOB and get["pathParameters"] == {"id": "j-0123456789abcdef"}
    assert get["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == stub.users["alice"].sub
    assert post["routeKey"] == contract.ROUTE_CREATE_JOB and json.loads(post["body"]) == {"kind": "generate"}
    assert httpx.delete(f"{base}/api/jobs/j-1", headers=headers).json() == {"message": "Not Found"}
    assert len(events) == 2


def test_sign_in_over_http_answers_like_cognito(served: tuple[str, SignInStub, list[dict[str, Any]]]) -> None:
    base, _, _ = served
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + "InitiateAuth"}
    body = {
        "AuthFlow": "USER_PASSWORD_AUTH",
        "ClientId": CLIENT,
        "AuthParameters": {"USERNAME": "bob", "PASSWORD": "no"},
    }
    answer = httpx.post(f"{base}{AUTH_PATH}", headers=headers, content=json.dumps(body))
    assert answer.status_code == 400
    assert answer.json() == {"__type": "NotAuthorizedException", "message": "Incorrect username or password."}
    body["AuthParameters"]["PASSWORD"] = "bob-password-1"
    answer = httpx.post(f"{base}{AUTH_PATH}", headers=headers, content=json.dumps(body))
    assert answer.status_code == 200 and answer.json()["AuthenticationResult"]["TokenType"] == "Bearer"


def test_page_files_and_config_are_served_and_nothing_outside(
    served: tuple[str, SignInStub, list[dict[str, Any]]],
) -> None:
    base, _, _ = served
    index = httpx.get(f"{base}/")
    assert index.status_code == 200 and "studio" in index.text and index.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{base}/app.js").headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert httpx.get(f"{base}/{contract.PAGE_CONFIG_FILE}").json()["auth"]["local"] is True
    host, port = base.removeprefix("http://").split(":")
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/static/../../secret.txt"):
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        connection.request("GET", path)  # sent as written (httpx would normalise the dots away)
        response = connection.getresponse()
        assert (response.status, b"not for the page" in response.read()) == (404, False), path
        connection.close()
    assert httpx.get(f"{base}/missing.css").status_code == 404
