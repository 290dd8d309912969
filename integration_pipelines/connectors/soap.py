"""The SOAP engine: zeep builds and parses envelopes, the project's `HttpClient` carries them.

Why this split (and not a zeep `Transport`): every REST system already goes through `HttpClient` for retries
with full-jitter backoff and `Retry-After`, the client-side token bucket, and redacted request logs. Sending the
envelope through that same client gives SOAP systems the same behaviour, the same environment knobs
(`<SYSTEM>_MAX_RETRIES`, `<SYSTEM>_REQUESTS_PER_SECOND` ...) and the same tests, instead of a second retry loop
inside zeep's `requests` session. zeep is used for what it is good at: the WSDL, the XSD types (including
`xsi:type` polymorphism), WS-Security, and turning a reply into Python objects.

Two things SOAP needs that REST does not, done by `GuardTransport` beneath `HttpClient`:
- SOAP 1.1 sends every fault as HTTP 500 and SOAP 1.2 a sender fault as 400. A throttling fault (NetSuite's
  `ExceededConcurrentRequestLimitFault`) is turned into a 429, so it is retried with backoff like one; any other
  fault is passed up as a readable answer and raised as `SoapFaultError` with its code and message, because
  retrying an invalid login or a bad search cannot succeed.
- Responses are untrusted XML: a size cap is enforced while the body streams in (before any parsing), and every
  document is parsed with zeep's hardened settings (no DTD, no entity declarations, no network access, no huge
  trees). A billion-laughs document is refused before a single entity is expanded.

WSDLs are loaded from a packaged file (`package:sandbox/wsdl/netsuite.wsdl`), a path or a URL; imports are
resolved only next to the WSDL on disk or on a loopback host, never from the network (`forbid_external`, and a
loader that refuses remote URLs itself as a second line).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import zeep
import zeep.exceptions
import zeep.helpers
from lxml import etree
from zeep.loader import parse_xml
from zeep.wsse.username import UsernameToken

from .errors import ApiError, ConfigurationError, ConnectorError, MalformedPageError, PaginationError
from .http import HttpClient, json_path
from .reader import Page, ReadWindow, StalePageGuard, primary_key_problem, template_variables
from .runtime import ResolvedSystem, build_client
from .spec import (
    SoapSystem,
    SoapWriter,
    Stream,
    TokenPassportAuthSpec,
    UsernameTokenAuthSpec,
    render_template,
)

HARDENED = zeep.Settings(
    forbid_dtd=True, forbid_entities=True, forbid_external=True, xml_huge_tree=False, strict=True
)
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
_FAULT_STATUS_HEADER = "x-ip-soap-fault-status"
_SOAP_ENVELOPES = (
    "http://schemas.xmlsoap.org/soap/envelope/",  # SOAP 1.1
    "http://www.w3.org/2003/05/soap-envelope",  # SOAP 1.2
)
_MAX_WSDL_BYTES = 10_000_000


# -- errors -------------------------------------------------------------------------------------------
class XmlSecurityError(ConnectorError):
    """A document we refuse to parse: a DTD, an entity declaration, or a reference to a remote document."""


class ResponseTooLargeError(ConnectorError):
    """A response larger than the system's `max_response_bytes`; refused before it is parsed."""


class SoapFaultError(ApiError):
    """A SOAP Fault: `code` is the fault code (`soapenv:Server.userException`, `env:Sender`), `detail_codes`
    the vendor's codes from the detail (`INVALID_LOGIN_ATTEMPT`, `WS_REQUEST_BLOCKED`)."""

    def __init__(self, system: str, message: str, *, code: str, fault_message: str, detail_codes: list[str]) -> None:
        self.code = code
        self.fault_message = fault_message
        self.detail_codes = detail_codes
        super().__init__(system, message, status=500)


# -- hardened XML ----------------------------------------------------------------------------------------
_BOMS = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xfe\xff", "utf-16-be"),
         (b"\xff\xfe", "utf-16-le"))
# XML 1.0 Appendix F: without a byte order mark, the zero bytes around the first `<` (or whitespace) give the width
_ZERO_PATTERNS = {(True, True, True, False): "utf-32-be", (False, True, True, True): "utf-32-le",
                  (True, False, True, False): "utf-16-be", (False, True, False, True): "utf-16-le"}


