"""Errors the server reports to clients, each with a protocol-neutral status code.

One exception type carries a code name shared by both front ends; the gRPC
server maps it to a ``grpc.StatusCode`` and the HTTP server to a status
number, so a bad request gets the same meaning whichever protocol it used.
"""

from __future__ import annotations

from lightspeed.errors import LightspeedError

# code name -> HTTP status. The names are grpc.StatusCode member names.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 400,
    "RESOURCE_EXHAUSTED": 503,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
}


class ServeError(LightspeedError):
    """A request or repository problem, with the status code a client should see."""

    def __init__(self, code: str, message: str) -> None:
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown status code name {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


def invalid(message: str) -> ServeError:
    return ServeError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServeError:
    return ServeError("NOT_FOUND", message)


def unavailable(message: str) -> ServeError:
    return ServeError("UNAVAILABLE", message)
