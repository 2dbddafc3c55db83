"""Answers that are not a success: JSON `{"error": message}` with the status, never a
secret or a stack trace (messages pass through tasks.redaction as a second line of defence)."""

from __future__ import annotations

import json
from typing import NoReturn

from aiohttp import web

from tasks.redaction import redact


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(body, default=str, sort_keys=True), status=status,
                        content_type="application/json", headers=headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": redact(message)}, status, headers)


class ApiError(Exception):
    """A request the API refuses: `status` and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers

    def response(self) -> web.Response:
        return error_response(self.status, self.message, self.headers)


def fail(status: int, message: str, headers: dict[str, str] | None = None) -> NoReturn:
    raise ApiError(status, message, headers)
