"""Who a session belongs to: the identity URL (``/id/{orgId}/{userId}``) and OpenID Connect's
``/services/oauth2/userinfo``.

The OAuth token response hands out ``id`` = ``https://<host>/id/<orgId>/<userId>``; clients (jsforce's
``identity()``, Drupal's salesforce module, OpenID libraries) then call it with the access token to
learn the user and the org. As Salesforce's "Identity URLs" page documents it:

- the token comes as ``Authorization: Bearer``/``OAuth`` or the ``oauth_token`` (or
  ``access_token``) parameter; GET or POST;
- ``format=json|xml`` or ``Accept: application/json|application/xml`` (``*/*`` and none mean JSON);
- ``version=NN.N`` or ``latest`` fills the API URLs in ``urls``; without it they keep the literal
  ``{version}``;
- a missing or unknown token is HTTP 403 with the plain body ``Bad_OAuth_Token``; an org or user id
  that is not the token's is 403 ``Bad_Id`` (this sandbox has one user, so any other user is another
  user's URL, which the token's scope does not reach).

The answer is built from the org's own ``User`` and ``Organization`` records, so what SOQL shows and
what the identity service says agree. Field names follow the documented response (and jsforce's
``IdentityInfo`` type): ``id``, ``user_id``, ``organization_id``, ``username``, ``display_name``,
``email``, ``urls``, ``active``, ``user_type``, ``language``, ``locale``, ``utcOffset`` and the rest.
The userinfo endpoint answers the OpenID Connect claims (``sub`` = the identity URL,
``preferred_username``, ``name``, ``given_name``, ``family_name``, ``email``, ``zoneinfo``...) plus
Salesforce's own (``user_id``, ``organization_id``, ``urls``).
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.salesforce.org import API_VERSIONS, Org
from sandbox.salesforce.transport import json_response
from sandbox.sfid import normalize_id


class IdentityError(Exception):
    """A refusal: HTTP status and Salesforce's one-word body (``Bad_OAuth_Token``, ``Bad_Id``)."""

    def __init__(self, status: int, word: str):
        super().__init__(word)
        self.status = status
        self.word = word


def _base_url(request: Request) -> str:
    return f"https://{request.headers.get('host') or request.url.netloc}"


