"""Per-family recipes (DESIGN.md): datasets, trainer builder, evaluation protocol, chosen by ``model.name``.

``get_recipe(config.model.name)`` is all the runner, the CLIs and the benchmarks need; a new family adds a module
here and one entry in :data:`RECIPES` (and its config sections in ``tfdepth.config``, its networks in
``tfdepth.models``), touching nothing of the others.
"""

from __future__ import annotations

from tfdepth.recipes.base import Datasets, Recipe
from tfdepth.recipes.monodepth import MonodepthRecipe
from tfdepth.recipes.rsn import RsnRecipe
from tfdepth.recipes.sddr import SddrRecipe

__all__ = ["RECIPES", "get_recipe", "Recipe", "Datasets"]

RECIPES: dict[str, Recipe] = {"monodepth": MonodepthRecipe(), "rsn": RsnRecipe(), "sddr": SddrRecipe()}


def get_recipe(name: str) -> Recipe:
    """The recipe of family ``name`` (``model.name``); ValueError listing the known families."""
    if name not in RECIPES:
        raise ValueError(f"model.name {name!r} has no recipe; known families: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]
