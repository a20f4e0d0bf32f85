"""Offline training of the synthesizer (the paper's section 3.3): data curation first."""
