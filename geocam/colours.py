"""Display colours of classes (pure): the EuroSAT palette, Tableau's tab20 for other names."""

from __future__ import annotations

from collections.abc import Sequence

#: Tableau's tab20 palette (matplotlib's ``tab20``), for classes outside EuroSAT.
TAB20: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (174, 199, 232), (255, 127, 14), (255, 187, 120), (44, 160, 44),
    (152, 223, 138), (214, 39, 40), (255, 152, 150), (148, 103, 189), (197, 176, 213),
    (140, 86, 75), (196, 156, 148), (227, 119, 194), (247, 182, 210), (127, 127, 127),
    (199, 199, 199), (188, 189, 34), (219, 219, 141), (23, 190, 207), (158, 218, 229),
)  # fmt: skip


#: Display colours of the EuroSAT classes (RGB); other class names get tab20 colours.
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "AnnualCrop": (232, 196, 74),
    "Forest": (24, 100, 36),
    "HerbaceousVegetation": (140, 200, 90),
    "Highway": (120, 120, 120),
    "Industrial": (160, 60, 170),
    "Pasture": (250, 160, 110),
    "PermanentCrop": (140, 85, 40),
    "Residential": (220, 40, 40),
    "River": (60, 160, 240),
    "SeaLake": (15, 45, 150),
}


def class_colours(classes: Sequence[str]) -> list[tuple[int, int, int]]:
    """One RGB colour per class name (EuroSAT palette, else Tableau's tab20)."""
    return [CLASS_COLOURS.get(name, TAB20[i % len(TAB20)]) for i, name in enumerate(classes)]
