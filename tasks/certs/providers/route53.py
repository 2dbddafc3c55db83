"""Amazon Route 53 (REST API 2013-04-01, XML, Signature Version 4).
Credentials: {"access_key_id", "secret_access_key"} (optional "hosted_zone_id").

A TXT record set holds all values of a name: adding or removing one value reads the set
and writes it back with UPSERT (or DELETE for the last one)."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from ..errors import ProviderError
from .base import Provider

NS = "https://route53.amazonaws.com/doc/2013-04-01/"
TTL = 60
REGION, SERVICE = "us-east-1", "route53"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sigv4_headers(
    method: str,
    url: str,
    body: bytes,
    access_key: str,
    secret_key: str,
    now: datetime.datetime,
    region: str = REGION,
    service: str = SERVICE,
) -> dict[str, str]:
    """The Authorization and X-Amz-Date headers of AWS Signature Version 4."""
    parts = urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted(parse_qsl(parts.query, keep_blank_values=True))
    )
    headers = {"host": parts.netloc, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            quote(parts.path or "/", safe="/-_.~"),
            query,
            "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
            signed,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_key).encode(), day), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
        f"Signature={signature}",
        "X-Amz-Date": amz_date,
    }


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


class Route53(Provider):
    type = "route53"
    required = ("access_key_id", "secret_access_key")
    public = ("access_key_id", "hosted_zone_id")
    default_api_url = "https://route53.amazonaws.com"

    def __init__(self, credentials, **kwargs) -> None:
        super().__init__(credentials, **kwargs)
        self._zone_ids: dict[str, str] = {}
        if self.credentials.get("hosted_zone_id"):
            self._fixed_zone = str(self.credentials["hosted_zone_id"]).split("/")[-1]
        else:
            self._fixed_zone = None

    def _call(self, method: str, path: str, params: dict | None = None, body: bytes = b"", ok=(200,)):
        query = ("?" + urlencode(sorted(params.items()))) if params else ""
        url = self.api_url + path + query
        headers = sigv4_headers(
            method,
            url,
            body,
            self.credentials["access_key_id"],
            self.credentials["secret_access_key"],
            datetime.datetime.now(datetime.UTC),
        )
        if body:
            headers["Content-Type"] = "application/xml"
        response = self.http(method, path + query, data=body or None, headers=headers, ok=ok)
        return ET.fromstring(response.content) if response.content else None

    def explain(self, response) -> str:
        try:
            error = ET.fromstring(response.content).find(f".//{_q('Error')}")
            if error is not None:
                return f": {error.findtext(_q('Code'))} {error.findtext(_q('Message'))}"
        except ET.ParseError:
            pass
        return super().explain(response)

    def _zone_id(self, zone: str) -> str:
        if self._fixed_zone:
            return self._fixed_zone
        if zone not in self._zone_ids:
            root = self._call("GET", "/2013-04-01/hostedzonesbyname", {"dnsname": zone, "maxitems": "1"})
            for hosted in root.iter(_q("HostedZone")):
                if hosted.findtext(_q("Name"), "").rstrip(".").lower() == zone.lower():
                    self._zone_ids[zone] = hosted.findtext(_q("Id"), "").split("/")[-1]
                    break
            else:
                raise ProviderError(
                    f"route53: no hosted zone {zone} for DNS provider {self.name!r} (is it in this AWS account?)"
                )
        return self._zone_ids[zone]

    def _values(self, zone_id: str, fqdn: str) -> tuple[list[str], int]:
        root = self._call(
            "GET", f"/2013-04-01/hostedzone/{zone_id}/rrset", {"name": fqdn + ".", "type": "TXT", "maxitems": "1"}
        )
        for rrset in root.iter(_q("ResourceRecordSet")):
            name = rrset.findtext(_q("Name"), "").rstrip(".").lower()
            if name == fqdn.lower() and rrset.findtext(_q("Type")) == "TXT":
                values = [v.text.strip('"') for v in rrset.iter(_q("Value")) if v.text]
                return values, int(rrset.findtext(_q("TTL")) or TTL)
        return [], TTL

    def _change(self, zone_id: str, action: str, fqdn: str, values: list[str], ttl: int) -> None:
        ET.register_namespace("", NS)
        root = ET.Element(_q("ChangeResourceRecordSetsRequest"))
        change = ET.SubElement(ET.SubElement(ET.SubElement(root, _q("ChangeBatch")), _q("Changes")), _q("Change"))
        ET.SubElement(change, _q("Action")).text = action
        rrset = ET.SubElement(change, _q("ResourceRecordSet"))
        ET.SubElement(rrset, _q("Name")).text = fqdn + "."
        ET.SubElement(rrset, _q("Type")).text = "TXT"
        ET.SubElement(rrset, _q("TTL")).text = str(ttl)
        records = ET.SubElement(rrset, _q("ResourceRecords"))
        for value in values:
            ET.SubElement(ET.SubElement(records, _q("ResourceRecord")), _q("Value")).text = f'"{value}"'
        body = ET.tostring(root, xml_declaration=True, encoding="UTF-8")
        self._call("POST", f"/2013-04-01/hostedzone/{zone_id}/rrset/", body=body)

    def present(self, fqdn: str, zone: str, value: str) -> None:
        zone_id = self._zone_id(zone)
        values, ttl = self._values(zone_id, fqdn)
        if value not in values:
            self._change(zone_id, "UPSERT", fqdn, values + [value], ttl)

    def cleanup(self, fqdn: str, zone: str, value: str) -> None:
        zone_id = self._zone_id(zone)
        values, ttl = self._values(zone_id, fqdn)
        if value not in values:
            return
        rest = [v for v in values if v != value]
        if rest:
            self._change(zone_id, "UPSERT", fqdn, rest, ttl)
        else:
            self._change(zone_id, "DELETE", fqdn, values, ttl)


PROVIDER = Route53
