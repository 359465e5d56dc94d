"""Jupyter integration of ray-deploy (magics, widgets, server extension); depends on ray_deploy only."""
