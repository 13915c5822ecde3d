"""A local sign-in stub speaking Cognito's JSON API (InitiateAuth, RespondToAuthChallenge) with HS256 JWTs.

Only for `make web-local`: users and passwords come from a file or the two demo users, tokens are signed with a
random per-process key, and verify() checks them the way API Gateway's JWT authorizer would (signature, exp, aud).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TOKEN_LIFETIME_S = 3600
MIN_PASSWORD_CHARS = 8
TARGET_PREFIX = "AWSCognitoIdentityProviderService."
DEMO_USERS = (("alice", "alice-password-1"), ("bob", "bob-password-1"))
_NAMESPACE = uuid.UUID("6f1d3c2e-9a55-4c3b-8f0e-2b7d7f4e9a10")


@dataclasses.dataclass
class LocalUser:
    """One user of the stub; sub is stable per username (uuid5), like a Cognito sub is stable per user."""

    username: str
    password: str
    sub: str
    new_password_required: bool = False


class AuthError(Exception):
    """A Cognito error: HTTP 400 with {"__type", "message"}."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_users(path: Path | None) -> list[LocalUser]:
    """Users from a JSON file ({"users": [{"username", "password", "new_password_required"?}]}) or the demo pair."""
    if path is None:
        entries: list[dict[str, Any]] = [{"username": name, "password": word} for name, word in DEMO_USERS]
    else:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data.get("users") if isinstance(data, dict) else None  # type: ignore[assignment]
        if not isinstance(entries, list) or not entries:
            raise ValueError(f'{path}: expected {{"users": [{{"username": ..., "password": ...}}, ...]}}')
    users = []
    for index, entry in enumerate(entries):
        name, word = entry.get("username"), entry.get("password")
        if not isinstance(name, str) or not name or not isinstance(word, str) or not word:
            raise ValueError(f"users[{index}] needs a non-empty username and password")
        users.append(
            LocalUser(
                username=name,
                password=word,
                sub=str(entry.get("sub") or uuid.uuid5(_NAMESPACE, name)),
                new_password_required=bool(entry.get("new_password_required", False)),
            )
        )
    return users


class SignInStub:
    """Issues and verifies tokens for a fixed set of users."""

    def __init__(
        self, *, users: list[LocalUser], client_id: str, issuer: str, key: bytes | None = None, clock: Any = time.time
    ) -> None:
        self.users = {user.username: user for user in users}
        self.client_id = client_id
        self.issuer = issuer
        self._key = key or secrets.token_bytes(32)
        self._clock = clock
        self._lock = threading.Lock()
        self._refresh: dict[str, str] = {}  # refresh token -> username
        self._sessions: dict[str, str] = {}  # challenge session -> username

    # Tokens ----------------------------------------------------------------------------------------------------

    def sign(self, claims: Mapping[str, Any]) -> str:
        """An HS256 JWT of claims."""
        header = {"alg": "HS256", "typ": "JWT", "kid": "local"}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(dict(claims)).encode())}"
        signature = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}"

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a valid ID token (signature, alg, exp, aud, token_use); None for anything else."""
        try:
            header_text, payload_text, signature_text = token.split(".")
            header = json.loads(_unb64(header_text))
            claims = json.loads(_unb64(payload_text))
            signature = _unb64(signature_text)
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
            return None
        expected = hmac.new(self._key, f"{header_text}.{payload_text}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(signature, expected):
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self._clock():
            return None
        if claims.get("aud") != self.client_id or claims.get("iss") != self.issuer or claims.get("token_use") != "id":
            return None
        return claims

    def _result(self, user: LocalUser, *, with_refresh: bool) -> dict[str, Any]:
        now = int(self._clock())
        common = {"sub": user.sub, "iss": self.issuer, "iat": now, "auth_time": now, "exp": now + TOKEN_LIFETIME_S}
        id_token = self.sign({**common, "aud": self.client_id, "token_use": "id", "cognito:username": user.username})
        access = self.sign({**common, "client_id": self.client_id, "token_use": "access", "username": user.username})
        result: dict[str, Any] = {
            "AccessToken": access,
            "ExpiresIn": TOKEN_LIFETIME_S,
            "IdToken": id_token,
            "TokenType": "Bearer",
        }
        if with_refresh:
            refresh = secrets.token_urlsafe(48)
            with self._lock:
                self._refresh[refresh] = user.username
            result["RefreshToken"] = refresh
        return {"AuthenticationResult": result, "ChallengeParameters": {}}

    # The JSON API ----------------------------------------------------------------------------------------------

    def call(self, target: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Answer one X-Amz-Target call; AuthError for what Cognito answers with HTTP 400."""
        operation = target.removeprefix(TARGET_PREFIX)
        if body.get("ClientId") != self.client_id:
            raise AuthError("ResourceNotFoundException", f"User pool client {body.get('ClientId')} does not exist.")
        if operation == "InitiateAuth":
            return self._initiate(body)
        if operation == "RespondToAuthChallenge":
            return self._respond(body)
        raise AuthError("InvalidParameterException", f"the local sign-in stub does not implement {target!r}")

    def _initiate(self, body: Mapping[str, Any]) -> dict[str, Any]:
        flow = body.get("AuthFlow")
        parameters = body.get("AuthParameters") or {}
        if flow == "USER_PASSWORD_AUTH":
            user = self.users.get(str(parameters.get("USERNAME", "")))
            if user is None or not hmac.compare_digest(user.password, str(parameters.get("PASSWORD", ""))):
                raise AuthError("NotAuthorizedException", "Incorrect username or password.")
            if user.new_password_required:
                session = secrets.token_urlsafe(48)
                with self._lock:
                    self._sessions[session] = user.username
                return {
                    "ChallengeName": "NEW_PASSWORD_REQUIRED",
                    "Session": session,
                    "ChallengeParameters": {
                        "USER_ID_FOR_SRP": user.username,
                        "requiredAttributes": "[]",
                        "userAttributes": "{}",
                    },
                }
            return self._result(user, with_refresh=True)
        if flow in ("REFRESH_TOKEN_AUTH", "REFRESH_TOKEN"):
            with self._lock:
                name = self._refresh.get(str(parameters.get("REFRESH_TOKEN", "")))
            if name is None:
                raise AuthError("NotAuthorizedException", "Invalid Refresh Token")
            return self._result(self.users[name], with_refresh=False)
        raise AuthError("InvalidParameterException", f"AuthFlow {flow!r} is not enabled for this client")

    def _respond(self, body: Mapping[str, Any]) -> dict[str, Any]:
        if body.get("ChallengeName") != "NEW_PASSWORD_REQUIRED":
            raise AuthError("InvalidParameterException", f"unsupported ChallengeName {body.get('ChallengeName')!r}")
        responses = body.get("ChallengeResponses") or {}
        with self._lock:
            name = self._sessions.get(str(body.get("Session", "")))
        if name is None or responses.get("USERNAME") != name:
            raise AuthError("NotAuthorizedException", "Invalid session for the user.")
        new_password = str(responses.get("NEW_PASSWORD", ""))
        if len(new_password) < MIN_PASSWORD_CHARS:
            raise AuthError(
                "InvalidPasswordException",
                f"Password does not conform to policy: Password not long enough (at least {MIN_PASSWORD_CHARS})",
            )
        user = self.users[name]
        user.password, user.new_password_required = new_password, False
        with self._lock:
            self._sessions.pop(str(body.get("Session")), None)
        return self._result(user, with_refresh=True)
