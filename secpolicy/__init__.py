"""secpolicy: declarative policy-as-code compliance scanning and auditing for Linux."""

__version__ = "0.1.0"
__all__ = ["__version__"]
