"""Providers that own the list (Mailchimp, listmonk): an edition goes over as one campaign per
variant, and the provider sends every recipient's copy. See :mod:`.base` for the port."""
