"""The variants of the multi-grid family (plain Python, no TensorFlow): which grids each trains,
where its chains start and how many Langevin steps its training chains run.

Read by `multigrid_spec` (registration and config checks) and by `multigrid` (the model), so that
neither imports the other for it.
"""

# Variant name -> (trained grids: "all" grids > 1 or only the "finest", chain start, train steps).
# Chain starts: "coarse" = upsampled observed 1x1 images (Gao et al. 2018), "observed" = the
# observed images (contrastive divergence), "persistent" = a buffer of persistent chains.
# Train steps None = sampler.steps.
VARIANTS = {
    "multigrid": ("all", "coarse", None),
    "single_grid": ("finest", "coarse", None),
    "cd1": ("finest", "observed", 1),
    "pcd": ("finest", "persistent", None),
}