async def _token(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    for name in ("oauth_token", "access_token"):
        if request.query_params.get(name):
            return request.query_params[name]
    if request.method == "POST":
        form = await request.form()
        for name in ("oauth_token", "access_token"):
            if form.get(name):
                return str(form[name])
    return ""


def _user_and_org(org: Org, user_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    conn = org.store.conn()
    user = conn.execute(
        'SELECT Id, Username, Name, Email, IsActive, LastModifiedDate FROM "User" WHERE Id = ?', (user_id,)
    ).fetchone()
    company = conn.execute(
        'SELECT Id, Name, TimeZoneSidKey, LanguageLocaleKey, DefaultLocaleSidKey FROM "Organization" WHERE Id = ?',
        (org.config.org_id,),
    ).fetchone()
    keys = ("id", "username", "name", "email", "active", "modified")
    return dict(zip(keys, user)), dict(zip(("id", "name", "timezone", "language", "locale"), company))


def _urls(base: str, org_id: str, user_id: str, version: str) -> dict[str, str]:
    org15 = org_id[:15]
    rest = f"{base}/services/data/v{version}/"
    return {
        "enterprise": f"{base}/services/Soap/c/{version}/{org15}",
        "metadata": f"{base}/services/Soap/m/{version}/{org15}",
        "partner": f"{base}/services/Soap/u/{version}/{org15}",
        "rest": rest,
        "sobjects": rest + "sobjects/",
        "search": rest + "search/",
        "query": rest + "query/",
        "recent": rest + "recent/",
        "tooling_soap": f"{base}/services/Soap/T/{version}/{org15}",
        "tooling_rest": rest + "tooling/",
        "profile": f"{base}/{user_id}",
        "feeds": rest + "chatter/feeds",
        "groups": rest + "chatter/groups",
        "users": rest + "chatter/users",
        "feed_items": rest + "chatter/feed-items",
        "feed_elements": rest + "chatter/feed-elements",
        "custom_domain": base,
    }


def _names(full_name: str) -> tuple[str, str]:
    first, _, last = (full_name or "").rpartition(" ")
    return (first, last) if first else ("", full_name or "")


def identity(org: Org, base: str, user_id: str, version: str) -> dict[str, Any]:
    """The identity URL's answer for ``user_id`` of this org."""
    user, company = _user_and_org(org, user_id)
    first, last = _names(user["name"])
    identity_url = f"{base}/id/{company['id']}/{user['id']}"
    photo = f"{base}/profilephoto/005/"
    return {
        "id": identity_url,
        "asserted_user": True,
        "user_id": user["id"],
        "organization_id": company["id"],
        "username": user["username"],
        "nick_name": user["username"].split("@")[0],
        "display_name": user["name"],
        "email": user["email"],
        "email_verified": True,
        "first_name": first,
        "last_name": last,
        "timezone": company["timezone"],
        "photos": {"picture": photo + "F", "thumbnail": photo + "T"},
        "addr_street": None, "addr_city": None, "addr_state": None, "addr_country": None, "addr_zip": None,
        "mobile_phone": None,
        "mobile_phone_verified": False,
        "is_lightning_login_user": False,
        "status": {"created_date": None, "body": None},
        "urls": _urls(base, company["id"], user["id"], version),
        "active": bool(user["active"]),
        "user_type": "STANDARD",
        "language": company["language"],
        "locale": company["locale"],
        "utcOffset": 0,  # the org's zone is GMT
        "last_modified_date": user["modified"][:-1] + "+0000",
        "is_app_installed": True,
    }


def userinfo(org: Org, base: str, user_id: str, version: str) -> dict[str, Any]:
    """OpenID Connect's userinfo claims, with Salesforce's additions."""
    ident = identity(org, base, user_id, version)
    return {
        "sub": ident["id"],
        "user_id": ident["user_id"],
        "organization_id": ident["organization_id"],
        "preferred_username": ident["username"],
        "nickname": ident["nick_name"],
        "name": ident["display_name"],
        "email": ident["email"],
        "email_verified": True,
        "given_name": ident["first_name"],
        "family_name": ident["last_name"],
        "zoneinfo": ident["timezone"],
        "photos": ident["photos"],
        "profile": ident["urls"]["profile"],
        "picture": ident["photos"]["picture"],
        "address": {},
        "urls": ident["urls"],
        "active": ident["active"],
        "user_type": ident["user_type"],
        "language": ident["language"],
        "locale": ident["locale"],
        "utcOffset": ident["utcOffset"],
        "updated_at": ident["last_modified_date"].replace(".000+0000", "Z"),
        "is_app_installed": True,
    }


def _xml(root: str, payload: dict[str, Any]) -> str:
    def render(value: Any) -> str:
        if isinstance(value, dict):
            return "".join(f"<{k}>{render(v)}</{k}>" if v is not None else f'<{k} xsi:nil="true"/>'
                           for k, v in value.items())
        if isinstance(value, bool):
            return "true" if value else "false"
        return escape(str(value))

    return (f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f"{render(payload)}</{root}>")


def _wants_xml(request: Request) -> bool:
    requested = request.query_params.get("format", "").lower()
    if requested:
        return requested == "xml"
    for accepted in request.headers.get("accept", "").lower().split(","):
        accepted = accepted.split(";")[0].strip()
        if accepted in ("application/json", "*/*"):
            return False
        if accepted == "application/xml":
            return True
    return False


def _version(request: Request) -> str:
    version = request.query_params.get("version", "")
    if version == "latest":
        return API_VERSIONS[-1]
    return version if version in API_VERSIONS else "{version}"


async def _session_user(request: Request) -> str:
    org: Org = request.app.state.org
    token = await _token(request)
    user = org.sessions.user_for(token) if token else None
    if user is None:
        raise IdentityError(403, "Bad_OAuth_Token")
    return user


def _answer(request: Request, root: str, payload: dict[str, Any]) -> Response:
    if _wants_xml(request):
        return Response(_xml(root, payload), media_type="application/xml;charset=UTF-8")
    return json_response(payload)


async def identity_endpoint(request: Request) -> Response:
    org: Org = request.app.state.org
    try:
        user = await _session_user(request)
        org_id = normalize_id(request.path_params["org_id"])
        user_id = normalize_id(request.path_params["user_id"])
        if org_id != org.config.org_id or user_id != user:
            raise IdentityError(403, "Bad_Id")
    except IdentityError as exc:
        return Response(exc.word, status_code=exc.status, media_type="text/plain;charset=UTF-8")
    payload = await run_in_threadpool(identity, org, _base_url(request), user, _version(request))
    return _answer(request, "user", payload)


async def userinfo_endpoint(request: Request) -> Response:
    org: Org = request.app.state.org
    try:
        user = await _session_user(request)
    except IdentityError as exc:
        return Response(exc.word, status_code=exc.status, media_type="text/plain;charset=UTF-8")
    payload = await run_in_threadpool(userinfo, org, _base_url(request), user, _version(request))
    return _answer(request, "user", payload)


def routes() -> list[Route]:
    return [
        Route("/id/{org_id}/{user_id}", identity_endpoint, methods=["GET", "POST"]),
        Route("/services/oauth2/userinfo", userinfo_endpoint, methods=["GET", "POST"]),
    ]