def _as_utf8(content: bytes) -> bytes:
    """The document as UTF-8 for the prolog check, whatever width it is encoded in (libxml2 reads UTF-16 and UTF-32
    with or without a byte order mark). Undecodable bytes become U+FFFD: this only looks for `<!DOCTYPE`; the parser
    rejects the broken text afterwards."""
    for bom, codec in _BOMS:
        if content.startswith(bom):
            return content[len(bom):].decode(codec, "replace").encode("utf-8")
    codec = _ZERO_PATTERNS.get(tuple(byte == 0 for byte in content[:4])) if len(content) >= 4 else None
    return content.decode(codec, "replace").encode("utf-8") if codec else content


def _starts_like_xml(content: bytes) -> bool:
    """Whether an error answer is XML (a fault to read), in any encoding and after any byte order mark."""
    return _as_utf8(content[:64]).removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"<"


def _declares_dtd(content: bytes) -> bool:
    """Whether the prolog (before the root element) holds a `<!DOCTYPE`. Checked on the bytes before any parser
    runs: libxml2 starts work on entity declarations while it parses, before zeep could look at the doctype."""
    content = _as_utf8(content)
    position, size = 0, len(content)
    while position < size:
        if content[position:position + 1].isspace() or content[position:position + 3] == b"\xef\xbb\xbf":
            position += 3 if content[position:position + 3] == b"\xef\xbb\xbf" else 1
        elif content.startswith(b"<?", position):
            end = content.find(b"?>", position)
            position = size if end < 0 else end + 2
        elif content.startswith(b"<!--", position):
            end = content.find(b"-->", position)
            position = size if end < 0 else end + 3
        else:
            return content.startswith(b"<!DOCTYPE", position) or content.startswith(b"<!ENTITY", position)
    return False


def refuse_dtd(content: bytes, *, system: str, where: str) -> None:
    if _declares_dtd(content):
        raise XmlSecurityError(
            system,
            f"{where}: refused a document that declares a DTD or entities. SOAP never needs one, and expanding it "
            "could exhaust memory (billion laughs) or read local files; nothing was parsed or committed. The "
            "server is misconfigured or hostile: report it to its owner.",
        )


def parse_untrusted(content: bytes, *, system: str, where: str) -> etree._Element:
    """Parse a server's XML with zeep's hardened settings; refuse what could expand, fetch or read files."""
    refuse_dtd(content, system=system, where=where)
    try:
        return parse_xml(content, None, settings=HARDENED)
    except (zeep.exceptions.DTDForbidden, zeep.exceptions.EntitiesForbidden) as exc:
        raise XmlSecurityError(
            system,
            f"{where}: refused a document that declares a DTD or entities ({type(exc).__name__}: {exc}). SOAP never "
            "needs one, and expanding it could exhaust memory (billion laughs) or read local files; nothing "
            "was parsed or committed. The server is misconfigured or hostile: report it to its owner.",
        ) from exc
    except zeep.exceptions.ExternalReferenceForbidden as exc:
        raise XmlSecurityError(
            system, f"{where}: refused a document that references a remote resource ({exc}); nothing was fetched."
        ) from exc
    except zeep.exceptions.XMLSyntaxError as exc:
        raise MalformedPageError(
            system, f"{where}: the answer is not well-formed XML ({exc}). Nothing from this read was committed."
        ) from exc


@dataclass(frozen=True)
class FaultInfo:
    code: str
    message: str
    detail_codes: list[str]


def read_fault(root: etree._Element) -> FaultInfo | None:
    """The Fault of a SOAP 1.1 or 1.2 envelope, with the vendor's codes from its detail, or None."""
    for ns in _SOAP_ENVELOPES:
        fault = root.find(f"{{{ns}}}Body/{{{ns}}}Fault")
        if fault is None:
            continue
        if ns == _SOAP_ENVELOPES[0]:
            code = fault.findtext("faultcode") or ""
            message = fault.findtext("faultstring") or ""
            detail = fault.find("detail")
        else:
            code = fault.findtext(f"{{{ns}}}Code/{{{ns}}}Value") or ""
            sub = fault.findtext(f"{{{ns}}}Code/{{{ns}}}Subcode/{{{ns}}}Value")
            code = f"{code}/{sub}" if sub else code
            message = fault.findtext(f"{{{ns}}}Reason/{{{ns}}}Text") or ""
            detail = fault.find(f"{{{ns}}}Detail")
        codes: list[str] = []
        if detail is not None:
            for node in detail.iter():
                if not isinstance(node.tag, str):
                    continue
                local = etree.QName(node).localname
                if node is not detail and node.getparent() is detail:
                    codes.append(local)
                if local == "code" and node.text:
                    codes.append(node.text.strip())
        return FaultInfo(code.strip(), message.strip(), codes)
    return None


