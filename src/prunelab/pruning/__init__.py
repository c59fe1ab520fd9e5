"""Pruning: masks, selection, criteria, schedules, rewinding and the Lightning callback."""
