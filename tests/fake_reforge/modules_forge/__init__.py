"""reForge ships modules_forge too."""