class GuardTransport(httpx.BaseTransport):
    """Beneath `HttpClient`: caps the response size while it streams in, and classifies SOAP faults (a throttle
    becomes 429 so the retry policy backs off; any other fault becomes a readable answer, not a retried 500)."""

    def __init__(self, inner: httpx.BaseTransport, *, system: str, max_bytes: int, transient_faults: tuple[str, ...],
                 env_prefix: str = "SOAP"):
        self.inner = inner
        self.system = system
        self.env_prefix = env_prefix
        self.max_bytes = max_bytes
        self.transient = {code.lower().split(":")[-1] for code in transient_faults}
        self._rebuild: Callable[[], bytes] | None = None
        self._attempts = 0

    def sign_each_attempt(self, rebuild: Callable[[], bytes] | None) -> None:
        """A retried attempt gets a freshly built envelope: a TBA passport or a UsernameToken digest carries a
        single-use nonce and a timestamp, so resending the first attempt's bytes would be refused as a replay."""
        self._rebuild, self._attempts = rebuild, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._rebuild is not None:
            if self._attempts:
                content = self._rebuild()
                headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
                request = httpx.Request(request.method, request.url, headers=headers, content=content)
            self._attempts += 1
        request.headers["Accept-Encoding"] = "identity"  # so the cap below counts the bytes we will parse
        response = self.inner.handle_request(request)
        where = f"{self.system} {request.method} {request.url.path}"
        try:
            encoding = response.headers.get("content-encoding", "identity").lower()
            if encoding not in ("", "identity"):
                raise MalformedPageError(
                    self.system, f"{where}: answered with Content-Encoding {encoding!r} although we asked for "
                    "identity; compressed SOAP answers are refused because their size cannot be capped."
                )
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise self._too_large(where, int(declared))
            chunks, size = [], 0
            for chunk in response.stream:  # type: ignore[union-attr]
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._too_large(where, size)
                chunks.append(chunk)
        finally:
            response.close()
        body = b"".join(chunks)
        status, headers = response.status_code, [(k, v) for k, v in response.headers.items()
                                                 if k.lower() not in ("content-length", "transfer-encoding")]
        # 500 (SOAP 1.1, SOAP 1.2 Receiver) and 400 (SOAP 1.2 Sender) are how faults travel; a 502/503/504 is a
        # gateway's or server's transient answer whatever its body, and stays retryable as for REST.
        if status in (400, 500) and _starts_like_xml(body):
            fault = read_fault(parse_untrusted(body, system=self.system, where=where))
            if fault is not None:
                names = {fault.code.lower(), *(c.lower() for c in fault.detail_codes)}
                names |= {part.split(":")[-1] for name in list(names) for part in name.split("/")}
                if names & self.transient:
                    status = 429
                else:
                    headers.append((_FAULT_STATUS_HEADER, str(status)))
                    status = 200
        return httpx.Response(status, headers=headers, content=body, request=request)

    def _too_large(self, where: str, size: int) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            self.system,
            f"{where}: the answer is larger than {self.max_bytes} bytes (at least {size}); refused before parsing. "
            f"Lower the page size ({self.env_prefix}_PAGE_SIZE) or raise the cap "
            f"({self.env_prefix}_MAX_RESPONSE_BYTES) if such pages are expected.",
        )

    def close(self) -> None:
        self.inner.close()


