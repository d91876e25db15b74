"""Hidden-seed lookalike between the brand's seed list and the media's audience: ``protocols/lookalike.md``."""
