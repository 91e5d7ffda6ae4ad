"""ukg2d365: UKG Pro payroll GL -> Dynamics 365 Finance & Operations general journals, exactly once."""

__version__ = "0.1.0"
