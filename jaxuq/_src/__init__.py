"""Private implementation of jaxuq. Import the public names from ``jaxuq``."""
