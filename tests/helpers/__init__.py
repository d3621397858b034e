"""Helpers shared by the test suites: tiny footage, a real backend subprocess."""