# -- WSDL loading ----------------------------------------------------------------------------------------
def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WsdlTransport(zeep.Transport):
    """zeep's loader transport, narrowed: the configured WSDL itself, files beside it, loopback URLs. Nothing
    else is ever fetched, and every document is size-capped."""

    def __init__(self, initial: str, system: str) -> None:
        super().__init__(cache=None, timeout=30, operation_timeout=30)
        self.initial = initial
        self.system = system
        remote = initial.startswith(("http://", "https://"))
        self.root = None if remote else Path(initial.removeprefix("file://")).resolve().parent

    def load(self, url: str) -> bytes:
        if url.startswith(("http://", "https://")):
            if url != self.initial and not _is_loopback(url):
                raise _remote_import(self.system, self.initial, url)
            with httpx.stream("GET", url, timeout=30, follow_redirects=False) as response:
                response.raise_for_status()
                content = _capped(response.iter_bytes(), _MAX_WSDL_BYTES, self.system, url)
            refuse_dtd(content, system=self.system, where=f"WSDL {url}")
            return content
        path = Path(url.removeprefix("file://")).resolve()
        if self.root is not None and path != Path(self.initial).resolve() and self.root not in path.parents:
            raise XmlSecurityError(
                self.system, f"WSDL {self.initial} imports {path}, outside its folder; only files next to the "
                "WSDL are read."
            )
        if path.stat().st_size > _MAX_WSDL_BYTES:
            raise ResponseTooLargeError(self.system, f"{path} is larger than {_MAX_WSDL_BYTES} bytes")
        content = path.read_bytes()
        refuse_dtd(content, system=self.system, where=f"WSDL {path}")
        return content


def _capped(chunks: Iterator[bytes], limit: int, system: str, url: str) -> bytes:
    out, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise ResponseTooLargeError(system, f"{url} is larger than {limit} bytes; refused")
        out.append(chunk)
    return b"".join(out)


def _remote_import(system: str, wsdl: str, url: str) -> XmlSecurityError:
    return XmlSecurityError(
        system,
        f"WSDL {wsdl} imports {url}, a remote document; remote imports are refused (a WSDL is untrusted input, "
        "and fetching from it would let it reach any host). Download the imported file next to the WSDL and "
        "reference it by a relative path.",
    )


def wsdl_location(system_name: str, soap: SoapSystem, environ: Mapping[str, str] | None = None) -> str:
    """`<SYSTEM>_WSDL` (a path or URL) overrides the spec's WSDL; `package:` paths are inside this package."""
    env = os.environ if environ is None else environ
    location = env.get(f"{system_name.upper()}_WSDL") or soap.wsdl
    if location.startswith("package:"):
        return str(_PACKAGE_ROOT / location.removeprefix("package:"))
    return location


@lru_cache(maxsize=16)
def load_wsdl(location: str, system: str = "SOAP") -> zeep.Client:
    """Parse a WSDL once per process (it never changes while we run) with the hardened settings."""
    try:
        return zeep.Client(location, transport=WsdlTransport(location, system), settings=HARDENED)
    except zeep.exceptions.ExternalReferenceForbidden as exc:
        url = str(exc).split("'")[1] if "'" in str(exc) else str(exc)
        raise _remote_import(system, location, url) from exc
    except (zeep.exceptions.DTDForbidden, zeep.exceptions.EntitiesForbidden) as exc:
        raise XmlSecurityError(system, f"WSDL {location} declares a DTD or entities ({exc}); refused.") from exc
    except (OSError, httpx.HTTPError) as exc:
        raise ConfigurationError(f"{system}: cannot read the WSDL {location}: {exc}") from exc


# -- auth ------------------------------------------------------------------------------------------------
def token_passport(
    account: str, consumer_key: str, consumer_secret: str, token: str, token_secret: str,
    *, nonce: str | None = None, timestamp: int | None = None,
) -> dict[str, Any]:
    """NetSuite TBA: HMAC-SHA256 over `account&consumerKey&token&nonce&timestamp` with the key
    `consumerSecret&tokenSecret`, base64. A fresh nonce and timestamp per request: NetSuite refuses a reused
    nonce and a stale timestamp, so a retried request must be signed again (it is: this runs per attempt)."""
    nonce = nonce or secrets.token_hex(16)
    timestamp = int(time.time()) if timestamp is None else timestamp
    base = "&".join([account, consumer_key, token, nonce, str(timestamp)])
    key = f"{consumer_secret}&{token_secret}".encode()
    signature = base64.b64encode(hmac.new(key, base.encode(), hashlib.sha256).digest()).decode()
    return {
        "account": account, "consumerKey": consumer_key, "token": token, "nonce": nonce, "timestamp": timestamp,
        "signature": {"_value_1": signature, "algorithm": "HMAC-SHA256"},
    }


