"""Simulated Dynamics 365 Finance & Operations OData service (`/data/...`), split into rooms."""

from ukg2d365.sandbox.d365.service import D365Service, D365State

__all__ = ["D365Service", "D365State"]
