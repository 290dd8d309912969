"""Hostile XML and SOAP faults: what the SOAP engine refuses and how it reports, against fake HTTP answers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from integration_pipelines.connectors.errors import RetriesExhaustedError
from integration_pipelines.connectors.legacy_erp import SYSTEM as ERP
from integration_pipelines.connectors.netsuite import SYSTEM as NETSUITE
from integration_pipelines.connectors.runtime import resolve_system
from integration_pipelines.connectors.soap import (
    ResponseTooLargeError,
    SoapFaultError,
    XmlSecurityError,
    build_soap_client,
    load_wsdl,
    parse_untrusted,
)
from integration_pipelines.sandbox.soapkit import WSDL_DIR

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<m:GetStockLevelsResponse xmlns:m="urn:legacy-erp:inventory:v1">&lol9;</m:GetStockLevelsResponse>
</soapenv:Body></soapenv:Envelope>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&secret;</soapenv:Body>
</soapenv:Envelope>"""
FAULT11 = b"""<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<soapenv:Fault><faultcode>soapenv:Server.userException</faultcode><faultstring>Invalid search.</faultstring>
<detail><f:invalidSearchFault xmlns:f="urn:faults_2024_2.platform.webservices.netsuite.com"><f:code>INVALID_SRCH
</f:code><f:message>Invalid search.</f:message></f:invalidSearchFault></detail></soapenv:Fault>
</soapenv:Body></soapenv:Envelope>"""
THROTTLED = FAULT11.replace(b"invalidSearchFault", b"exceededConcurrentRequestLimitFault")


def _client(settings, system, handler, monkeypatch=None):
    return build_soap_client(resolve_system(system, settings), transport=httpx.MockTransport(handler))


def _answer(body: bytes, status: int = 200, **headers: str):
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, content=body, headers={"content-type": "text/xml", **headers})

    return handler, calls


@pytest.mark.parametrize("status", [200, 500])
def test_billion_laughs_is_refused_without_expanding(settings, status):
    handler, _ = _answer(BILLION_LAUGHS, status)
    started = time.monotonic()
    with _client(settings, ERP, handler) as client, pytest.raises(XmlSecurityError) as info:
        client.call("GetStockLevels", {"page": 1, "pageSize": 5})
    assert time.monotonic() - started < 2
    assert "DTD" in str(info.value) and "billion laughs" in str(info.value)
    with pytest.raises(XmlSecurityError):
        parse_untrusted(BILLION_LAUGHS, system="test", where="direct")


def test_external_entity_is_refused_and_no_file_is_read(settings):
    handler, _ = _answer(EXTERNAL_ENTITY)
    with _client(settings, ERP, handler) as client, pytest.raises(XmlSecurityError) as info:
        client.call("GetStockLevels", {"page": 1, "pageSize": 5})
    assert "root:" not in str(info.value)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_oversized_response_is_refused_before_parsing(settings, monkeypatch, declared):
    monkeypatch.setenv("LEGACY_ERP_MAX_RESPONSE_BYTES", "4096")
    body = b"<a>" + b"x" * 50_000 + b"</a>"

    def handler(request: httpx.Request) -> httpx.Response:
        if declared:
            return httpx.Response(200, content=body)
        return httpx.Response(200, stream=httpx.ByteStream(body), headers={"transfer-encoding": "chunked"})

    with _client(settings, ERP, handler) as client, pytest.raises(ResponseTooLargeError) as info:
        client.call("GetStockLevels", {"page": 1, "pageSize": 5})
    assert "4096" in str(info.value) and "LEGACY_ERP_MAX_RESPONSE_BYTES" in str(info.value)


def test_soap_fault_surfaces_code_and_message_and_is_not_retried(settings):
    handler, calls = _answer(FAULT11, 500)
    with _client(settings, NETSUITE, handler) as client, pytest.raises(SoapFaultError) as info:
        client.call("searchMoreWithId", {"searchId": "x", "pageIndex": 2})
    assert info.value.code == "soapenv:Server.userException" and "INVALID_SRCH" in info.value.detail_codes
    assert "Invalid search." in str(info.value) and "INVALID_SRCH" in str(info.value)
    assert len(calls) == 1
    assert NETSUITE.values["token_secret"].sandbox not in str(info.value)


def test_throttling_fault_is_retried_like_a_429(settings, monkeypatch):
    monkeypatch.setenv("NETSUITE_MAX_RETRIES", "2")
    handler, calls = _answer(THROTTLED, 500)
    with _client(settings, NETSUITE, handler) as client, pytest.raises(RetriesExhaustedError) as info:
        client.call("searchMoreWithId", {"searchId": "x", "pageIndex": 2})
    assert len(calls) == 3 and "429" in str(info.value)
    nonces = {c.content.split(b"nonce>")[1] for c in calls}
    assert len(nonces) == 3, "every attempt is signed afresh (NetSuite refuses a reused nonce)"


def _wsdl_importing(tmp_path: Path, location: str) -> Path:
    text = (WSDL_DIR / "legacy_erp.wsdl").read_text()
    text = text.replace('<xsd:schema targetNamespace="urn:legacy-erp:inventory:v1" elementFormDefault="qualified">',
                        '<xsd:schema targetNamespace="urn:legacy-erp:inventory:v1" elementFormDefault="qualified">'
                        f'<xsd:import namespace="urn:other" schemaLocation="{location}"/>')
    path = tmp_path / "hostile.wsdl"
    path.write_text(text)
    return path


def test_wsdl_importing_a_remote_url_is_refused(tmp_path):
    path = _wsdl_importing(tmp_path, "http://attacker.example.com/evil.xsd")
    with pytest.raises(XmlSecurityError) as info:
        load_wsdl(str(path), "Legacy ERP")
    assert "http://attacker.example.com/evil.xsd" in str(info.value) and "remote" in str(info.value)


def test_wsdl_importing_a_file_outside_its_folder_is_refused(tmp_path):
    folder = tmp_path / "wsdl"
    folder.mkdir()
    (tmp_path / "outside.xsd").write_text('<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema"/>')
    path = _wsdl_importing(folder, "../outside.xsd")
    with pytest.raises(XmlSecurityError) as info:
        load_wsdl(str(path), "Legacy ERP")
    assert "outside its folder" in str(info.value)


def test_wsdl_with_a_dtd_is_refused(tmp_path):
    path = tmp_path / "dtd.wsdl"
    path.write_bytes(BILLION_LAUGHS)
    with pytest.raises(XmlSecurityError):
        load_wsdl(str(path), "Legacy ERP")
