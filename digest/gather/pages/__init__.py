"""Article page HTML → what a teaser needs: the body's first paragraphs, lead image, metadata.

This package owns reading one fetched article page, for sources whose feed carries only a title
and a link. ``body`` finds the main text: trafilatura first (it drops navigation, share bars,
related-article rails and comments), and where it finds none, readability-lxml, then the page's
own paragraphs, so that a page with a readable body always yields one. ``extract`` keeps the
body's paragraphs only, removes what is still page furniture (the title and a standfirst the
page shows as one, captions, credits, image file names, kickers, licence notices, "Continue
reading" stubs); ``metadata`` and ``images`` read the title, publication time, authors,
standfirst and lead image from the page's ``<meta>`` tags, JSON-LD and markup.

It is pure: no network, no disk, no clock. trafilatura can download pages, but only its
``fetch_url`` family does; the functions used here parse the text they are given (tests run
them with sockets disabled). trafilatura's metadata pass calls htmldate, which reads today's
date to bound its guesses; that guess is discarded here, so no output depends on the clock.

Bad input raises ``PageError`` and nothing else: a page without article text, a body over
``MAX_PAGE_BYTES``, or markup the parser cannot read.
"""

from digest.gather.pages.extract import MAX_PAGE_BYTES, PageError, PageExtract, extract_page

__all__ = ["MAX_PAGE_BYTES", "PageError", "PageExtract", "extract_page"]
