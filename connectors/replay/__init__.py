"""Recorded traffic in, request events out: replays for demos, analytics and what-if runs."""
