"""Logging in: the org's credentials, SOAP partner ``login``, the OAuth 2.0 token endpoint, sessions.

simple-salesforce (and so Airflow's ``SalesforceHook``) logs in with SOAP by default, or with OAuth
when a connected app's key and secret are given; both hand back a session id used as a bearer
token. Failures answer in Salesforce's own shapes (a SOAP fault with ``sf:exceptionCode``, or an
OAuth ``{"error", "error_description"}``), because clients parse them.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any
from xml.sax.saxutils import escape

from defusedxml import ElementTree

from sandbox.salesforce.store import Store
from sandbox.sfid import make_id

SESSION_SECONDS_VALID = 7200
ORG_NAME = "Zuora Sync Sandbox"  # the Organization record's Name, as logins report it
_PARTNER_NS = "urn:partner.soap.sforce.com"


@dataclass
class OrgConfig:
    """Who may log in. Generated on first start and kept in the data dir; flags override."""

    org_id: str
    user_id: str
    username: str
    password: str
    security_token: str
    consumer_key: str
    consumer_secret: str
    daily_api_requests: int = 100_000

    @classmethod
    def load_or_create(cls, store: Store, **overrides: Any) -> "OrgConfig":
        stored = store.get_setting("org")
        if stored is None:
            stored = {
                "org_id": make_id("00D", "0Z" + secrets.token_hex(5).upper()),
                "user_id": make_id("005", "0Z" + secrets.token_hex(5).upper()),
                "username": "admin@zuora-sync.sandbox",
                "password": secrets.token_urlsafe(12),
                "security_token": secrets.token_urlsafe(18),
                "consumer_key": "3MVG9" + secrets.token_urlsafe(60),
                "consumer_secret": secrets.token_hex(32).upper(),
            }
        stored.update({key: value for key, value in overrides.items() if value is not None})
        config = cls(**stored)
        store.set_setting("org", asdict(config))
        return config

    def check_password(self, given: str, token_optional: bool) -> bool:
        """``given`` is the password followed by the security token.

        The OAuth password flow may leave the token off, as from an org's trusted IP range.
        """
        expected = (self.password + self.security_token).encode()
        if hmac.compare_digest(given.encode(), expected):
            return True
        return token_optional and hmac.compare_digest(given.encode(), self.password.encode())


class AuthError(Exception):
    """Login refused."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Sessions:
    """Issued session ids, kept in the store so they survive a sandbox restart."""

    def __init__(self, store: Store, config: OrgConfig):
        self.store = store
        self.config = config
        self._lock = threading.Lock()
        self._live: dict[str, str] = {
            token: user
            for token, user in store.conn().execute("SELECT token, user_id FROM _sessions WHERE expired = 0")
        }

    def issue(self) -> str:
        token = f"{self.config.org_id[:15]}!AR{secrets.token_urlsafe(72)}"
        with self.store.write() as conn:
            conn.execute(
                "INSERT INTO _sessions(token, user_id, created) VALUES (?, ?, ?)",
                (token, self.config.user_id, time.time()),
            )
        with self._lock:
            self._live[token] = self.config.user_id
        return token

    def user_for(self, token: str) -> str | None:
        """The user of a live session, or ``None`` for an unknown or expired one."""
        return self._live.get(token)

    def expire_all(self) -> int:
        """End every session now (what an admin's "expire all passwords/sessions" does)."""
        with self.store.write() as conn:
            count = conn.execute("UPDATE _sessions SET expired = 1 WHERE expired = 0").rowcount
        with self._lock:
            self._live.clear()
        return count


# -- SOAP login ---------------------------------------------------------------------------------


def parse_soap_login(body: bytes) -> tuple[str, str]:
    """Username and password (with token) from a partner ``login`` envelope."""
    try:
        root = ElementTree.fromstring(body)
    except Exception as exc:  # defusedxml raises several types for hostile or broken XML
        raise AuthError("INVALID_LOGIN", f"Unable to parse the login request: {exc}") from None
    username = root.find(f".//{{{_PARTNER_NS}}}username")
    password = root.find(f".//{{{_PARTNER_NS}}}password")
    if username is None or password is None:
        raise AuthError("INVALID_LOGIN", "Invalid username, password, security token; or user locked out.")
    return username.text or "", password.text or ""


