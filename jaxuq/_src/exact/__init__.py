"""Exact dropout: mask enumeration and closed-form moments (see ``jaxuq.exact``)."""
