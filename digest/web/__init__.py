"""The web app: unsubscribe (RFC 8058 one-click), preferences, sign-up with double opt-in and
the provider webhooks. ``digest.web.app.create_app`` builds it; ``serve`` runs it."""