def soap_login_response(config: OrgConfig, session_id: str, base_url: str, version: str) -> str:
    """A partner ``loginResponse``; ``sessionId`` and ``serverUrl`` unprefixed, as clients read them."""
    server_url = f"{base_url}/services/Soap/u/{version}/{config.org_id[:15]}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{escape(base_url)}/services/Soap/m/{version}/{config.org_id[:15]}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
        f"<serverUrl>{escape(server_url)}</serverUrl>"
        f"<sessionId>{escape(session_id)}</sessionId>"
        f"<userId>{config.user_id}</userId>"
        "<userInfo>"
        "<accessibilityMode>false</accessibilityMode><currencySymbol>$</currencySymbol>"
        "<orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit><orgDefaultCurrencyIsoCode>USD"
        "</orgDefaultCurrencyIsoCode><orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments>"
        "<orgHasPersonAccounts>false</orgHasPersonAccounts>"
        f"<organizationId>{config.org_id}</organizationId><organizationMultiCurrency>false"
        f"</organizationMultiCurrency><organizationName>{ORG_NAME}</organizationName>"
        "<profileId>00e000000000000AAA</profileId><roleId xsi:nil=\"true\"/>"
        f"<sessionSecondsValid>{SESSION_SECONDS_VALID}</sessionSecondsValid>"
        f"<userDefaultCurrencyIsoCode xsi:nil=\"true\"/><userEmail>{escape(config.username)}</userEmail>"
        f"<userFullName>Sandbox Admin</userFullName><userId>{config.user_id}</userId>"
        "<userLanguage>en_US</userLanguage><userLocale>en_US</userLocale>"
        f"<userName>{escape(config.username)}</userName><userTimeZone>UTC</userTimeZone>"
        "<userType>Standard</userType><userUiSkin>Theme3</userUiSkin>"
        "</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )


def soap_fault(code: str, message: str) -> str:
    """A partner ``LoginFault``; clients read the literal ``sf:exceptionCode``/``sf:exceptionMessage``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode>"
        f"<faultstring>{code}: {escape(message)}</faultstring><detail>"
        '<sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )


def soap_login(config: OrgConfig, sessions: Sessions, body: bytes) -> str:
    """Check a SOAP login request and return a new session id, or raise :class:`AuthError`."""
    username, password = parse_soap_login(body)
    if username.lower() != config.username.lower() or not config.check_password(password, token_optional=False):
        raise AuthError("INVALID_LOGIN", "Invalid username, password, security token; or user locked out.")
    return sessions.issue()


# -- OAuth 2.0 ----------------------------------------------------------------------------------


class OAuthError(Exception):
    """An OAuth failure: ``error`` and ``error_description``, HTTP 400 (401 for a bad client)."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def oauth_token(
    config: OrgConfig, sessions: Sessions, form: dict[str, str], authorization: str | None, base_url: str
) -> dict[str, Any]:
    """The token endpoint: ``password`` and ``client_credentials`` grants."""
    grant = form.get("grant_type")
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    if authorization and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, client_secret = decoded.partition(":")
        except ValueError:
            raise OAuthError("invalid_client", "invalid client credentials", 401) from None
    if grant not in ("password", "client_credentials"):
        raise OAuthError("unsupported_grant_type", "grant type not supported")
    if not client_id or not hmac.compare_digest(client_id.encode(), config.consumer_key.encode()):
        raise OAuthError("invalid_client_id", "client identifier invalid")
    if not client_secret or not hmac.compare_digest(client_secret.encode(), config.consumer_secret.encode()):
        raise OAuthError("invalid_client", "invalid client credentials")
    if grant == "password":
        username, password = form.get("username") or "", form.get("password") or ""
        if username.lower() != config.username.lower() or not config.check_password(password, token_optional=True):
            raise OAuthError("invalid_grant", "authentication failure")
    token = sessions.issue()
    issued_at = str(int(time.time() * 1000))
    identity_url = f"{base_url}/id/{config.org_id}/{config.user_id}"
    # Salesforce signs the identity URL and issued_at with the client secret, so a client can check
    # that the ``id`` it is about to call came from the server.
    signature = base64.b64encode(
        hmac.new(config.consumer_secret.encode(), (identity_url + issued_at).encode(), "sha256").digest()
    ).decode()
    return {
        "access_token": token,
        "instance_url": base_url,
        "id": identity_url,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": signature,
        "scope": "api",
    }
