"""The sky methods and profiles the suite knows, and how much sky a frame must show."""

from __future__ import annotations

METHODS = ("box", "plane", "constant")
PROFILES = ("exponential", "moffat", "gaussian")
#: Fewer usable pixels than this (or than `MIN_SKY_FRACTION` of the frame) is too little sky.
MIN_SKY_PIXELS = 100
MIN_SKY_FRACTION = 0.02


