"""One loopback HTTP server that answers as the public API documentation of each DNS
provider describes (Cloudflare v4, DigitalOcean v2, Porkbun v3, GoDaddy v1, Route 53
2013-04-01, PowerDNS), keeping records in memory and recording every request.

Base URLs: http://127.0.0.1:PORT/<prefix> with prefix cloudflare, digitalocean,
porkbun, godaddy, route53, powerdns."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import itertools
import json
import re
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

VALID = {
    "cloudflare": {"api_token": "cf-token-0123456789"},
    "digitalocean": {"auth_token": "dop_v1_0123456789abcdef"},
    "porkbun": {"api_key": "pk1_0123456789", "api_secret": "sk1_0123456789"},
    "godaddy": {"api_token": "gd-key-0123456789", "api_secret": "gd-secret-0123456789"},
    "route53": {"access_key_id": "AKIAEXAMPLE012345", "secret_access_key": "aws-secret-0123456789/abcdef"},
    "powerdns": {"api_key": "pdns-key-0123456789", "server_id": "localhost"},
}
ZONE = "example.com"
R53 = "https://route53.amazonaws.com/doc/2013-04-01/"
R53_ZONE_ID = "Z1D633PJN98FT9"


class Api:
    def __init__(self) -> None:
        self.records: dict[str, list[dict]] = {kind: [] for kind in VALID}
        self.requests: list[tuple[str, str, str]] = []  # (kind, method, path)
        self.lock = threading.Lock()
        self.ids = itertools.count(1000)
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                kind, _, rest = parts.path.lstrip("/").partition("/")
                with api.lock:
                    api.requests.append((kind, self.command, "/" + rest))
                    status, headers, data = getattr(api, kind)(self, "/" + rest, parse_qs(parts.query), body)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{kind}"

    def values(self, kind: str, fqdn: str) -> list[str]:
        return sorted(r["content"] for r in self.records[kind] if r["name"] == fqdn)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- helpers ---------------------------------------------------------------------

    @staticmethod
    def _json(status: int, value) -> tuple[int, dict, bytes]:
        return status, {"Content-Type": "application/json"}, json.dumps(value).encode()

    def _add(self, kind: str, name: str, content: str, ttl: int) -> dict:
        record = {"id": str(next(self.ids)), "name": name, "content": content, "ttl": ttl}
        self.records[kind].append(record)
        return record

    # --- Cloudflare: Bearer token; /zones, /zones/{id}/dns_records -------------------

    def cloudflare(self, req, path, query, body):
        if req.headers.get("Authorization") != f"Bearer {VALID['cloudflare']['api_token']}":
            return self._json(
                403,
                {
                    "success": False,
                    "errors": [{"code": 10000, "message": "Authentication error"}],
                    "messages": [],
                    "result": None,
                },
            )
        zone_id = "023e105f4ecef8ad9ca31a8372d0c353"
        if path == "/zones" and req.command == "GET":
            found = [{"id": zone_id, "name": ZONE, "status": "active"}] if query.get("name") == [ZONE] else []
            return self._json(
                200,
                {
                    "success": True,
                    "errors": [],
                    "messages": [],
                    "result": found,
                    "result_info": {"page": 1, "per_page": 20, "count": len(found)},
                },
            )
        match = re.fullmatch(rf"/zones/{zone_id}/dns_records(?:/(\w+))?", path)
        if not match:
            return self._json(404, {"success": False, "errors": [{"code": 7003, "message": "Could not route"}]})
        if req.command == "GET":
            found = [
                dict(r, type="TXT", content=r["content"])
                for r in self.records["cloudflare"]
                if r["name"] == query.get("name", [""])[0]
            ]
            return self._json(200, {"success": True, "errors": [], "messages": [], "result": found})
        if req.command == "POST":
            data = json.loads(body)
            assert data["type"] == "TXT" and data["ttl"] >= 60
            record = self._add("cloudflare", data["name"], data["content"], data["ttl"])
            return self._json(200, {"success": True, "errors": [], "messages": [], "result": dict(record, type="TXT")})
        if req.command == "DELETE":
            self.records["cloudflare"] = [r for r in self.records["cloudflare"] if r["id"] != match.group(1)]
            return self._json(200, {"success": True, "errors": [], "messages": [], "result": {"id": match.group(1)}})
        return self._json(405, {})

    # --- DigitalOcean: Bearer token; /domains/{domain}/records ------------------------

    def digitalocean(self, req, path, query, body):
        if req.headers.get("Authorization") != f"Bearer {VALID['digitalocean']['auth_token']}":
            return self._json(401, {"id": "unauthorized", "message": "Unable to authenticate you."})
        match = re.fullmatch(r"/domains/([^/]+)/records(?:/(\d+))?", path)
        if not match or match.group(1) != ZONE:
            return self._json(
                404, {"id": "not_found", "message": "The resource you were accessing could not be found."}
            )
        if req.command == "GET":
            name = query.get("name", [""])[0]  # the API filters by the full name
            found = [
                {
                    "id": int(r["id"]),
                    "type": "TXT",
                    "name": r["name"].removesuffix("." + ZONE),
                    "data": r["content"],
                    "ttl": r["ttl"],
                }
                for r in self.records["digitalocean"]
                if r["name"] == name
            ]
            return self._json(200, {"domain_records": found, "links": {}, "meta": {"total": len(found)}})
        if req.command == "POST":
            data = json.loads(body)
            assert data["type"] == "TXT" and data["ttl"] >= 30 and not data["name"].endswith(ZONE)
            name = ZONE if data["name"] == "@" else f"{data['name']}.{ZONE}"
            record = self._add("digitalocean", name, data["data"], data["ttl"])
            return self._json(
                201,
                {
                    "domain_record": {
                        "id": int(record["id"]),
                        "type": "TXT",
                        "name": data["name"],
                        "data": data["data"],
                        "ttl": data["ttl"],
                    }
                },
            )
        if req.command == "DELETE":
            self.records["digitalocean"] = [r for r in self.records["digitalocean"] if r["id"] != match.group(2)]
            return 204, {}, b""
        return self._json(405, {})

    # --- Porkbun: keys in the JSON body; POST everything ------------------------------

    def porkbun(self, req, path, query, body):
        data = json.loads(body or b"{}")
        if (data.get("apikey"), data.get("secretapikey")) != (
            VALID["porkbun"]["api_key"],
            VALID["porkbun"]["api_secret"],
        ):
            return self._json(400, {"status": "ERROR", "message": "Invalid API key. (002)"})
        if match := re.fullmatch(r"/dns/create/([^/]+)", path):
            if match.group(1) != ZONE:
                return self._json(400, {"status": "ERROR", "message": "Invalid domain."})
            assert data["type"] == "TXT" and int(data["ttl"]) >= 600
            name = f"{data['name']}.{ZONE}" if data["name"] else ZONE
            record = self._add("porkbun", name, data["content"], int(data["ttl"]))
            return self._json(200, {"status": "SUCCESS", "id": int(record["id"])})
        if match := re.fullmatch(r"/dns/retrieveByNameType/([^/]+)/TXT(?:/(.*))?", path):
            if match.group(1) != ZONE:
                return self._json(400, {"status": "ERROR", "message": "Invalid domain."})
            name = f"{match.group(2)}.{ZONE}" if match.group(2) else ZONE
            found = [
                {
                    "id": r["id"],
                    "name": r["name"],
                    "type": "TXT",
                    "content": r["content"],
                    "ttl": str(r["ttl"]),
                    "prio": "0",
                    "notes": "",
                }
                for r in self.records["porkbun"]
                if r["name"] == name
            ]
            return self._json(200, {"status": "SUCCESS", "records": found})
        if match := re.fullmatch(r"/dns/delete/([^/]+)/(\d+)", path):
            self.records["porkbun"] = [r for r in self.records["porkbun"] if r["id"] != match.group(2)]
            return self._json(200, {"status": "SUCCESS"})
        return self._json(404, {"status": "ERROR", "message": "Unknown endpoint"})

    # --- GoDaddy: sso-key; GET/PUT/DELETE /v1/domains/{domain}/records/TXT/{name} -----

    def godaddy(self, req, path, query, body):
        key, secret = VALID["godaddy"]["api_token"], VALID["godaddy"]["api_secret"]
        if req.headers.get("Authorization") != f"sso-key {key}:{secret}":
            return self._json(
                401,
                {"code": "UNABLE_TO_AUTHENTICATE", "message": "Unauthorized : Could not authenticate API key/secret"},
            )
        match = re.fullmatch(r"/v1/domains/([^/]+)/records/TXT/([^/]+)", path)
        if not match or match.group(1) != ZONE:
            return self._json(
                404,
                {
                    "code": "UNKNOWN_DOMAIN",
                    "message": "The given domain is not registered, or does not have a zone file",
                },
            )
        name = ZONE if match.group(2) == "@" else f"{match.group(2)}.{ZONE}"
        mine = [r for r in self.records["godaddy"] if r["name"] == name]
        if req.command == "GET":
            return self._json(
                200, [{"data": r["content"], "name": match.group(2), "ttl": r["ttl"], "type": "TXT"} for r in mine]
            )
        self.records["godaddy"] = [r for r in self.records["godaddy"] if r["name"] != name]
        if req.command == "PUT":
            for item in json.loads(body):
                assert item["ttl"] >= 600
                self._add("godaddy", name, item["data"], item["ttl"])
            return 200, {}, b""
        return 204, {}, b""

    # --- Route 53: SigV4; XML ---------------------------------------------------------

    def _r53_signature_ok(self, req, path: str, body: bytes) -> bool:
        auth = req.headers.get("Authorization", "")
        match = re.fullmatch(
            r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/us-east-1/route53/aws4_request, "
            r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
            auth,
        )
        if not match or match.group(1) != VALID["route53"]["access_key_id"]:
            return False
        amz_date = req.headers["X-Amz-Date"]
        parts = urlsplit(req.path)
        pairs = sorted((k, v) for k, vs in parse_qs(parts.query, keep_blank_values=True).items() for v in vs)
        canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)
        signed = match.group(3).split(";")
        canonical = "\n".join(
            [
                req.command,
                parts.path,
                canonical_query,
                "".join(f"{h}:{req.headers[h].strip()}\n" for h in signed),
                match.group(3),
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{match.group(2)}/us-east-1/route53/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        key = ("AWS4" + VALID["route53"]["secret_access_key"]).encode()
        for part in (match.group(2), "us-east-1", "route53", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        fresh = (
            abs(
                datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
                - datetime.datetime.now(datetime.UTC)
            ).total_seconds()
            < 300
        )
        return hmac.compare_digest(expected, match.group(4)) and fresh

    def _xml(self, status: int, text: str):
        return status, {"Content-Type": "text/xml"}, ('<?xml version="1.0" encoding="UTF-8"?>\n' + text).encode()

    def route53(self, req, path, query, body):
        # The mount prefix is not part of what the client signed.
        if not self._r53_signature_ok(req, path.replace("/route53", "", 1), body):
            return self._xml(
                403,
                f'<ErrorResponse xmlns="{R53}"><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>'
                "<Message>The request signature we calculated does not match the signature you provided."
                "</Message></Error><RequestId>1</RequestId></ErrorResponse>",
            )
        if path == "/2013-04-01/hostedzonesbyname":
            zones = ""
            if query.get("dnsname") == [ZONE]:
                zones = (
                    f"<HostedZone><Id>/hostedzone/{R53_ZONE_ID}</Id><Name>{ZONE}.</Name>"
                    "<CallerReference>x</CallerReference><ResourceRecordSetCount>2</ResourceRecordSetCount></HostedZone>"
                )
            return self._xml(
                200,
                f'<ListHostedZonesByNameResponse xmlns="{R53}"><HostedZones>{zones}</HostedZones>'
                "<IsTruncated>false</IsTruncated><MaxItems>1</MaxItems></ListHostedZonesByNameResponse>",
            )
        if path == f"/2013-04-01/hostedzone/{R53_ZONE_ID}/rrset" and req.command == "GET":
            name = query["name"][0].rstrip(".")
            mine = [r for r in self.records["route53"] if r["name"] == name]
            sets = ""
            if mine:
                values = "".join(f'<ResourceRecord><Value>"{r["content"]}"</Value></ResourceRecord>' for r in mine)
                sets = (
                    f"<ResourceRecordSet><Name>{name}.</Name><Type>TXT</Type><TTL>{mine[0]['ttl']}</TTL>"
                    f"<ResourceRecords>{values}</ResourceRecords></ResourceRecordSet>"
                )
            return self._xml(
                200,
                f'<ListResourceRecordSetsResponse xmlns="{R53}"><ResourceRecordSets>{sets}'
                "</ResourceRecordSets><IsTruncated>false</IsTruncated><MaxItems>1</MaxItems>"
                "</ListResourceRecordSetsResponse>",
            )
        if path == f"/2013-04-01/hostedzone/{R53_ZONE_ID}/rrset/" and req.command == "POST":
            root = ET.fromstring(body)
            ns = {"r": R53}
            for change in root.iterfind(".//r:Change", ns):
                action = change.findtext("r:Action", namespaces=ns)
                rrset = change.find("r:ResourceRecordSet", ns)
                name = rrset.findtext("r:Name", namespaces=ns).rstrip(".")
                values = [v.text.strip('"') for v in rrset.iterfind(".//r:Value", ns)]
                current = sorted(r["content"] for r in self.records["route53"] if r["name"] == name)
                if action == "DELETE" and current != sorted(values):
                    return self._xml(
                        400,
                        f'<ErrorResponse xmlns="{R53}"><Error><Code>InvalidChangeBatch</Code>'
                        "<Message>Tried to delete resource record set but values do not match</Message>"
                        "</Error></ErrorResponse>",
                    )
                self.records["route53"] = [r for r in self.records["route53"] if r["name"] != name]
                if action == "UPSERT":
                    for value in values:
                        self._add("route53", name, value, int(rrset.findtext("r:TTL", namespaces=ns)))
            return self._xml(
                200,
                f'<ChangeResourceRecordSetsResponse xmlns="{R53}"><ChangeInfo><Id>/change/C1</Id>'
                "<Status>PENDING</Status><SubmittedAt>2026-01-01T00:00:00Z</SubmittedAt></ChangeInfo>"
                "</ChangeResourceRecordSetsResponse>",
            )
        return self._xml(
            404, f'<ErrorResponse xmlns="{R53}"><Error><Code>NoSuchHostedZone</Code></Error></ErrorResponse>'
        )

    # --- PowerDNS: X-API-Key; /api/v1/servers/{server}/zones/{zone} ------------------

    def powerdns(self, req, path, query, body):
        if req.headers.get("X-API-Key") != VALID["powerdns"]["api_key"]:
            return 401, {"Content-Type": "text/plain"}, b"Unauthorized"
        match = re.fullmatch(r"/api/v1/servers/localhost/zones/([^/]+)", path)
        if not match or match.group(1) != ZONE + ".":
            return self._json(404, {"error": f"Could not find domain '{match.group(1) if match else path}'"})
        if req.command == "GET":
            names = sorted({r["name"] for r in self.records["powerdns"]})
            rrsets = [
                {
                    "name": n + ".",
                    "type": "TXT",
                    "ttl": 60,
                    "comments": [],
                    "records": [
                        {"content": f'"{r["content"]}"', "disabled": False}
                        for r in self.records["powerdns"]
                        if r["name"] == n
                    ],
                }
                for n in names
            ]
            return self._json(200, {"id": ZONE + ".", "name": ZONE + ".", "kind": "Native", "rrsets": rrsets})
        if req.command == "PATCH":
            for rrset in json.loads(body)["rrsets"]:
                name = rrset["name"].rstrip(".")
                assert rrset["name"].endswith(".") and rrset["type"] == "TXT"
                self.records["powerdns"] = [r for r in self.records["powerdns"] if r["name"] != name]
                if rrset["changetype"] == "REPLACE":
                    for record in rrset["records"]:
                        assert record["content"].startswith('"')
                        self._add("powerdns", name, record["content"].strip('"'), rrset["ttl"])
            return 204, {}, b""
        return self._json(405, {"error": "Method not allowed"})


def start_provider_apis() -> Api:
    """The providers' APIs on a free loopback port, served by threads."""
    return Api()
