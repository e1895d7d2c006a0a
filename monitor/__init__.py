"""Storywatch: feeds become stories, stories become alerts."""

__version__ = "0.1.0"
