"""Audience: subscribers, their CSV import, preferences and the signed tokens in their links."""
