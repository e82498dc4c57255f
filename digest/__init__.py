"""The newsletter digest pipeline: gather feeds, compose editions, render email, deliver."""

__version__ = "0.1.0"
