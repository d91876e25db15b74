"""Private set intersection between the brand and the media: ``protocols/psi.md``."""
