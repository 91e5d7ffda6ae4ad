"""Errors answered in F&O's JSON shape, with the Infolog text of a write failure."""

from __future__ import annotations

from typing import Any

from ukg2d365.sandbox.d365.schema import AX_WRITE_EXCEPTION, ODATA_EXCEPTION, PATH_EXCEPTION, EntitySpec


class ODataError(Exception):
    """An error answered in F&O's JSON shape. status None means 'a write failure' (the service decides)."""

    def __init__(self, status: int | None, message: str, inner_message: str = "", inner_type: str = "",
                 code: str = "") -> None:
        super().__init__(inner_message or message)
        self.status = status
        self.message = message
        self.inner_message = inner_message
        self.inner_type = inner_type
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "innererror": {
            "message": self.inner_message, "type": self.inner_type, "stacktrace": ""}}}


def write_error(spec: EntitySpec, *infolog: str) -> ODataError:
    """F&O's write failure: the Infolog lines joined into innererror.message (note the final '..')."""
    inner = f"Write failed for table row of type '{spec.aot}'. Infolog: {'; '.join(infolog)}."
    return ODataError(None, "An error has occurred.", inner, AX_WRITE_EXCEPTION)


def odata_error(message: str, status: int = 400) -> ODataError:
    return ODataError(status, message, message, ODATA_EXCEPTION)


def not_found(segment: str) -> ODataError:
    msg = f"Resource not found for the segment '{segment}'."
    return ODataError(404, msg, msg, PATH_EXCEPTION)


def no_route(url: str) -> ODataError:
    return ODataError(404, f"No HTTP resource was found that matches the request URI '{url}'.",
                      "No route data was found for this request.", "")


def duplicate_error(spec: EntitySpec, rec: dict[str, Any]) -> ODataError:
    keys = ", ".join(f"{k}: {rec[k]}" for k in spec.keys)
    return write_error(spec, f"Info: Cannot create a record in {spec.table}. {keys}. The record already exists.")
