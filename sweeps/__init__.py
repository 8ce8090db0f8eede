"""Sweep scripts (one per paper) and the machinery they share."""
