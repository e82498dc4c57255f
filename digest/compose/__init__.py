"""Composition: articles become teasers, teasers become an edition. Pure: no I/O, no clock."""
