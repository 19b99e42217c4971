"""Audio in and out: recognising and decoding uploads, rendering transcripts, splitting text."""
