"""Converters: one module per target format; each writes canonical `Video` records."""