# -- the client ------------------------------------------------------------------------------------------
def to_plain(value: Any) -> Any:
    """zeep objects → JSON-ready values: datetimes as ISO 8601, decimals as numbers when exact."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, etree._Element):
        return etree.tostring(value, encoding="unicode")
    return value


class SoapClient:
    """One SOAP system, resolved: its WSDL binding, its endpoint, its SOAP-level auth, over an `HttpClient`."""

    def __init__(self, resolved: ResolvedSystem, http: HttpClient, zeep_client: zeep.Client,
                 guard: GuardTransport | None = None) -> None:
        soap = resolved.system.soap
        assert soap is not None
        self.resolved = resolved
        self.soap = soap
        self.http = http
        self.zeep = zeep_client
        service = zeep_client.bind(soap.service, soap.port) if soap.service else zeep_client.service
        self.binding = service._binding
        self.title = resolved.system.title
        self.guard = guard

    @property
    def requests_sent(self) -> int:
        return self.http.requests_sent

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SoapClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building ------------------------------------------------------------------------------------
    def materialize(self, value: Any) -> Any:
        """Template output → zeep values: `{"_type": "{ns}Name", ...}` becomes an instance of that XSD type."""
        if isinstance(value, Mapping):
            fields = {k: self.materialize(v) for k, v in value.items() if k != "_type"}
            if "_type" in value:
                try:
                    return self.zeep.get_type(value["_type"])(**fields)
                except (LookupError, TypeError, zeep.exceptions.Error) as exc:
                    raise ConfigurationError(f"{self.title}: cannot build {value['_type']}: {exc}") from exc
            return fields
        if isinstance(value, list):
            return [self.materialize(v) for v in value]
        return value

    def _auth_headers(self) -> dict[str, Any]:
        auth, values = self.soap.auth, self.resolved.values
        if isinstance(auth, TokenPassportAuthSpec):
            return {auth.header: token_passport(
                values[auth.account], values[auth.consumer_key], values[auth.consumer_secret],
                values[auth.token], values[auth.token_secret])}
        return {}

    def envelope(self, operation: str, arguments: Mapping[str, Any], soap_headers: Mapping[str, Any]) -> tuple[
            bytes, dict[str, str]]:
        kwargs = {k: self.materialize(v) for k, v in arguments.items()}
        headers = {**{k: self.materialize(v) for k, v in soap_headers.items()}, **self._auth_headers()}
        if headers:
            kwargs["_soapheaders"] = headers
        try:
            envelope, http_headers = self.binding._create(operation, (), kwargs, client=self.zeep)
        except (TypeError, ValueError, zeep.exceptions.Error) as exc:
            raise ConfigurationError(f"{self.title}: cannot build the {operation} request: {exc}") from exc
        auth = self.soap.auth
        if isinstance(auth, UsernameTokenAuthSpec):
            token = UsernameToken(self.resolved.values[auth.username], self.resolved.values[auth.password],
                                  use_digest=auth.digest)
            envelope, http_headers = token.apply(envelope, http_headers)
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8"), dict(http_headers)

    # -- calling -------------------------------------------------------------------------------------
    def call(
        self, operation: str, arguments: Mapping[str, Any] | None = None,
        soap_headers: Mapping[str, Any] | None = None, *, where: str = "",
    ) -> Any:
        """Send one operation (retried like any request) and return its answer as plain dicts and lists."""
        where = where or f"{self.resolved.system.name} {operation}"
        body, http_headers = self.envelope(operation, arguments or {}, soap_headers or {})
        if self.guard is not None:
            self.guard.sign_each_attempt(lambda: self.envelope(operation, arguments or {}, soap_headers or {})[0])
        try:
            response = self.http.request("POST", self.soap.endpoint_path, content=body, headers=http_headers)
        finally:
            if self.guard is not None:
                self.guard.sign_each_attempt(None)
        refuse_dtd(response.content, system=self.title, where=where)
        if _FAULT_STATUS_HEADER in response.headers:  # classified as a fault by GuardTransport
            raise self._fault_error(where, response.content)
        status = response.status_code
        reply = SimpleNamespace(status_code=status, headers=response.headers, content=response.content,
                                encoding="utf-8")
        try:
            result = self.binding.process_reply(self.zeep, self.binding.get(operation), reply)
        except zeep.exceptions.Fault as fault:
            raise self._fault_error(where, response.content) from fault
        except (zeep.exceptions.DTDForbidden, zeep.exceptions.EntitiesForbidden,
                zeep.exceptions.ExternalReferenceForbidden):
            parse_untrusted(response.content, system=self.title, where=where)  # raises the explained error
            raise
        except (zeep.exceptions.TransportError, zeep.exceptions.XMLSyntaxError, zeep.exceptions.ValidationError,
                zeep.exceptions.XMLParseError) as exc:
            # zeep puts the whole answer into some of these messages (`Content: b'…'`): keep only its reason, so a
            # hostile multi-megabyte answer is never copied into logs, run metadata and alerts
            reason = str(exc).split("\nContent:", 1)[0]
            reason = reason if len(reason) <= 300 else reason[:297] + "..."
            raise MalformedPageError(
                self.title, f"{where}: the answer is not a valid {operation} response ({reason}). Body starts: "
                f"{response.text[:240]!r}. Nothing from this read was committed."
            ) from exc
        return to_plain(zeep.helpers.serialize_object(result, dict))

    def _fault_error(self, where: str, content: bytes) -> SoapFaultError:
        info = read_fault(parse_untrusted(content, system=self.title, where=where)) or FaultInfo("", "", [])
        codes = [c for c in info.detail_codes if c.isupper() or c.endswith("Fault")]
        hint = f" {self.resolved.system.credential_hint()}" if any(
            "LOGIN" in c or "AUTH" in c.upper() for c in [info.code, *codes]) else ""
        return SoapFaultError(
            self.title,
            f"{where}: {self.title} answered with a SOAP fault {info.code or '(no code)'}"
            f"{' [' + ', '.join(codes) + ']' if codes else ''}: {info.message or '(no message)'}.{hint}",
            code=info.code, fault_message=info.message, detail_codes=codes,
        )


def build_soap_client(resolved: ResolvedSystem, *, log: Any = None, transport: httpx.BaseTransport | None = None,
                      **kwargs: Any) -> SoapClient:
    """The SOAP counterpart of `runtime.build_client`: same retry budget, rate limit and logs."""
    soap = resolved.system.soap
    if soap is None:
        raise ConfigurationError(f"{resolved.system.name} is not a SOAP system")
    env_cap = os.environ.get(f"{resolved.system.env_prefix}_MAX_RESPONSE_BYTES")
    guard = GuardTransport(
        transport or httpx.HTTPTransport(), system=resolved.system.title,
        max_bytes=int(env_cap) if env_cap else soap.max_response_bytes, transient_faults=soap.transient_faults,
        env_prefix=resolved.system.env_prefix,
    )
    http = build_client(resolved, log=log, transport=guard, **kwargs)
    zeep_client = load_wsdl(wsdl_location(resolved.system.name, soap), resolved.system.title)
    return SoapClient(resolved, http, zeep_client, guard)


# -- reading ---------------------------------------------------------------------------------------------
def render_soap(value: Any, variables: dict[str, Any], *, where: str) -> Any:
    """`render_template`, except for `_type` values: a Clark-notation type name `{urn:…}Name` is not a template."""
    if isinstance(value, dict):
        return {k: v if k == "_type" else render_soap(v, variables, where=where) for k, v in value.items()}
    if isinstance(value, list):
        return [render_soap(v, variables, where=where) for v in value]
    return render_template(value, variables, where=where)


def _check_success(result: Any, success_path: str | None, messages_path: str | None, title: str,
                   where: str) -> None:
    if success_path is None or json_path(result, success_path) in (True, "true", None):
        return
    details = json_path(result, messages_path) if messages_path else None
    raise ApiError(title, f"{where}: {title} reported a failure: {str(details)[:500] if details else result}")


def _as_records(found: Any) -> list[dict[str, Any]] | None:
    if found is None:
        return []
    if isinstance(found, dict):
        return [found]
    if isinstance(found, list) and all(isinstance(r, dict) for r in found):
        return found
    return None


def read_soap_pages(client: SoapClient, resolved: ResolvedSystem, stream: Stream, window: ReadWindow
                    ) -> Iterator[Page]:
    """A SOAP stream, page by page: the first call, then follow-ups until the total page count is reached.

    Pages are yielded as they arrive and never accumulated; the loop is bounded by `max_pages` and by the page
    count the server announced, so a server that never says 'last page' cannot keep us reading."""
    call = stream.soap
    if call is None:
        raise ConfigurationError(f"{resolved.system.name}/{stream.name} has no `soap` call")
    where = f"{resolved.system.name}/{stream.name}"
    paginator = call.paginator
    variables = {**template_variables(resolved, stream, window), "page_index": paginator.start}
    incremental = window.cursor is not None and call.incremental_arguments is not None
    template = call.incremental_arguments if incremental else call.arguments
    operation = call.operation
    address = f"{client.http.base_url.rstrip('/')}{client.soap.endpoint_path}"
    stale = StalePageGuard(client.http, client.title, where)  # a lagging backend answers the last page again
    for number in range(1, stream.max_pages + 1):
        page_where = f"{where} page {number} ({operation})"
        arguments = render_soap(template, variables, where=where)
        headers = render_soap(call.soap_headers, variables, where=where)
        asked_again = 0
        while True:
            result = client.call(operation, arguments, headers, where=page_where)
            _check_success(result, call.success_path, call.messages_path, client.title, page_where)
            records = _as_records(json_path(result, call.records_path))
            if records is None:
                raise MalformedPageError(client.title, f"{page_where}: {call.records_path!r} is not a list of "
                                         "records")
            problem = primary_key_problem(records, stream.primary_key)
            if problem:
                raise MalformedPageError(client.title, f"{page_where} {problem}")
            shown = f"{address}#{operation} page index {variables['page_index']}"
            if stale.fresh(records, number, shown, asked_again):
                break
            asked_again += 1
        yield Page(number, f"{address}#{operation}", records)
        stale.keep(records)
        if paginator.type == "single":
            return
        total = json_path(result, paginator.total_pages_path) if paginator.total_pages_path else None
        if total is None or int(variables["page_index"]) >= int(total) or not records:
            return
        if number == 1:
            for name, path in paginator.capture.items():
                captured = json_path(result, path)
                if captured in (None, ""):
                    raise MalformedPageError(client.title, f"{page_where}: the answer has no {path!r} to continue")
                variables[name] = captured
            if paginator.next_operation:
                operation = paginator.next_operation
                template = paginator.next_arguments or {}
        variables["page_index"] = int(variables["page_index"]) + 1
    raise PaginationError(
        client.title, f"{where}: more than {stream.max_pages} pages; stopping. Raise the stream's max_pages if "
        "this volume is real, or read a narrower window."
    )


# -- writing ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SoapWriteResult:
    key: str
    external_id: str | None
    body: Any


def _substitute_record(template: Any, record: Any) -> Any:
    if template == "{record}":
        return record
    if isinstance(template, dict):
        return {k: _substitute_record(v, record) for k, v in template.items()}
    if isinstance(template, list):
        return [_substitute_record(v, record) for v in template]
    return template


def send_soap_write(client: SoapClient, writer: SoapWriter | str, record: Mapping[str, Any]) -> SoapWriteResult:
    """One write keyed by the writer's business key: a retry of the same record (by us, or by the transport
    after a dropped connection) finds the record it created instead of adding a second one."""
    if isinstance(writer, str):
        writer = client.soap.writer(writer)
    key = record.get(writer.key_field)
    if key in (None, ""):
        raise ValueError(f"{writer.name}: the record needs its business key {writer.key_field!r}")
    body: dict[str, Any] = dict(record)
    if writer.record_type:
        body = {"_type": writer.record_type, **body}
    arguments = _substitute_record(writer.arguments, body)
    headers = render_soap(writer.soap_headers, dict(client.resolved.values), where=writer.name)
    where = f"{client.resolved.system.name} writer {writer.name} ({key})"
    result = client.call(writer.operation, arguments, headers, where=where)
    _check_success(result, writer.success_path, writer.messages_path, client.title, where)
    found = json_path(result, writer.id_path) if writer.id_path else None
    return SoapWriteResult(str(key), None if found is None else str(found), result)
