"""Sweep entry scripts (one per paper) and the shared code that runs them on Ray Tune."""
