"""Compliance: audits of control frameworks."""
