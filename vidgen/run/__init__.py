"""Running one job: resolving and planning it, the pipeline call, latents and the memory planner."""
