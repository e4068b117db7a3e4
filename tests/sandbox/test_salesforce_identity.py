"""Who a session is: the identity URL an OAuth token response hands out, OpenID Connect's userinfo,
and the ``Organization`` record SOQL reads, all agreeing with the logins (raw HTTP and
simple-salesforce; shapes from Salesforce's "Identity URLs" page and jsforce's ``IdentityInfo``)."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest
import requests
from conftest import SalesforceSandbox
from simple_salesforce.exceptions import SalesforceMalformedRequest


@pytest.fixture
def oauth(sf_sandbox: SalesforceSandbox) -> dict:
    """A password-grant token response from the sandbox's OAuth endpoint."""
    response = requests.post(f"{sf_sandbox.url}/services/oauth2/token", data={
        "grant_type": "password", "client_id": sf_sandbox.env["SALESFORCE_SANDBOX_CONSUMER_KEY"],
        "client_secret": sf_sandbox.env["SALESFORCE_SANDBOX_CONSUMER_SECRET"],
        "username": sf_sandbox.username, "password": sf_sandbox.password + sf_sandbox.security_token,
    }, verify=sf_sandbox.ca_bundle, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def get(sandbox: SalesforceSandbox, url: str, token: str | None, **params) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(url, headers=headers, params=params, verify=sandbox.ca_bundle, timeout=30)


def test_the_identity_url_answers_with_the_user_and_the_org(sf_sandbox, oauth, sf):
    me = get(sf_sandbox, oauth["id"], oauth["access_token"])
    assert me.status_code == 200 and me.headers["content-type"].startswith("application/json")
    ident = me.json()
    org_id, user_id = oauth["id"].split("/")[-2:]
    assert (ident["id"], ident["organization_id"], ident["user_id"]) == (oauth["id"], org_id, user_id)
    user = sf.query(f"SELECT Username, Name, Email, IsActive FROM User WHERE Id = '{user_id}'")["records"][0]
    assert (ident["username"], ident["display_name"], ident["email"], ident["active"]) == (
        sf_sandbox.username, user["Name"], user["Email"], True)
    assert ident["username"] == user["Username"]
    for key in ("asserted_user", "nick_name", "first_name", "last_name", "photos", "urls", "user_type",
                "language", "locale", "utcOffset", "last_modified_date", "is_app_installed"):
        assert key in ident
    # Without a version the API URLs keep the literal {version}; with one they carry it.
    assert ident["urls"]["rest"] == f"{oauth['instance_url']}/services/data/v{{version}}/"
    versioned = get(sf_sandbox, oauth["id"], oauth["access_token"], version="59.0").json()
    assert versioned["urls"]["query"] == f"{oauth['instance_url']}/services/data/v59.0/query/"
    assert versioned["urls"]["partner"].endswith(f"/services/Soap/u/59.0/{org_id[:15]}")

    # The access token may come as a parameter; XML on request.
    as_xml = requests.get(oauth["id"], params={"oauth_token": oauth["access_token"], "format": "xml"},
                          verify=sf_sandbox.ca_bundle, timeout=30)
    root = ET.fromstring(as_xml.content)
    assert root.tag == "user" and root.findtext("user_id") == user_id and root.findtext("urls/rest")

    # A SOAP login's session id is a token too (simple-salesforce's sessions).
    assert get(sf_sandbox, oauth["id"], sf.session_id).json()["user_id"] == user_id


def test_identity_refusals(sf_sandbox, oauth):
    for token in (None, "00Dbogus!token"):
        refused = get(sf_sandbox, oauth["id"], token)
        assert (refused.status_code, refused.text) == (403, "Bad_OAuth_Token")
    org_id, user_id = oauth["id"].split("/")[-2:]
    other_org = oauth["id"].replace(org_id, "00D000000000001AAA")
    refused = get(sf_sandbox, other_org, oauth["access_token"])
    assert (refused.status_code, refused.text) == (403, "Bad_Id")


def test_userinfo_is_the_same_user_in_openid_terms(sf_sandbox, oauth):
    info = get(sf_sandbox, f"{sf_sandbox.url}/services/oauth2/userinfo", oauth["access_token"]).json()
    ident = get(sf_sandbox, oauth["id"], oauth["access_token"]).json()
    assert info["sub"] == oauth["id"]
    assert (info["user_id"], info["organization_id"], info["preferred_username"], info["name"], info["email"]) == (
        ident["user_id"], ident["organization_id"], ident["username"], ident["display_name"], ident["email"])
    assert info["given_name"] == ident["first_name"] and info["family_name"] == ident["last_name"]
    refused = get(sf_sandbox, f"{sf_sandbox.url}/services/oauth2/userinfo", None)
    assert (refused.status_code, refused.text) == (403, "Bad_OAuth_Token")


def test_organization_is_one_read_only_record(sf, oauth):
    org_id = oauth["id"].split("/")[-2]
    result = sf.query("SELECT Id, Name, OrganizationType, IsSandbox FROM Organization")
    assert result["totalSize"] == 1
    record = result["records"][0]
    assert (record["Id"], record["Name"], record["IsSandbox"]) == (org_id, "Zuora Sync Sandbox", True)
    described = sf.Organization.describe()
    assert (described["createable"], described["updateable"], described["deletable"], described["keyPrefix"]) == (
        False, False, False, "00D")
    assert "OwnerId" not in {f["name"] for f in described["fields"]}
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Organization.create({"Name": "Another org"})
    assert caught.value.content[0]["errorCode"] == "INVALID_TYPE_FOR_OPERATION"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Organization.update(org_id, {"Name": "Renamed"})
    assert caught.value.content[0]["errorCode"] == "INVALID_TYPE_FOR_OPERATION"
    assert sf.query("SELECT Name FROM Organization")["records"][0]["Name"] == "Zuora Sync Sandbox"
