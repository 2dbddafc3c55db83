"""Sending one notification: the webhook (ProxyOS's JSON body, POSTed with requests, a
delivery id header that is the same on every attempt and an optional HMAC-SHA256
signature) and e-mail (smtplib: TLS from the start when `secure`, else STARTTLS when the
server offers it, as nodemailer does for ProxyOS; login when a user is set).

A failure raises `DeliveryError` with a message that holds neither the URL (a webhook URL
may carry a token) nor any credential."""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

import requests

from db.problem import Problem

from .channels import Smtp
from .settings import AlertSettings

DELIVERY_HEADER = "X-ProxyOS-Delivery"
SIGNATURE_HEADER = "X-ProxyOS-Signature"


class DeliveryError(Problem):
    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_webhook(url: str, delivery_id: str, body: str, settings: AlertSettings) -> int:
    """POST `body`; returns the status code (2xx), else raises DeliveryError."""
    data = body.encode()
    headers = {"Content-Type": "application/json", "User-Agent": "proxyos-workers", DELIVERY_HEADER: delivery_id}
    if settings.webhook_secret:
        headers[SIGNATURE_HEADER] = signature(settings.webhook_secret, data)
    try:
        response = requests.post(url, data=data, headers=headers, timeout=settings.timeout,
                                 verify=settings.ca_file or True, allow_redirects=False)
    except requests.Timeout:
        raise DeliveryError(f"webhook: no answer within {settings.timeout:g} s") from None
    except requests.exceptions.SSLError:
        raise DeliveryError("webhook: TLS handshake failed (certificate not trusted?)") from None
    except requests.ConnectionError:
        raise DeliveryError("webhook: could not connect") from None
    except requests.RequestException as exc:
        raise DeliveryError(f"webhook: request failed ({type(exc).__name__})") from None
    response.close()
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"webhook: answered HTTP {response.status_code}", response.status_code)
    return response.status_code


def email_message(smtp: Smtp, delivery_id: str, body: str) -> EmailMessage:
    payload = json.loads(body)
    detail = payload.get("detail")
    text = f"Alert {'resolved' if payload.get('event') == 'alert.resolved' else 'fired'}: {payload.get('message')}"
    if detail:
        text += "\n\nDetail:\n" + json.dumps(detail, indent=2)
    message = EmailMessage()
    message["Subject"] = f"[ProxyOS Alert] {payload.get('rule')}"
    message["From"] = smtp.from_
    message["To"] = ", ".join(smtp.to)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{delivery_id}@proxyos-workers>"
    message[DELIVERY_HEADER] = delivery_id
    message.set_content(text + "\n\n-- ProxyOS workers\n")
    return message


def send_email(smtp: Smtp, delivery_id: str, body: str, settings: AlertSettings) -> None:
    context = ssl.create_default_context(cafile=settings.ca_file)
    try:
        if smtp.secure:
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=settings.timeout, context=context)
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=settings.timeout)
        with client:
            client.ehlo()
            if not smtp.secure and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            if smtp.user:
                client.login(smtp.user, smtp.password)
            client.send_message(email_message(smtp, delivery_id, body), from_addr=smtp.from_, to_addrs=list(smtp.to))
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"smtp: login refused ({exc.smtp_code})") from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"smtp: the server answered {exc.smtp_code}") from None
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryError("smtp: every recipient was refused") from None
    except TimeoutError:
        raise DeliveryError(f"smtp: no answer within {settings.timeout:g} s") from None
    except ssl.SSLError:
        raise DeliveryError("smtp: TLS failed (certificate not trusted?)") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"smtp: {type(exc).__name__}") from None
