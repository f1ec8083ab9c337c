"""ReferMo, the Long-RVOS baseline: codec motion (`motion`), configs (`config`, ``configs/``), the model
(`modeling`, built by `model.build_model`) and its checkpoint loader (`weights`); training and inference later.

Nothing heavy is imported here: each module imports PyAV or torch when it is used.
"""
