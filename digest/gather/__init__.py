"""The gather stage: fetch sources safely and turn their bytes into articles.

``http`` is the adapter that talks to the network; ``feeds`` (bytes to articles) and
``sections`` (which articles belong to a section) are pure.
"""
